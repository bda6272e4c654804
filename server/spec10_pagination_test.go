package server_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/server/store"
)

// spec §10.1: limit must be all digits and then 1..1000, on every list
// (and on a single configuration get); 100 by default.
func TestLimitParameter(t *testing.T) { onEachStore(t, testLimitParameter) }

func testLimitParameter(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	paths := []string{"/services", "/services?tag=db&", "/configuration", "/configuration/ns/", "/configuration/key-1", "/events"}
	for _, tc := range []struct {
		limit   string // the query text after "limit="
		want    int    // the effective limit when valid
		details string // "" when valid
	}{
		{"", 0, "Limit must be a number"},
		{"abc", 0, "Limit must be a number"},
		{"-1", 0, "Limit must be a number"},
		{"1.5", 0, "Limit must be a number"},
		{"%201", 0, "Limit must be a number"},
		{"1&limit=2", 0, "Limit must be a number"},
		{"0", 0, "Invalid limit 0. Minimum limit is 1 and maximum limit is 1000."},
		{"1001", 0, "Invalid limit 1001. Minimum limit is 1 and maximum limit is 1000."},
		{"99999999999999999999", 0, "Invalid limit 99999999999999999999. Minimum limit is 1 and maximum limit is 1000."},
		{"1", 1, ""},
		{"1000", 1000, ""},
	} {
		t.Run(tc.limit, func(t *testing.T) {
			t.Parallel()
			c := newAPI(t, srv)
			c.setConfig("key-1", "v")
			for _, p := range paths {
				sep := "?"
				if strings.Contains(p, "?") {
					sep = ""
				}
				r := c.do("GET", p+sep+"limit="+tc.limit, nil)
				if tc.details != "" {
					r.fault(400, "invalidLimit", "Invalid limit", tc.details)
					continue
				}
				if p == "/configuration/key-1" {
					r.want(200)
					continue
				}
				if _, meta := list[configValue](r); meta.Limit != tc.want {
					t.Errorf("GET %s: metadata.limit %d, want %d", p, meta.Limit, tc.want)
				}
			}
		})
	}
	t.Run("default", func(t *testing.T) {
		t.Parallel()
		c := newAPI(t, srv)
		for _, p := range []string{"/services", "/configuration", "/configuration/ns/", "/events"} {
			if _, meta := list[configValue](c.do("GET", p, nil)); meta.Limit != 100 {
				t.Errorf("GET %s: metadata.limit %d, want 100", p, meta.Limit)
			}
		}
	})
}

// spec §10.1: a services or configuration marker must match
// ^[a-z0-9\-:_\.\/]{0,255}$/i; empty counts as absent; it is echoed in
// metadata.marker.
func TestMarkerParameter(t *testing.T) { onEachStore(t, testMarkerParameter) }

func testMarkerParameter(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	const details = `Marker contains invalid characters. Valid characters are: /^[a-z0-9\-:_\.\/]{0,255}$/i`
	for _, tc := range []struct {
		name, marker string
		valid        bool
	}{
		{"every allowed character", "aZ09-:_./", true},
		{"255 characters", strings.Repeat("m", 255), true},
		{"256 characters", strings.Repeat("m", 256), false},
		{"space", "a%20b", false},
		{"plus is a space", "a+b", false},
		{"question mark", "a%3F", false},
		{"hash", "a%23", false},
		{"non-ASCII", "%C3%A9", false},
		{"star", "a*", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newAPI(t, srv)
			for _, p := range []string{"/services", "/services?tag=db&", "/configuration", "/configuration/ns/"} {
				sep := "?"
				if strings.Contains(p, "?") {
					sep = ""
				}
				r := c.do("GET", p+sep+"marker="+tc.marker, nil)
				if !tc.valid {
					r.fault(400, "badRequest", "Invalid value for 'marker' query string parameter", details)
					continue
				}
				if _, meta := list[configValue](r); meta.Marker == nil || *meta.Marker != tc.marker {
					t.Errorf("GET %s: metadata.marker %v, want %q", p, meta.Marker, tc.marker)
				}
			}
		})
	}
	t.Run("empty or absent is null", func(t *testing.T) {
		t.Parallel()
		c := newAPI(t, srv)
		for _, p := range []string{"/services", "/services?marker=", "/configuration?marker=", "/configuration/ns/"} {
			if _, meta := list[configValue](c.do("GET", p, nil)); meta.Marker != nil {
				t.Errorf("GET %s: metadata.marker %q, want null", p, *meta.Marker)
			}
		}
	})
}

// spec §10.1: limit is checked before marker, and both before the
// handler's own checks (tag, id).
func TestPagingCheckOrder(t *testing.T) { onEachStore(t, testPagingCheckOrder) }

func testPagingCheckOrder(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	const markerMsg = "Invalid value for 'marker' query string parameter"
	c.do("GET", "/services?marker=%20&limit=x", nil).fault(400, "invalidLimit", "Invalid limit", "Limit must be a number")
	c.do("GET", "/services?tag=&marker=%20", nil).fault(400, "badRequest", markerMsg, `Marker contains invalid characters. Valid characters are: /^[a-z0-9\-:_\.\/]{0,255}$/i`)
	c.do("GET", "/services?tag=&limit=0", nil).fault(400, "invalidLimit", "Invalid limit", "Invalid limit 0. Minimum limit is 1 and maximum limit is 1000.")
	c.do("GET", "/configuration/ab?marker=%20", nil).fault(400, "badRequest", markerMsg, `Marker contains invalid characters. Valid characters are: /^[a-z0-9\-:_\.\/]{0,255}$/i`)
	c.do("GET", "/services?marker=%E2%84%AA", nil).fault(400, "badRequest", markerMsg, `Marker contains invalid characters. Valid characters are: /^[a-z0-9\-:_\.\/]{0,255}$/i`)
}

// spec §6.5: next_marker is the first id left out; next_href is the
// request's own URL with marker replaced in place or appended, on the
// request's scheme and host.
func TestNextMarkerAndHref(t *testing.T) { onEachStore(t, testNextMarkerAndHref) }

func testNextMarkerAndHref(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	for _, id := range []string{"svc-1", "svc-2", "svc-3"} {
		c.createBody(map[string]any{"id": id, "tags": []string{"db"}, "heartbeat_timeout": 30})
	}
	prefix := "/v1.0/" + c.tenant + "/services"
	for _, tc := range []struct {
		name, query string
		header      []string
		ids         []string
		next        string // "" for none
		href        string // "" for none; {base} is the server's root
	}{
		{"limit 1", "?limit=1", nil, []string{"svc-1"}, "svc-2", "{base}" + prefix + "?limit=1&marker=svc-2"},
		{"marker replaced in place", "?marker=svc-2&limit=1", nil, []string{"svc-2"}, "svc-3", "{base}" + prefix + "?marker=svc-3&limit=1"},
		{"tag kept", "?tag=db&limit=2", nil, []string{"svc-1", "svc-2"}, "svc-3", "{base}" + prefix + "?tag=db&limit=2&marker=svc-3"},
		{"last page", "?marker=svc-2", nil, []string{"svc-2", "svc-3"}, "", ""},
		{"exactly full", "?limit=3", nil, []string{"svc-1", "svc-2", "svc-3"}, "", ""},
		{"scheme and host", "?limit=1", []string{"Host", "registry.example.com", "X-Forwarded-Proto", "https"}, []string{"svc-1"}, "svc-2",
			"https://registry.example.com" + prefix + "?limit=1&marker=svc-2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := c.in(t)
			svcs, meta := list[service](c.do("GET", "/services"+tc.query, nil, tc.header...))
			var ids []string
			for _, s := range svcs {
				ids = append(ids, s.ID)
			}
			if !slices.Equal(ids, tc.ids) {
				t.Errorf("ids %q, want %q", ids, tc.ids)
			}
			if got := deref(meta.NextMarker); got != tc.next {
				t.Errorf("next_marker %q, want %q", got, tc.next)
			}
			if got, want := deref(meta.NextHref), strings.ReplaceAll(tc.href, "{base}", c.base); got != want {
				t.Errorf("next_href %q, want %q", got, want)
			}
		})
	}

	// spec §13 item 22: the effective tenant is the header's, and next_href
	// uses it (or the mismatch is refused with 401).
	t.Run("tenant from X-Tenant-Id", func(t *testing.T) {
		me := c.in(t)
		other := newUser(t, srv, "other")
		r := me.raw("GET", "/v1.0/"+other.tenant+"/services?limit=1", nil, "X-Tenant-Id", c.tenant)
		if r.code == 401 {
			r.fault(401, "unauthorizedError", "forbidden", "Invalid or expired authentication token")
			return
		}
		_, meta := list[service](r)
		if want := c.base + prefix + "?limit=1&marker=svc-2"; deref(meta.NextHref) != want {
			t.Errorf("next_href %q, want %q", deref(meta.NextHref), want)
		}
	})
}

// spec §10.2: object-count limits count live objects: a delete or a
// timeout frees a slot, and changing a value takes none.
func TestResourceLimits(t *testing.T) { onEachStore(t, testResourceLimits) }

func testResourceLimits(t *testing.T, kind string) {
	t.Parallel()
	clock := new(testserver.Clock)
	srv := testserver.Start(t, testserver.Options{Store: kind, Clock: clock, ReapInterval: -1, Limits: store.Limits{Services: 2, ConfigValues: 2}})
	const resourceMsg = "Resource limit has been reached"

	t.Run("limits", func(t *testing.T) {
		t.Parallel()
		var got struct {
			Resource map[string]int `json:"resource"`
		}
		newAPI(t, srv).do("GET", "/limits", nil).want(200).json(&got)
		if want := map[string]int{"service": 2, "configuration_value": 2}; !reflect.DeepEqual(got.Resource, want) {
			t.Errorf("resource %v, want %v", got.Resource, want)
		}
	})
	t.Run("services", func(t *testing.T) {
		t.Parallel()
		c := newAPI(t, srv)
		// svc-2 is due only once the clock is moved: a loaded machine
		// can take seconds of real time over these steps.
		c.create("svc-1", 120)
		c.create("svc-2", 30)
		full := func() {
			t.Helper()
			c.do("POST", "/services", map[string]any{"id": "svc-x", "heartbeat_timeout": 120}).
				fault(400, "limitReached", resourceMsg, "Limit for resource service has been reached. Maximum allowed objects: 2")
		}
		full()
		c.do("PUT", "/services/svc-1", map[string]any{"tags": []string{"a"}}).want(204)
		full()
		c.do("DELETE", "/services/svc-1", nil).want(204)
		c.create("svc-3", 120)
		full()
		clock.Advance(31 * time.Second) // svc-2 is due
		c.create("svc-4", 120)
		full()
	})
	t.Run("configuration values", func(t *testing.T) {
		t.Parallel()
		c := newAPI(t, srv)
		c.setConfig("key-1", "a")
		c.setConfig("key-2", "a")
		full := func() {
			t.Helper()
			c.do("PUT", "/configuration/key-x", map[string]string{"value": "a"}).
				fault(400, "limitReached", resourceMsg, "Limit for resource configuration_value has been reached. Maximum allowed objects: 2")
		}
		full()
		for _, v := range []string{"b", "c", "c", "d"} {
			c.setConfig("key-1", v)
		}
		full()
		c.do("DELETE", "/configuration/key-2", nil).want(204)
		c.setConfig("key-3", "a")
		full()
	})
}

// spec §7.1 and §6.6: GET /limits gives the account's resource limits and
// the rate rule with its use so far; POST /limits takes the proxy's rules.
func TestLimitsEndpoint(t *testing.T) { onEachStore(t, testLimitsEndpoint) }

func testLimitsEndpoint(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	var got map[string]any
	c.do("GET", "/limits", nil).want(200).json(&got)
	want := map[string]any{
		"resource": map[string]any{"service": 200.0, "configuration_value": 1000.0},
		"rate":     map[string]any{"/.*": map[string]any{"limit": 500000.0, "used": 0.0, "window": "24.0 hours"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("GET /limits %v, want %v", got, want)
	}
	c.do("GET", "/services", nil).want(200)
	c.do("POST", "/services", map[string]any{"id": "svc-1", "heartbeat_timeout": 30}).want(201)
	c.do("GET", "/limits", nil).want(200).json(&got)
	if used := got["rate"].(map[string]any)["/.*"].(map[string]any)["used"]; used != 2.0 {
		t.Errorf("used %v after two GETs, want 2", used)
	}

	rules := []map[string]any{
		{"method": "GET", "path_regex": "/.*", "limit": 500000, "used": 42, "period": 86400},
		{"method": "GET", "path_regex": "/services.*", "limit": 100, "used": 7, "period": 3600},
	}
	got = nil
	c.do("POST", "/limits", rules).want(200).json(&got)
	want["rate"] = map[string]any{
		"/.*":         map[string]any{"limit": 500000.0, "used": 42.0, "window": "24.0 hours"},
		"/services.*": map[string]any{"limit": 100.0, "used": 7.0, "window": "1.0 hours"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("POST /limits %v, want %v", got, want)
	}
}
