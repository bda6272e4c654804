package server_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/server"
	"github.com/svcreg/svcreg/server/store"
)

// spec §3.3: the three 401s, each with WWW-Authenticate naming the identity
// endpoint. They come before routing, so an unknown /v1.0 path is 401, not
// 404, when the request is not authenticated.
func TestAuthenticationErrors(t *testing.T) { onEachStore(t, testAuthenticationErrors) }

func testAuthenticationErrors(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	me := newUser(t, srv, "me")
	other := newUser(t, srv, "other")
	for _, tc := range []struct {
		name    string
		method  string
		uri     string // {me} and {other} are the two tenants
		header  []string
		details string
	}{
		{"no tenant", "GET", "/v1.0/services", []string{"X-Auth-Token", me.token}, "No tenant id provided"},
		{"no tenant, unknown path", "GET", "/v1.0/no-such-thing", nil, "No tenant id provided"},
		{"no token", "GET", "/v1.0/{me}/services", nil, "No authentication token provided"},
		{"no token, unknown path", "GET", "/v1.0/{me}/no-such-thing", nil, "No authentication token provided"},
		{"no token, wrong method", "DELETE", "/v1.0/{me}/services", nil, "No authentication token provided"},
		{"no token, create", "POST", "/v1.0/{me}/services", nil, "No authentication token provided"},
		{"unknown token", "GET", "/v1.0/{me}/services", []string{"X-Auth-Token", "not-a-token"}, "Invalid or expired authentication token"},
		{"unknown token, unknown path", "GET", "/v1.0/{me}/no-such-thing", []string{"X-Auth-Token", "not-a-token"}, "Invalid or expired authentication token"},
		{"token of another tenant in the URL", "GET", "/v1.0/{other}/services", []string{"X-Auth-Token", me.token}, "Invalid or expired authentication token"},
		{"token of another tenant in X-Tenant-Id", "GET", "/v1.0/{me}/services", []string{"X-Auth-Token", me.token, "X-Tenant-Id", other.tenant}, "Invalid or expired authentication token"},
		{"query token of another tenant", "GET", "/v1.0/{me}/services?x-auth-token=" + other.token, []string{"X-Auth-Token", me.token}, "Invalid or expired authentication token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			uri := strings.NewReplacer("{me}", me.tenant, "{other}", other.tenant).Replace(tc.uri)
			r := sendRequest(t, srv.URL, tc.method, uri, nil, tc.header...)
			r.fault(401, "unauthorizedError", "forbidden", tc.details)
			if got, want := r.header.Values("WWW-Authenticate"), []string{`Keystone uri="` + srv.AuthURL + `"`}; !slices.Equal(got, want) {
				t.Errorf("WWW-Authenticate %q, want %q", got, want)
			}
		})
	}
}

// spec §3.2 step 4: an expired token is refused like an unknown one.
func TestAuthenticationExpiredToken(t *testing.T) { onEachStore(t, testAuthenticationExpiredToken) }

func testAuthenticationExpiredToken(t *testing.T, kind string) {
	t.Parallel()
	clock := new(testserver.Clock)
	// The clock also runs with real time: a life a loaded machine cannot
	// use up between the login and the first request (a second could).
	srv := testserver.Start(t, testserver.Options{Store: kind, Clock: clock, TokenTTL: time.Hour})
	c := newAPI(t, srv)
	c.do("GET", "/services", nil).want(200)
	clock.Advance(time.Hour + time.Minute)
	c.do("GET", "/services", nil).fault(401, "unauthorizedError", "forbidden", "Invalid or expired authentication token")
}

// spec §3.2: the tenant is X-Tenant-Id if sent, else the URL's; the token
// is X-Auth-Token or the x-auth-token query parameter, which wins.
func TestTenantAndTokenResolution(t *testing.T) { onEachStore(t, testTenantAndTokenResolution) }

func testTenantAndTokenResolution(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	me := newUser(t, srv, "me")
	other := newUser(t, srv, "other")
	me.create("mine", 30)
	other.create("theirs", 30)

	t.Run("x-auth-token query parameter", func(t *testing.T) {
		r := sendRequest(t, srv.URL, "GET", "/v1.0/"+me.tenant+"/services?x-auth-token="+me.token, nil)
		if vals, _ := list[service](r); len(vals) != 1 || vals[0].ID != "mine" {
			t.Errorf("services %+v, want mine", vals)
		}
	})
	t.Run("query token wins over the header", func(t *testing.T) {
		sendRequest(t, srv.URL, "GET", "/v1.0/"+me.tenant+"/services?x-auth-token=bad", nil, "X-Auth-Token", me.token).
			fault(401, "unauthorizedError", "forbidden", "Invalid or expired authentication token")
	})
	// spec §13 item 22: the header wins over the URL, the token is checked
	// against it, and a mismatch may be refused with 401 instead; it must
	// never reach the URL's tenant.
	t.Run("X-Tenant-Id wins over the URL", func(t *testing.T) {
		r := me.raw("GET", "/v1.0/"+other.tenant+"/services", nil, "X-Tenant-Id", me.tenant)
		if r.code == 401 {
			r.fault(401, "unauthorizedError", "forbidden", "Invalid or expired authentication token")
			return
		}
		if vals, _ := list[service](r); len(vals) != 1 || vals[0].ID != "mine" {
			t.Errorf("services %+v, want only mine", vals)
		}
		r = me.raw("POST", "/v1.0/"+other.tenant+"/services", map[string]any{"id": "new-1", "heartbeat_timeout": 30}, "X-Tenant-Id", me.tenant).want(201)
		if loc := r.header.Get("Location"); !strings.HasSuffix(loc, "/v1.0/"+me.tenant+"/services/new-1") {
			t.Errorf("Location %q, want the effective tenant %s", loc, me.tenant)
		}
		me.service("new-1")
		other.do("GET", "/services/new-1", nil).notFound("Service", "new-1")
	})
}

// spec §3.4: the account is created on the first authenticated request,
// with the default limits, and it bounds the events feed.
func TestAccountAutoCreation(t *testing.T) { onEachStore(t, testAccountAutoCreation) }

func testAccountAutoCreation(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	before := time.Now()

	var limits map[string]any
	c.do("GET", "/limits", nil).want(200).json(&limits)
	want := map[string]any{"service": 200.0, "configuration_value": 1000.0}
	if got := limits["resource"]; !reflect.DeepEqual(got, want) {
		t.Errorf("resource limits %v, want %v", got, want)
	}
	if svcs, _ := list[service](c.do("GET", "/services", nil)); len(svcs) != 0 {
		t.Errorf("new account has services %+v", svcs)
	}
	if vals, _ := list[configValue](c.do("GET", "/configuration", nil)); len(vals) != 0 {
		t.Errorf("new account has values %+v", vals)
	}
	if evs := c.events(""); len(evs) != 0 {
		t.Errorf("new account has events %+v", evs)
	}
	c.do("GET", "/events?marker="+lowUUID(before.Add(-time.Second)), nil).
		badRequest("from parameter must be greater than or equal to the account creation date")
	c.do("GET", "/events?marker="+lowUUID(time.Now()), nil).want(200)
}

// spec §3.3 and §10.3: past the rate limit, GET requests get 400
// rateLimitReached; other methods are not counted, and authentication comes
// first (spec §13 item 26).
func TestRateLimit(t *testing.T) { onEachStore(t, testRateLimit) }

func testRateLimit(t *testing.T, kind string) {
	t.Parallel()
	base := startCustom(t, kind, func(st store.Store) server.Config {
		return server.Config{Store: st, RateLimit: 3}
	})
	c := devLogin(t, base, "limited")
	for range 3 {
		c.do("GET", "/services", nil).want(200)
	}
	c.do("GET", "/services", nil).fault(400, "rateLimitReached", "Rate limit has been reached.",
		`Limit of 3 requests in 86400 seconds for path "/.*" has been reached`)
	c.do("GET", "/events", nil).want(400)
	c.do("POST", "/services", map[string]any{"id": "svc-1", "heartbeat_timeout": 30}).want(201)
	sendRequest(t, base, "GET", "/v1.0/"+c.tenant+"/services", nil).want(401)

	var limits struct {
		Rate map[string]map[string]any `json:"rate"`
	}
	c.do("POST", "/limits", nil).want(200).json(&limits)
	if rule := limits.Rate["/.*"]; rule["limit"] != 3.0 || rule["used"].(float64) < 3 {
		t.Errorf("rate rule %v, want limit 3 and used at least 3", rule)
	}
	other := devLogin(t, base, "not-limited")
	other.do("GET", "/services", nil).want(200)
}
