package server_test

// The departures from the original that design.md ("Wire compatibility",
// items 1–9) decided.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/internal/timeuuid"
)

// Design item 1: PUT /services/{id} that changes something writes
// service.update with the service as stored after the update.
func TestServiceUpdateEvent(t *testing.T) { onEachStore(t, testServiceUpdateEvent) }

func testServiceUpdateEvent(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	c.createBody(map[string]any{"id": "svc-1", "tags": []string{"a"}, "metadata": map[string]string{"k": "v"}, "heartbeat_timeout": 30})
	c.do("PUT", "/services/svc-1", map[string]any{"metadata": map[string]string{"k": "w"}}).want(204)
	c.do("PUT", "/services/svc-1", map[string]any{}).want(204)
	c.do("PUT", "/services/svc-1", map[string]any{"tags": []string{"a"}, "heartbeat_timeout": 30}).want(204)
	c.do("PUT", "/services/svc-1", map[string]any{"id": "svc-1", "metadata": map[string]string{"k": "w"}}).want(204)
	c.do("PUT", "/services/svc-1", map[string]any{"heartbeat_timeout": "45"}).want(204)

	evs := c.events("?include=service.update")
	if got, want := summary(evs), []string{"service.join svc-1", "service.update svc-1", "service.update svc-1"}; !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	for i, want := range []map[string]any{
		{"id": "svc-1", "heartbeat_timeout": 30.0, "tags": []any{"a"}, "metadata": map[string]any{"k": "w"}},
		{"id": "svc-1", "heartbeat_timeout": 45.0, "tags": []any{"a"}, "metadata": map[string]any{"k": "w"}},
	} {
		var p map[string]any
		json.Unmarshal(evs[i+1].Payload, &p)
		if !reflect.DeepEqual(p, want) {
			t.Errorf("update %d payload %s, want %v", i, evs[i+1].Payload, want)
		}
	}
	if got := summary(c.events("?type=service.update")); len(got) != 2 {
		t.Errorf("type=service.update: %q", got)
	}
}

// Design item 2: GET /events?marker=M&wait=… is held while the answer would
// hold no event newer than M (M itself does not count), then answers as it
// would without wait. It runs on the testserver, served as in production,
// where a long-poll parks, and on a server given to an http.Server without
// Server.Serve, where a long-poll waits on its goroutine.
func TestLongPoll(t *testing.T) { onEachStore(t, testLongPoll) }

func testLongPoll(t *testing.T, kind string) {
	t.Parallel()
	for _, s := range pollModes(t, kind) {
		t.Run(s.name+": answers when an event arrives; the marker event does not count", func(t *testing.T) {
			t.Parallel()
			c := s.login(t, t.Name())
			c.create("svc-1", 30)
			marker := c.events("")[0].ID
			ch := c.longPoll("?marker=" + marker + "&wait=30")
			stillWaiting(t, ch)
			c.create("svc-2", 30)
			if got, want := summary(answer(t, ch)), []string{"service.join svc-1", "service.join svc-2"}; !slices.Equal(got, want) {
				t.Errorf("long-poll answer %q, want %q", got, want)
			}
			c.create("svc-3", 30) // the connection is still good
		})
		t.Run(s.name+": answers when the wait is over", func(t *testing.T) {
			t.Parallel()
			c := s.login(t, t.Name())
			c.create("svc-1", 30)
			marker := c.events("")[0].ID
			for _, wait := range []string{"1", "0.5", "500ms"} {
				evs := answer(t, c.longPoll("?marker="+marker+"&wait="+wait))
				if got, want := summary(evs), []string{"service.join svc-1"}; !slices.Equal(got, want) {
					t.Errorf("wait=%s: answer %q, want %q", wait, got, want)
				}
			}
		})
		t.Run(s.name+": without a marker", func(t *testing.T) {
			t.Parallel()
			c := s.login(t, t.Name())
			ch := c.longPoll("?wait=30")
			stillWaiting(t, ch)
			c.setConfig("key-1", "v")
			if got, want := summary(answer(t, ch)), []string{"configuration_value.update key-1"}; !slices.Equal(got, want) {
				t.Errorf("long-poll answer %q, want %q", got, want)
			}
		})
		t.Run(s.name+": with a type filter", func(t *testing.T) {
			t.Parallel()
			c := s.login(t, t.Name())
			c.create("svc-1", 30)
			marker := c.events("")[0].ID
			ch := c.longPoll("?marker=" + marker + "&type=configuration_value.update&wait=30")
			c.create("svc-2", 30)
			stillWaiting(t, ch)
			c.setConfig("key-1", "v")
			if got, want := summary(answer(t, ch)), []string{"configuration_value.update key-1"}; !slices.Equal(got, want) {
				t.Errorf("long-poll answer %q, want %q", got, want)
			}
		})
		t.Run(s.name+": tenants apart", func(t *testing.T) {
			t.Parallel()
			a, b := s.login(t, t.Name()+"-a"), s.login(t, t.Name()+"-b")
			a.create("svc-a", 30)
			ch := a.longPoll("?marker=" + a.events("")[0].ID + "&wait=30")
			b.setConfig("key-b", "v")
			stillWaiting(t, ch)
			a.setConfig("key-a", "v")
			if got, want := summary(answer(t, ch)), []string{"service.join svc-a", "configuration_value.update key-a"}; !slices.Equal(got, want) {
				t.Errorf("long-poll answer %q, want %q", got, want)
			}
		})
	}
}

// Design item 3: list answers carry X-Registry-Marker M, and every change
// committed after the read is in GET /events?marker=M.
func TestRegistryMarker(t *testing.T) { onEachStore(t, testRegistryMarker) }

func testRegistryMarker(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})

	// feedMarker checks that r carries a v1 UUID in X-Registry-Marker.
	feedMarker := func(t *testing.T, r *reply) string {
		t.Helper()
		r.want(200)
		m := r.header.Get("X-Registry-Marker")
		if _, err := timeuuid.Parse(m); err != nil {
			t.Fatalf("X-Registry-Marker %q: %v", m, err)
		}
		return m
	}
	// endsWith checks that the events from marker end with want.
	endsWith := func(t *testing.T, c *api, marker string, want ...string) {
		t.Helper()
		got := summary(c.events("?marker=" + marker))
		if len(got) < len(want) || !slices.Equal(got[len(got)-len(want):], want) {
			t.Errorf("events from the list's marker %q, want them to end with %q", got, want)
		}
	}

	t.Run("every list", func(t *testing.T) {
		t.Parallel()
		c := newAPI(t, srv)
		for i, path := range []string{"/services", "/services?tag=x", "/configuration", "/configuration/", "/configuration/ns/"} {
			m := feedMarker(t, c.do("GET", path, nil))
			id := "key-" + string(rune('a'+i))
			c.setConfig(id, "v")
			endsWith(t, c, m, "configuration_value.update "+id)
		}
	})
	t.Run("new account", func(t *testing.T) {
		t.Parallel()
		c := newAPI(t, srv)
		m := feedMarker(t, c.do("GET", "/services", nil))
		if evs := c.events("?marker=" + m); len(evs) != 0 {
			t.Errorf("events %q on a new account", summary(evs))
		}
		c.create("svc-1", 30)
		c.setConfig("key-1", "v")
		c.do("DELETE", "/services/svc-1", nil).want(204)
		endsWith(t, c, m, "service.join svc-1", "configuration_value.update key-1", "service.remove svc-1")
	})
	t.Run("list then long-poll", func(t *testing.T) {
		t.Parallel()
		c := newAPI(t, srv)
		c.create("svc-1", 30)
		m := feedMarker(t, c.do("GET", "/services", nil))
		ch := c.longPoll("?marker=" + m + "&wait=30&include=service.update")
		stillWaiting(t, ch)
		c.do("PUT", "/services/svc-1", map[string]any{"tags": []string{"t"}}).want(204)
		if got := summary(answer(t, ch)); len(got) == 0 || got[len(got)-1] != "service.update svc-1" {
			t.Errorf("long-poll from the list's marker: %q, want it to end with the update", got)
		}
	})
}

// Design item 4: a marker from before events that retention removed gets
// 410 markerExpired instead of a feed with a silent gap.
func TestMarkerExpired(t *testing.T) { onEachStore(t, testMarkerExpired) }

func testMarkerExpired(t *testing.T, kind string) {
	t.Parallel()
	clock := new(testserver.Clock)
	// 16 s of retention, which the server prunes every second (a
	// sixteenth of it): time enough that a slow machine keeps the event
	// until the clock moves.
	srv := testserver.Start(t, testserver.Options{Store: kind, Clock: clock, Retention: 16 * time.Second})
	c := newAPI(t, srv)
	old := c.do("GET", "/services", nil).want(200).header.Get("X-Registry-Marker")
	c.setConfig("key-1", "v")
	if got := summary(c.events("?marker=" + old)); len(got) != 1 {
		t.Fatalf("events before retention ran: %q", got)
	}
	// Past the retention window, the next retention run (every second)
	// removes the event; poll for it.
	clock.Advance(20 * time.Second)
	var r *reply
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if r = c.do("GET", "/events?marker="+old, nil); r.code != 200 {
			break
		}
	}
	r.fault(410, "markerExpired", "", unspecified{})
	c.do("GET", "/events?marker="+old+"&wait=5", nil).fault(410, "markerExpired", "", unspecified{})

	c.events("") // the default window never expires
	fresh := c.do("GET", "/services", nil).want(200).header.Get("X-Registry-Marker")
	c.setConfig("key-1", "w")
	if got, want := summary(c.events("?marker="+fresh)), []string{"configuration_value.update key-1"}; !slices.Equal(got, want) {
		t.Errorf("events from a fresh marker %q, want %q", got, want)
	}
}

// Design item 5: event ids have strictly increasing times in commit order,
// even for writes at once.
func TestEventIDsStrictlyIncrease(t *testing.T) { onEachStore(t, testEventIDsStrictlyIncrease) }

func testEventIDsStrictlyIncrease(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	const n = 40
	errs := make([]error, n)
	parallel(n, func(i int) {
		r, err := c.try("PUT", fmt.Sprintf("/configuration/key-%02d", i), map[string]string{"value": "v"})
		if err == nil && r.code != 204 {
			err = fmt.Errorf("status %d: %s", r.code, r.body)
		}
		errs[i] = err
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("set %d: %v", i, err)
		}
	}
	evs := c.events("?limit=1000")
	if len(evs) != n {
		t.Fatalf("%d events, want %d", len(evs), n)
	}
	for i := 1; i < n; i++ {
		a, _ := timeuuid.Parse(evs[i-1].ID)
		b, _ := timeuuid.Parse(evs[i].ID)
		if a.Ticks() >= b.Ticks() {
			t.Errorf("event %d id time %v is not after event %d's %v", i, b.Time(), i-1, a.Time())
		}
	}
}

// Design item 5 and spec §8.3: a timeout committed after a later write
// comes after it in the feed, though its timestamp is the earlier
// deadline, so a poller holding the write's id does not miss it.
func TestTimeoutAfterLaterWrite(t *testing.T) { onEachStore(t, testTimeoutAfterLaterWrite) }

func testTimeoutAfterLaterWrite(t *testing.T, kind string) {
	t.Parallel()
	clock := new(testserver.Clock)
	srv := testserver.Start(t, testserver.Options{Store: kind, Clock: clock, ReapInterval: -1})
	c := newAPI(t, srv)
	c.create("svc-1", 3)
	clock.Advance(3500 * time.Millisecond)
	c.setConfig("key-1", "v") // configuration writes do not rectify
	write := c.events("?type=configuration_value.update")
	if len(write) != 1 {
		t.Fatalf("configuration events %q", summary(write))
	}
	evs := c.events("?marker=" + write[0].ID)
	if got, want := summary(evs), []string{"configuration_value.update key-1", "service.timeout svc-1"}; !slices.Equal(got, want) {
		t.Fatalf("events from the write %q, want %q", got, want)
	}
	if evs[1].Timestamp >= evs[0].Timestamp {
		t.Errorf("timeout timestamp %d not before the write's %d: it should be the deadline", evs[1].Timestamp, evs[0].Timestamp)
	}
}

// Design item 6: repeating the token just used returns the same new token;
// older tokens stay used up.
func TestHeartbeatRetryIsIdempotent(t *testing.T) { onEachStore(t, testHeartbeatRetryIsIdempotent) }

func testHeartbeatRetryIsIdempotent(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	t0 := c.create("svc-1", 30)
	t1 := c.nextToken("svc-1", t0)
	if again := c.nextToken("svc-1", t0); again != t1 {
		t.Errorf("retry with %s returned %s, want %s again", t0, again, t1)
	}
	t2 := c.nextToken("svc-1", t1)
	if again := c.nextToken("svc-1", t1); again != t2 {
		t.Errorf("retry with %s returned %s, want %s again", t1, again, t2)
	}
	c.heartbeat("svc-1", t0).notFound("HeartbeatMarker", t0)
	c.nextToken("svc-1", t2)
}

// Design item 6 (spec §13 item 5): a token is bound to its service.
func TestTokenBoundToService(t *testing.T) { onEachStore(t, testTokenBoundToService) }

func testTokenBoundToService(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	ta := c.create("svc-a", 30)
	tb := c.create("svc-b", 30)
	c.heartbeat("svc-b", ta).notFound("HeartbeatMarker", ta)
	c.nextToken("svc-a", ta)
	c.nextToken("svc-b", tb)
}

// Design item 6 (spec §13 item 6): DELETE invalidates the outstanding
// token, and the old deadline never times out a new service of that id.
func TestDeleteInvalidatesToken(t *testing.T) { onEachStore(t, testDeleteInvalidatesToken) }

func testDeleteInvalidatesToken(t *testing.T, kind string) {
	t.Parallel()
	clock := new(testserver.Clock)
	srv := testserver.Start(t, testserver.Options{Store: kind, Clock: clock})
	c := newAPI(t, srv)
	old := c.create("svc-1", 30)
	c.do("DELETE", "/services/svc-1", nil).want(204)
	c.heartbeat("svc-1", old).notFound("Service", "svc-1")
	current := c.create("svc-1", 120)
	c.heartbeat("svc-1", old).notFound("HeartbeatMarker", old)
	clock.Advance(31 * time.Second) // past the old deadline, not the new one
	c.service("svc-1")
	c.nextToken("svc-1", current)
	if got, want := summary(c.events("")), []string{"service.join svc-1", "service.remove svc-1", "service.join svc-1"}; !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
}

// Design item 7: the background reaper times a service out with no read at
// all. Heartbeats do not rectify, so a heartbeat with an unknown token
// tells whether the service is still there.
func TestReaperWithoutReads(t *testing.T) { onEachStore(t, testReaperWithoutReads) }

func testReaperWithoutReads(t *testing.T, kind string) {
	t.Parallel()
	clock := new(testserver.Clock)
	srv := testserver.Start(t, testserver.Options{Store: kind, Clock: clock})
	c := newAPI(t, srv)
	token := c.create("svc-1", 3)
	unknown := "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
	clock.Advance(3500 * time.Millisecond)
	var r *reply
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		r = c.heartbeat("svc-1", unknown)
		var f struct {
			Details string `json:"details"`
		}
		json.Unmarshal(r.body, &f)
		if r.code != 404 || f.Details != `Object "HeartbeatMarker" with key "`+unknown+`" does not exist` || time.Now().After(end) {
			break
		}
	}
	r.notFound("Service", "svc-1")
	c.heartbeat("svc-1", token).notFound("Service", "svc-1")
	if got, want := summary(c.events("")), []string{"service.join svc-1", "service.timeout svc-1"}; !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
}

// Design item 8: ?tag= finds any tag a service may carry.
func TestTagQueryAnyTag(t *testing.T) { onEachStore(t, testTagQueryAnyTag) }

func testTagQueryAnyTag(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	c.createBody(map[string]any{"id": "db-1", "tags": []string{"db", "web server", "'", "ünï", "x"}, "heartbeat_timeout": 30})
	c.createBody(map[string]any{"id": "web-1", "tags": []string{"web"}, "heartbeat_timeout": 30})
	for _, q := range []string{"db", "web%20server", "web+server", "%27", "%C3%BCn%C3%AF", "x"} {
		svcs, _ := list[service](c.do("GET", "/services?tag="+q, nil))
		if len(svcs) != 1 || svcs[0].ID != "db-1" {
			t.Errorf("?tag=%s: %+v, want db-1", q, svcs)
		}
	}
}

// Design item 9: the type filter is applied before paging, so pages are
// full and next_marker is the next event of that type.
func TestTypeFilterBeforePaging(t *testing.T) { onEachStore(t, testTypeFilterBeforePaging) }

func testTypeFilterBeforePaging(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	c.create("svc-a", 30)
	c.create("svc-b", 30)
	c.do("DELETE", "/services/svc-a", nil).want(204)
	c.create("svc-c", 30)
	c.do("DELETE", "/services/svc-b", nil).want(204)
	c.do("DELETE", "/services/svc-c", nil).want(204)
	removes := c.events("?type=service.remove")
	if len(removes) != 3 {
		t.Fatalf("remove events %q", summary(removes))
	}

	evs, meta := list[event](c.do("GET", "/events?type=service.remove&limit=2", nil))
	if got, want := summary(evs), []string{"service.remove svc-a", "service.remove svc-b"}; !slices.Equal(got, want) {
		t.Errorf("first page %q, want %q", got, want)
	}
	if deref(meta.NextMarker) != removes[2].ID {
		t.Errorf("next_marker %q, want the third remove %s", deref(meta.NextMarker), removes[2].ID)
	}
	want := c.base + "/v1.0/" + c.tenant + "/events?type=service.remove&limit=2&marker=" + removes[2].ID
	if deref(meta.NextHref) != want {
		t.Errorf("next_href %q, want %q", deref(meta.NextHref), want)
	}
	evs, meta = list[event](c.do("GET", "/events?type=service.remove&limit=2&marker="+removes[2].ID, nil))
	if got := summary(evs); !slices.Equal(got, []string{"service.remove svc-c"}) || meta.NextMarker != nil {
		t.Errorf("second page %q, next_marker %v", got, meta.NextMarker)
	}
}

// A client that follows the feed as the official Node poller does (spec
// 11.4: the last event it received is its marker, it reads the first page
// only, and drops the marker event) moves on past any run of events the
// default read hides, here 1.2 MiB of service.update: a page that ended
// short of every event it keeps would give it nothing new, and its marker
// would never move again.
func TestFirstPagePollerPassesHiddenEvents(t *testing.T) {
	onEachStore(t, testFirstPagePollerPassesHiddenEvents)
}

func testFirstPagePollerPassesHiddenEvents(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	// The longest timeout (120 s): a timeout would add an event.
	c.create("svc-first", 120)
	marker := c.events("")[0].ID
	meta := func(v string) map[string]string {
		m := map[string]string{}
		for i := range 18 {
			m[fmt.Sprintf("key-%02d-%s", i, strings.Repeat("k", 100))] = v + strings.Repeat("v", 150)
		}
		return m
	}
	c.createBody(map[string]any{"id": "svc-big", "metadata": meta("a"), "heartbeat_timeout": 120})
	c.create("svc-second", 120)
	for i := range 260 { // about 4.7 KB each
		c.do("PUT", "/services/svc-big", map[string]any{"metadata": meta(fmt.Sprint(i % 2))}).want(204)
	}
	c.create("svc-last", 120)

	var seen []string
	for polls := 0; polls < 10; polls++ {
		evs := c.events("?marker=" + marker)
		if len(evs) > 0 && evs[0].ID == marker {
			evs = evs[1:]
		}
		if len(evs) == 0 {
			break
		}
		seen = append(seen, summary(evs)...)
		marker = evs[len(evs)-1].ID
	}
	if want := []string{"service.join svc-big", "service.join svc-second", "service.join svc-last"}; !slices.Equal(seen, want) {
		t.Errorf("a first-page poller saw %q, want %q", seen, want)
	}
}

// A parked long-poll's answer is written by the same code as any other:
// the same headers as an immediate answer of GET /events, with
// X-Registry-Wait.
func TestParkedAnswerHeaders(t *testing.T) { onEachStore(t, testParkedAnswerHeaders) }

func testParkedAnswerHeaders(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	c.create("svc-1", 30)
	now := c.do("GET", "/events", nil).want(200)
	ch := c.longPoll("?marker=" + c.events("")[0].ID + "&wait=30")
	stillWaiting(t, ch)
	c.create("svc-2", 30)
	p := <-ch
	if p.err != nil {
		t.Fatal(p.err)
	}
	parked := p.r.want(200)
	want := slices.Sorted(maps.Keys(now.header))
	want = append(want, "X-Registry-Wait")
	slices.Sort(want)
	if got := slices.Sorted(maps.Keys(parked.header)); !slices.Equal(got, want) {
		t.Errorf("parked answer's headers %q, want %q", got, want)
	}
	if ct := parked.header.Get("Content-Type"); ct != now.header.Get("Content-Type") {
		t.Errorf("parked answer's Content-Type %q, want %q", ct, now.header.Get("Content-Type"))
	}
	if parked.header.Get("X-Response-Id") == "" || parked.header.Get("X-Response-Id") == now.header.Get("X-Response-Id") {
		t.Errorf("parked answer's X-Response-Id %q", parked.header.Get("X-Response-Id"))
	}
}

// The long-polls one commit answers with the same body share its bytes, but
// each answer has its own X-Response-Id, its own X-Registry-Wait, and
// Connection: close where its client asked for it.
func TestParkedAnswersShareBody(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	c := newAPI(t, srv)
	c.create("svc-1", 30)
	query := "/events?marker=" + c.events("")[0].ID
	polls := []struct {
		wait  string
		close bool
	}{{"30", false}, {"30", false}, {"20", false}, {"30", true}, {"20", true}}
	chs := make([]chan polled, len(polls))
	for i, p := range polls {
		chs[i] = make(chan polled, 1)
		header := []string{"X-Auth-Token", c.token}
		if p.close {
			header = append(header, "Connection", "close")
		}
		go func() {
			r, err := trySend(t, c.base, "GET", "/v1.0/"+c.tenant+query+"&wait="+p.wait, nil, header...)
			chs[i] <- polled{r, err}
		}()
	}
	for _, ch := range chs {
		stillWaiting(t, ch)
	}
	c.create("svc-2", 30)
	ids := map[string]bool{}
	var body []byte
	for i, ch := range chs {
		p := <-ch
		if p.err != nil {
			t.Fatal(p.err)
		}
		r := p.r.want(200)
		if i == 0 {
			body = r.body
		}
		if !bytes.Equal(r.body, body) || !bytes.Contains(body, []byte("svc-2")) {
			t.Errorf("poll %d answered %s, want the first's %s, with svc-2", i, r.body, body)
		}
		id := r.header.Get("X-Response-Id")
		if id == "" || ids[id] {
			t.Errorf("poll %d: X-Response-Id %q, want one of its own", i, id)
		}
		ids[id] = true
		// The wait is jittered by up to a sixteenth, down.
		asked, _ := time.ParseDuration(polls[i].wait + "s")
		if w, err := time.ParseDuration(r.header.Get("X-Registry-Wait")); err != nil || w > asked || w < asked-asked/16 {
			t.Errorf("poll %d: X-Registry-Wait %q, want within a sixteenth under %s", i, r.header.Get("X-Registry-Wait"), asked)
		}
		if r.close != polls[i].close {
			t.Errorf("poll %d: Connection: close %v, want %v", i, r.close, polls[i].close)
		}
	}
}

// wait is seconds or a Go duration, capped at 10 minutes: so is a wait too
// large for a duration (it had overflowed to a negative one); NaN is not a
// number of seconds.
func TestWaitParameter(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	c := newAPI(t, srv)
	c.create("svc-1", 30) // an event: every poll answers at once
	for _, tc := range []struct{ wait, applied, details string }{
		{"30", "30s", ""},
		{"1.5", "1.5s", ""},
		{"2m", "2m0s", ""},
		{"3600", "10m0s", ""},
		{"1e10", "10m0s", ""},
		{"1e400", "10m0s", ""},
		{"Inf", "10m0s", ""},
		{"1e-400", "", ""}, // no wait: not a long-poll
		{"-1", "", "Wait must not be negative"},
		{"-0", "", "Wait must not be negative"},
		{"-Inf", "", "Wait must not be negative"},
		{"NaN", "", "Wait must be a number of seconds or a duration such as 30s"},
		{"soon", "", "Wait must be a number of seconds or a duration such as 30s"},
	} {
		r := c.do("GET", "/events?wait="+tc.wait, nil)
		if tc.details != "" {
			r.fault(400, "badRequest", "Invalid value for 'wait' query string parameter", tc.details)
			continue
		}
		// The wait applied is up to a sixteenth shorter (jitter).
		got := r.want(200).header.Get("X-Registry-Wait")
		d, err := time.ParseDuration(got)
		want, _ := time.ParseDuration(tc.applied)
		if tc.applied == "" && got != "" || tc.applied != "" && (err != nil || d > want || d < want-want/16) {
			t.Errorf("wait=%s: X-Registry-Wait %q, want %q less up to a sixteenth", tc.wait, got, tc.applied)
		}
	}
}

// A query of more than 256 parameters is refused before it is parsed and
// before authentication: tens of thousands fit in the header limit, and
// parsing them cost milliseconds of CPU a request, for anyone.
func TestQueryParameterBound(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	c := newAPI(t, srv)
	params := func(n int) string { return strings.Repeat("&p=1", n-1) }
	const msg = "The query string has 257 parameters, and a request may have 256 at most: leave out the parameters the API does not use."
	sendRequest(t, srv.URL, "GET", "/v1.0/"+c.tenant+"/services?limit=1"+params(257), nil).
		fault(400, "badRequest", msg, msg)
	sendRequest(t, srv.URL, "GET", "/v1.0/"+c.tenant+"/services?limit=1"+params(257), nil, "X-Auth-Token", c.token).
		fault(400, "badRequest", msg, msg)
	sendRequest(t, srv.URL, "GET", "/v1.0/"+c.tenant+"/services?limit=1"+params(256), nil, "X-Auth-Token", c.token).want(200)
	// Empty pairs are parameters; empty parts between '&'s are not.
	sendRequest(t, srv.URL, "GET", "/v1.0/"+c.tenant+"/services?limit=1"+strings.Repeat("&=", 300), nil).want(400)
	sendRequest(t, srv.URL, "GET", "/v1.0/"+c.tenant+"/services?limit=1"+strings.Repeat("&", 4000), nil, "X-Auth-Token", c.token).want(200)
}
