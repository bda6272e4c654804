package server_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testserver"
)

// spec §6.1: a service has exactly id, tags, metadata, heartbeat_timeout
// and last_seen; tags and metadata are never null, last_seen is null until
// the first heartbeat.
func TestServiceShape(t *testing.T) { onEachStore(t, testServiceShape) }

func testServiceShape(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	c.create("svc-1", 30)
	check := func(t *testing.T, body []byte, raw map[string]any) {
		t.Helper()
		want := map[string]any{"id": "svc-1", "tags": []any{}, "metadata": map[string]any{}, "heartbeat_timeout": 30.0, "last_seen": nil}
		if !reflect.DeepEqual(raw, want) {
			t.Errorf("service %s, want %v", body, want)
		}
	}
	var raw map[string]any
	r := c.do("GET", "/services/svc-1", nil).want(200)
	r.json(&raw)
	check(t, r.body, raw)

	var env struct {
		Values []map[string]any `json:"values"`
	}
	r = c.do("GET", "/services", nil).want(200)
	r.json(&env)
	if len(env.Values) != 1 {
		t.Fatalf("list %s, want one service", r.body)
	}
	check(t, r.body, env.Values[0])
}

// spec §7.2–§7.6: create, get, list, update and delete one service.
func TestServiceLifecycle(t *testing.T) { onEachStore(t, testServiceLifecycle) }

func testServiceLifecycle(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	token := c.createBody(map[string]any{"id": "dfw1-db1", "tags": []string{"database", "mysql"},
		"metadata": map[string]string{"region": "dfw", "port": "3306"}, "heartbeat_timeout": 30})
	if len(token) != 36 {
		t.Errorf("create token %q is not a UUID", token)
	}
	want := service{ID: "dfw1-db1", Tags: []string{"database", "mysql"}, Metadata: map[string]string{"region": "dfw", "port": "3306"}, HeartbeatTimeout: 30}
	if got := c.service("dfw1-db1"); !reflect.DeepEqual(got, want) {
		t.Errorf("GET %+v, want %+v", got, want)
	}

	// The docs' examples (spec §7.5): only the keys sent change; tags and
	// metadata are replaced, not merged.
	c.do("PUT", "/services/dfw1-db1", map[string]any{"heartbeat_timeout": 15}).want(204)
	want.HeartbeatTimeout = 15
	if got := c.service("dfw1-db1"); !reflect.DeepEqual(got, want) {
		t.Errorf("after timeout update %+v, want %+v", got, want)
	}
	c.do("PUT", "/services/dfw1-db1", map[string]any{"tags": []string{}, "metadata": map[string]string{"a": "b"}}).want(204)
	want.Tags, want.Metadata = []string{}, map[string]string{"a": "b"}
	if got := c.service("dfw1-db1"); !reflect.DeepEqual(got, want) {
		t.Errorf("after tags and metadata update %+v, want %+v", got, want)
	}
	c.do("PUT", "/services/dfw1-db1", map[string]any{"tags": []string{"new"}}).want(204)
	if svcs, _ := list[service](c.do("GET", "/services?tag=new", nil)); len(svcs) != 1 {
		t.Errorf("?tag=new after the update: %+v", svcs)
	}
	if svcs, _ := list[service](c.do("GET", "/services?tag=database", nil)); len(svcs) != 0 {
		t.Errorf("?tag=database after the update: %+v", svcs)
	}
	c.do("PUT", "/services/dfw1-db1", map[string]any{"tags": nil, "metadata": nil}).want(204)
	want.Tags, want.Metadata = []string{}, map[string]string{}
	if got := c.service("dfw1-db1"); !reflect.DeepEqual(got, want) {
		t.Errorf("after null tags and metadata %+v, want %+v", got, want)
	}

	c.do("DELETE", "/services/dfw1-db1", nil).want(204)
	c.do("GET", "/services/dfw1-db1", nil).notFound("Service", "dfw1-db1")
	c.do("DELETE", "/services/dfw1-db1", nil).notFound("Service", "dfw1-db1")
	c.do("PUT", "/services/dfw1-db1", map[string]any{}).notFound("Service", "dfw1-db1")
	c.heartbeat("dfw1-db1", token).notFound("Service", "dfw1-db1")
	if svcs, _ := list[service](c.do("GET", "/services", nil)); len(svcs) != 0 {
		t.Errorf("list after delete: %+v", svcs)
	}
}

// spec §7.2: lists are sorted by id in byte order (upper case before lower
// case), the marker is inclusive and need not exist, and ?tag= matches a
// tag exactly; a tag list shows the real last_seen and a plain next_marker
// (spec §13 item 11).
func TestServicesList(t *testing.T) { onEachStore(t, testServicesList) }

func testServicesList(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	ids := []string{"abc", "Abc", "_ab", "0ab", "-ab", ".ab", "abd"}
	tokens := map[string]string{}
	for _, id := range ids {
		tokens[id] = c.createBody(map[string]any{"id": id, "tags": []string{"all", "Case-" + id}, "heartbeat_timeout": 30})
	}
	sorted := []string{"-ab", ".ab", "0ab", "Abc", "_ab", "abc", "abd"}
	idsOf := func(svcs []service) []string {
		out := []string{}
		for _, s := range svcs {
			out = append(out, s.ID)
		}
		return out
	}
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", sorted},
		{"?marker=Abc", []string{"Abc", "_ab", "abc", "abd"}},
		{"?marker=B", []string{"_ab", "abc", "abd"}},
		{"?marker=zzz", []string{}},
		{"?marker=", sorted},
		{"?tag=all", sorted},
		{"?tag=all&marker=abc", []string{"abc", "abd"}},
		{"?tag=Case-abc", []string{"abc"}},
		{"?tag=case-abc", []string{}},
		{"?tag=Case-ab", []string{}},
	} {
		svcs, _ := list[service](c.do("GET", "/services"+tc.query, nil))
		if got := idsOf(svcs); !slices.Equal(got, tc.want) {
			t.Errorf("GET /services%s: %q, want %q", tc.query, got, tc.want)
		}
	}

	before := time.Now().UnixMilli()
	c.nextToken("abc", tokens["abc"])
	after := time.Now().UnixMilli()
	svcs, meta := list[service](c.do("GET", "/services?tag=all&marker=abc&limit=1", nil))
	if len(svcs) != 1 || svcs[0].LastSeen == nil || *svcs[0].LastSeen < before || *svcs[0].LastSeen > after {
		t.Errorf("tag list %+v, want abc with last_seen in [%d, %d]", svcs, before, after)
	}
	if meta.NextMarker == nil || *meta.NextMarker != "abd" {
		t.Errorf("tag list next_marker %v, want abd", meta.NextMarker)
	}
}

// spec §7.4: of 10 parallel creates of one id exactly one succeeds; ids that
// are prefixes of each other are independent.
func TestCreateSameIDInParallel(t *testing.T) { onEachStore(t, testCreateSameIDInParallel) }

func testCreateSameIDInParallel(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	replies := make([]*reply, 10)
	errs := make([]error, 10)
	parallel(10, func(i int) {
		replies[i], errs[i] = c.try("POST", "/services", map[string]any{"id": "some-service-1", "heartbeat_timeout": 30})
	})
	created := 0
	for i, r := range replies {
		if errs[i] != nil {
			t.Fatalf("create %d: %v", i, errs[i])
		}
		if r.code == 201 {
			created++
			continue
		}
		r.fault(400, "serviceWithThisIdExists", "Service with id some-service-1 already exists.", "Service with id some-service-1 already exists.")
	}
	if created != 1 {
		t.Errorf("%d creates succeeded, want 1", created)
	}
	joins := 0
	for _, ev := range c.events("") {
		if ev.Type == "service.join" {
			joins++
		}
	}
	if joins != 1 {
		t.Errorf("%d service.join events, want 1", joins)
	}

	c.create("messengerA", 30)
	c.create("messengerAA", 30)
	c.do("DELETE", "/services/messengerA", nil).want(204)
	c.service("messengerAA")
}

// spec §7.4 step 3 and §11.3: a create rectifies first, so an id held by a
// service past its deadline can be taken at once (register() relies on it).
func TestCreateOverDeadService(t *testing.T) { onEachStore(t, testCreateOverDeadService) }

func testCreateOverDeadService(t *testing.T, kind string) {
	t.Parallel()
	clock := new(testserver.Clock)
	srv := testserver.Start(t, testserver.Options{Store: kind, Clock: clock, ReapInterval: -1})
	c := newAPI(t, srv)
	c.create("svc-1", 3)
	clock.Advance(3500 * time.Millisecond)
	c.createBody(map[string]any{"id": "svc-1", "tags": []string{"srv2"}, "heartbeat_timeout": 10})
	if got := c.service("svc-1"); !slices.Equal(got.Tags, []string{"srv2"}) || got.HeartbeatTimeout != 10 {
		t.Errorf("service after the second create: %+v", got)
	}
	if got, want := summary(c.events("")), []string{"service.join svc-1", "service.timeout svc-1", "service.join svc-1"}; !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
}

// spec §7.5: a new heartbeat_timeout applies from the next heartbeat; the
// deadline of the outstanding token does not move.
func TestUpdateTimeoutAppliesFromNextHeartbeat(t *testing.T) {
	onEachStore(t, testUpdateTimeoutAppliesFromNextHeartbeat)
}

func testUpdateTimeoutAppliesFromNextHeartbeat(t *testing.T, kind string) {
	t.Parallel()
	clock := new(testserver.Clock)
	srv := testserver.Start(t, testserver.Options{Store: kind, Clock: clock, ReapInterval: -1})
	c := newAPI(t, srv)
	// 30 s, so that only the moved clock can make them due, however long a
	// loaded machine takes over the steps before it.
	c.create("not-heartbeated", 30)
	token := c.create("heartbeated", 30)
	c.do("PUT", "/services/not-heartbeated", map[string]any{"heartbeat_timeout": 120}).want(204)
	c.do("PUT", "/services/heartbeated", map[string]any{"heartbeat_timeout": 120}).want(204)
	c.nextToken("heartbeated", token)
	clock.Advance(31 * time.Second)
	c.do("GET", "/services/not-heartbeated", nil).notFound("Service", "not-heartbeated")
	c.service("heartbeated")
}

// spec §6.1: last_seen is the server time of the latest heartbeat, and a
// delete clears it.
func TestLastSeen(t *testing.T) { onEachStore(t, testLastSeen) }

func testLastSeen(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	token := c.create("svc-1", 30)
	if s := c.service("svc-1"); s.LastSeen != nil {
		t.Errorf("last_seen %d before any heartbeat, want null", *s.LastSeen)
	}
	for range 2 {
		before := time.Now().UnixMilli()
		token = c.nextToken("svc-1", token)
		after := time.Now().UnixMilli()
		if s := c.service("svc-1"); s.LastSeen == nil || *s.LastSeen < before || *s.LastSeen > after {
			t.Errorf("last_seen %v, want in [%d, %d]", s.LastSeen, before, after)
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.do("DELETE", "/services/svc-1", nil).want(204)
	c.create("svc-1", 30)
	if s := c.service("svc-1"); s.LastSeen != nil {
		t.Errorf("last_seen %d after delete and create, want null", *s.LastSeen)
	}
}

// spec §7.5 and §13 item 16: an update never renames a service.
func TestUpdateNeverRenames(t *testing.T) { onEachStore(t, testUpdateNeverRenames) }

func testUpdateNeverRenames(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	c.create("svc-1", 30)
	c.do("PUT", "/services/svc-1", map[string]any{"id": "svc-1", "heartbeat_timeout": 20}).want(204)
	c.do("PUT", "/services/svc-1", map[string]any{"id": "svc-2"}).invalid("id", "Attempted to mutate immutable field")
	if s := c.service("svc-1"); s.HeartbeatTimeout != 20 {
		t.Errorf("service %+v", s)
	}
	c.do("GET", "/services/svc-2", nil).notFound("Service", "svc-2")
	if svcs, _ := list[service](c.do("GET", "/services", nil)); len(svcs) != 1 {
		t.Errorf("services %+v, want svc-1 alone", svcs)
	}
	if strings.Contains(strings.Join(summary(c.events("")), ","), "svc-2") {
		t.Errorf("events mention svc-2: %q", summary(c.events("")))
	}
}
