package registry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/registry"
)

// describe is "type id" of a service or configuration event.
func describe(t *testing.T, ev registry.Event) string {
	t.Helper()
	if ev.IsService() {
		s, err := ev.Service()
		if err != nil {
			t.Fatal(err)
		}
		return string(ev.Type) + " " + s.ID
	}
	ch, err := ev.ConfigChange()
	if err != nil {
		t.Fatal(err)
	}
	return string(ev.Type) + " " + ch.ID
}

// watchN reads n events from w.
func watchN(t *testing.T, ctx context.Context, w *registry.Feed, n int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var out []string
	for range n {
		ev, err := w.Next(ctx)
		if err != nil {
			t.Fatalf("after %v: Next: %v", out, err)
		}
		if w.Marker() != ev.ID {
			t.Errorf("Marker() = %s after event %s", w.Marker(), ev.ID)
		}
		out = append(out, describe(t, ev))
	}
	return out
}

func TestWatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		noWait  bool // the server answers at once, as the original did
		opts    registry.WatchOptions
		maxPoll int // at most this many polls while idle
	}{
		{"long-poll", false, registry.WatchOptions{Wait: 10 * time.Second}, 3},
		{"long-poll, small pages", false, registry.WatchOptions{Wait: 10 * time.Second, Limit: 2}, 3},
		{"polling", true, registry.WatchOptions{Wait: 10 * time.Second, PollInterval: 50 * time.Millisecond}, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := &proxy{noWait: tt.noWait}
			srv := testserver.Start(t, testserver.Options{Wrap: p.wrap})
			c := newClient(t, srv, "watch")
			ctx := testContext(t)
			if _, err := c.CreateService(ctx, registry.Service{ID: "before", HeartbeatTimeout: 120}); err != nil {
				t.Fatal(err)
			}
			page, err := c.ListServicesPage(ctx, registry.ServiceListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			w := c.NewFeed(page.FeedMarker, tt.opts)
			if w.Marker() != page.FeedMarker {
				t.Errorf("Marker() = %q before any event, want the start marker", w.Marker())
			}

			// Changes made while nobody polls, more than a page of them.
			if _, err := c.CreateService(ctx, registry.Service{ID: "web-1", HeartbeatTimeout: 120}); err != nil {
				t.Fatal(err)
			}
			if err := c.SetConfig(ctx, "/app/color", "blue"); err != nil {
				t.Fatal(err)
			}
			if err := c.UpdateService(ctx, "web-1", registry.ServicePatch{Metadata: map[string]string{"port": "80"}}); err != nil {
				t.Fatal(err)
			}
			got := watchN(t, ctx, w, 3)
			want := []string{"service.join web-1", "configuration_value.update /app/color", "service.update web-1"}
			if !slices.Equal(got, want) {
				t.Fatalf("events %v, want %v", got, want)
			}

			// Changes made while the watcher waits.
			done := make(chan []string)
			go func() { done <- watchN(t, ctx, w, 2) }()
			time.Sleep(100 * time.Millisecond) // let it wait (not needed for correctness)
			if err := c.DeleteService(ctx, "web-1"); err != nil {
				t.Fatal(err)
			}
			if err := c.DeleteConfig(ctx, "/app/color"); err != nil {
				t.Fatal(err)
			}
			got = <-done
			want = []string{"service.remove web-1", "configuration_value.remove /app/color"}
			if !slices.Equal(got, want) {
				t.Fatalf("events %v, want %v", got, want)
			}

			// Idle: long-polls wait on the server; polls keep their pace.
			before := p.count("/events", 0)
			ictx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			defer cancel()
			if ev, err := w.Next(ictx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Next while idle = %v, %v", ev, err)
			}
			if n := p.count("/events", 0) - before; n > tt.maxPoll {
				t.Errorf("%d polls while idle, want at most %d", n, tt.maxPoll)
			}
			if w.LastSuccess().IsZero() {
				t.Error("LastSuccess is zero")
			}

			// The watcher is still usable after ctx ended, and resumes where
			// it was: a new watcher from its marker sees the same.
			marker := w.Marker()
			if _, err := c.CreateService(ctx, registry.Service{ID: "after", HeartbeatTimeout: 120}); err != nil {
				t.Fatal(err)
			}
			if got := watchN(t, ctx, w, 1); got[0] != "service.join after" {
				t.Errorf("after idling: %v", got)
			}
			if got := watchN(t, ctx, c.NewFeed(marker, tt.opts), 1); got[0] != "service.join after" {
				t.Errorf("a new watcher from %s: %v", marker, got)
			}
		})
	}
}

// TestWatchDropsMarkerEvent: watching from an event's id (the marker is
// inclusive) starts with the event after it.
func TestWatchDropsMarkerEvent(t *testing.T) {
	t.Parallel()
	c, ctx, events := joins(t, "watch-marker", 5)
	if len(events) != 5 {
		t.Fatalf("%d events, want 5", len(events))
	}
	for _, limit := range []int{0, 1, 2} {
		w := c.NewFeed(events[1].ID, registry.WatchOptions{Limit: limit})
		got := watchN(t, ctx, w, 3)
		want := []string{"service.join svc-2", "service.join svc-3", "service.join svc-4"}
		if !slices.Equal(got, want) {
			t.Errorf("limit %d: %v, want %v", limit, got, want)
		}
	}
	// The iterator form, with a type filter.
	var got []string
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for ev, err := range c.Watch(wctx, events[3].ID, registry.WatchOptions{Type: registry.ServiceJoin}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, describe(t, ev))
		break
	}
	if !slices.Equal(got, []string{"service.join svc-4"}) {
		t.Errorf("Watch = %v", got)
	}
}

// Behind says the feed is catching up only after a full page (its limit
// of events) that names a next one: here pages of 3 from a registry that
// holds 7 events past the marker, then nothing more.
func TestFeedBehindAfterAFullPage(t *testing.T) {
	t.Parallel()
	c, ctx, events := joins(t, "feed-behind", 8)
	w := c.NewFeed(events[0].ID, registry.WatchOptions{Limit: 3, Wait: time.Second})
	var behind []bool
	for range 7 {
		if _, err := w.Next(ctx); err != nil {
			t.Fatal(err)
		}
		behind = append(behind, w.Behind())
	}
	// Pages: the marker's event and 2 new (full, a next one), 3 new
	// (full, a next one), 2 new (the head).
	if want := []bool{true, true, true, true, true, false, false}; !slices.Equal(behind, want) {
		t.Errorf("Behind after each event: %v, want %v", behind, want)
	}
}

// joins starts a server, on which user creates n services svc-0, svc-1,
// …; it returns user's client, the test's context and the feed's events.
func joins(t *testing.T, user string, n int) (*registry.Client, context.Context, []registry.Event) {
	t.Helper()
	c, ctx := newClient(t, testserver.Start(t, testserver.Options{}), user), testContext(t)
	for i := range n {
		if _, err := c.CreateService(ctx, registry.Service{ID: fmt.Sprintf("svc-%d", i), HeartbeatTimeout: 120}); err != nil {
			t.Fatal(err)
		}
	}
	return c, ctx, collect(t, c.ListEvents(ctx, registry.EventListOptions{}))
}

// A registry that sends events at or before the feed's position again
// (it ignores the marker, or a cache in between answers from an old
// page): they were returned already, or are older than what was, and
// applying them would undo newer ones. A page of nothing else is nothing
// new, and the feed does not ask again at once.
func TestFeedSkipsEventsAtOrBeforeItsPosition(t *testing.T) {
	t.Parallel()
	e1 := "00000001-0000-1000-8000-000000000000"
	e2 := "00000002-0000-1000-8000-000000000000"
	e3 := "00000003-0000-1000-8000-000000000000"
	var polls atomic.Int64
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := polls.Add(1)
		if wt := r.URL.Query().Get("wait"); wt != "" {
			w.Header().Set("X-Registry-Wait", wt)
		}
		values := fmt.Sprintf(`{"id":%q,"type":"service.join","payload":{"id":"x"}},{"id":%q,"type":"service.remove","payload":{"id":"x"}}`, e1, e2)
		if n == 1 {
			// e3, then e1 again, out of order: e1 is old.
			values = fmt.Sprintf(`{"id":%q,"type":"service.join","payload":{"id":"y"}},{"id":%q,"type":"service.join","payload":{"id":"x"}}`, e3, e1)
		}
		fmt.Fprintf(w, `{"values":[%s],"metadata":{"next_marker":null}}`, values)
	}))
	defer api.Close()
	c := tokenClient(t, api.URL)
	feed := c.NewFeed(e2, registry.WatchOptions{Wait: time.Second})
	var got []string
	collect := func(d time.Duration, most int) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		for len(got) < most {
			ev, err := feed.Next(ctx)
			if err != nil {
				return
			}
			got = append(got, ev.ID+" "+string(ev.Type))
		}
	}
	// The first event, however long a loaded machine takes to poll; then
	// whatever else the feed returns in 1.5 s.
	collect(30*time.Second, 1)
	collect(1500*time.Millisecond, 1000)
	if want := []string{e3 + " service.join"}; !slices.Equal(got, want) {
		t.Errorf("a Feed started after %s returned %q; want %q", e2, got, want)
	}
	if n := polls.Load(); n > 20 {
		t.Errorf("%d polls in 1.5 s of a registry that sends only events already seen; want a backoff", n)
	}
}

// TestFeedStopsAtEventsOutOfOrder: an event after the feed's marker but
// before one its page brought first (a registry that breaks the feed's
// order) is a change the feed would lose if it skipped it, and undo a newer
// one with if it returned it: the events before it come, then an error
// that calls for a list, for this and every later call. A Feed started
// without a marker (the registry's last hour) orders its first page so
// too. An event at or before the marker is one returned already
// (TestFeedSkipsEventsAtOrBeforeItsPosition).
func TestFeedStopsAtEventsOutOfOrder(t *testing.T) {
	t.Parallel()
	ids := []string{
		"00000001-0000-1000-8000-000000000000",
		"00000002-0000-1000-8000-000000000000",
		"00000003-0000-1000-8000-000000000000",
		"00000004-0000-1000-8000-000000000000",
	}
	event := func(id string) string { return fmt.Sprintf(`{"id":%q,"type":"service.join","payload":{"id":"x"}}`, id) }
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if wt := r.URL.Query().Get("wait"); wt != "" {
			w.Header().Set("X-Registry-Wait", wt)
		}
		var values []string
		switch r.URL.Query().Get("marker") {
		case "":
			values = []string{event(ids[2]), event(ids[0])} // the second is older
		case ids[0]:
			// The marker, one after it, then one between the two.
			values = []string{event(ids[0]), event(ids[1]), event(ids[3]), event(ids[2])}
		}
		fmt.Fprintf(w, `{"values":[%s],"metadata":{"next_marker":null}}`, strings.Join(values, ","))
	}))
	defer api.Close()
	c := tokenClient(t, api.URL)
	for _, tc := range []struct {
		marker string
		want   []string
	}{
		{"", ids[2:3]},
		{ids[0], []string{ids[1], ids[3]}},
	} {
		feed := c.NewFeed(tc.marker, registry.WatchOptions{Wait: time.Second})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var got []string
		var err error
		for {
			var ev registry.Event
			if ev, err = feed.Next(ctx); err != nil {
				break
			}
			got = append(got, ev.ID)
		}
		if !slices.Equal(got, tc.want) || !errors.Is(err, registry.ErrEventsOutOfOrder) {
			t.Errorf("a Feed from marker %q returned %q, then %v; want %q, then an error matching ErrEventsOutOfOrder", tc.marker, got, err, tc.want)
		}
		if _, again := feed.Next(ctx); again != err {
			t.Errorf("after %v, Next returned %v", err, again)
		}
		if m := feed.Marker(); m != tc.want[len(tc.want)-1] {
			t.Errorf("Marker() = %q after the events out of order; want the last returned, %q", m, tc.want[len(tc.want)-1])
		}
		cancel()
	}
}

// TestWatchRestart: the watcher rides out a registry restart.
func TestWatchRestart(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	c := newClient(t, srv, "watch-restart")
	ctx := testContext(t)
	page, err := c.ListServicesPage(ctx, registry.ServiceListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var retried atomic.Int32
	w := c.NewFeed(page.FeedMarker, registry.WatchOptions{
		Wait: 5 * time.Second, PollInterval: 100 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		OnError: func(err error, retryIn time.Duration) {
			if retryIn <= 0 {
				t.Errorf("retry in %v after %v", retryIn, err)
			}
			retried.Add(1)
		},
	})
	if _, err := c.CreateService(ctx, registry.Service{ID: "one", HeartbeatTimeout: 120}); err != nil {
		t.Fatal(err)
	}
	if got := watchN(t, ctx, w, 1); got[0] != "service.join one" {
		t.Fatalf("before the restart: %v", got)
	}

	done := make(chan []string)
	go func() { done <- watchN(t, ctx, w, 2) }()
	srv.Stop()
	time.Sleep(300 * time.Millisecond) // polls fail meanwhile (not needed for correctness)
	srv.Restart()
	if _, err := c.CreateService(ctx, registry.Service{ID: "two", HeartbeatTimeout: 120}); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteService(ctx, "one"); err != nil {
		t.Fatal(err)
	}
	if got := <-done; !slices.Equal(got, []string{"service.join two", "service.remove one"}) {
		t.Errorf("after the restart: %v", got)
	}
	if retried.Load() == 0 {
		t.Error("no error was reported while the registry was down")
	}
}

// A poll refused with a Retry-After (a registry that is overloaded, or
// rate-limits) is not sent again sooner, up to MaxBackoff.
func TestFeedWaitsOutRetryAfter(t *testing.T) {
	t.Parallel()
	p, c := proxied(t, "feed-retry-after", testserver.Options{})
	ctx := testContext(t)
	page, err := c.ListServicesPage(ctx, registry.ServiceListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.fail(rule{match: "/events", n: 2, status: http.StatusServiceUnavailable, retryAfter: "2"})
	var waits []time.Duration
	w := c.NewFeed(page.FeedMarker, registry.WatchOptions{Wait: time.Second, MaxBackoff: 3 * time.Second,
		OnError: func(_ error, retryIn time.Duration) { waits = append(waits, retryIn) }})
	if _, err := c.CreateService(ctx, registry.Service{ID: "one", HeartbeatTimeout: 120}); err != nil {
		t.Fatal(err)
	}
	if got := watchN(t, ctx, w, 1); got[0] != "service.join one" {
		t.Fatalf("got %v", got)
	}
	if len(waits) != 2 || waits[0] < 2*time.Second || waits[1] < 2*time.Second {
		t.Errorf("retried in %v after two refusals with a Retry-After of 2 s; want 2 s each", waits)
	}
}

// TestWatchAsksAgainWhenTheRegistryStops: a registry that is shutting
// down answers a long-poll at once (X-Registry-Wait: 0s) and closes the
// connection; the feed asks again soon on a new connection rather than
// falling back to polling at PollInterval (an hour here, so the test
// would time out). A proxy plays the stopping registry for the first
// long-poll.
func TestWatchAsksAgainWhenTheRegistryStops(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	target, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var polls atomic.Int32
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Header.Get("X-Stopping") != "" {
			resp.Header.Set("X-Registry-Wait", "0s")
			resp.Header.Set("Connection", "close")
		}
		return nil
	}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/events") && r.URL.Query().Get("wait") != "" && polls.Add(1) == 1 {
			// The stopping registry does not wait.
			q := r.URL.Query()
			q.Del("wait")
			r.URL.RawQuery = q.Encode()
			r.Header.Set("X-Stopping", "1")
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	c, err := registry.New(registry.Config{URL: front.URL + "/v1.0", AuthURL: front.URL + "/v2.0", Username: "watch-stopping", APIKey: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx := testContext(t)
	page, err := c.ListServicesPage(ctx, registry.ServiceListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := c.NewFeed(page.FeedMarker, registry.WatchOptions{Wait: 5 * time.Second, PollInterval: time.Hour})
	// The join is made once the feed has asked again after the stopping
	// registry's empty answer.
	created := make(chan error, 1)
	go func() {
		for polls.Load() < 2 {
			if ctx.Err() != nil {
				created <- ctx.Err()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		_, err := c.CreateService(ctx, registry.Service{ID: "one", HeartbeatTimeout: 120})
		created <- err
	}()
	if got := watchN(t, ctx, w, 1); got[0] != "service.join one" {
		t.Fatalf("got %v", got)
	}
	if err := <-created; err != nil {
		t.Fatal(err)
	}
}

// TestWatchMarkerExpired: once retention has removed the events after the
// marker, the watcher says to re-list, and a watcher from a new list's
// FeedMarker goes on.
func TestWatchMarkerExpired(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Retention: 2 * time.Second})
	c := newClient(t, srv, "watch-expired")
	ctx := testContext(t)
	page, err := c.ListServicesPage(ctx, registry.ServiceListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	old := page.FeedMarker
	if _, err := c.CreateService(ctx, registry.Service{ID: "gone-1", HeartbeatTimeout: 120}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "retention to remove the event", func() bool {
		_, err := c.ListEventsPage(ctx, registry.EventListOptions{Marker: old})
		return errors.Is(err, registry.ErrMarkerExpired)
	})

	var n int
	for ev, err := range c.Watch(ctx, old, registry.WatchOptions{}) {
		n++
		var e *registry.Error
		if !errors.Is(err, registry.ErrMarkerExpired) || !errors.As(err, &e) || e.StatusCode != http.StatusGone {
			t.Fatalf("Watch from an expired marker: %v, %v", ev, err)
		}
	}
	if n != 1 {
		t.Errorf("%d values, want the one error", n)
	}
	w := c.NewFeed(old, registry.WatchOptions{})
	for range 2 { // and again: the error stays
		if _, err := w.Next(ctx); !errors.Is(err, registry.ErrMarkerExpired) {
			t.Fatalf("Next: %v", err)
		}
	}

	// Re-list and watch from the new marker.
	page, err = c.ListServicesPage(ctx, registry.ServiceListOptions{})
	if err != nil || len(page.Values) != 1 {
		t.Fatalf("re-list: %+v, %v", page, err)
	}
	w = c.NewFeed(page.FeedMarker, registry.WatchOptions{})
	if err := c.DeleteService(ctx, "gone-1"); err != nil {
		t.Fatal(err)
	}
	if got := watchN(t, ctx, w, 1); got[0] != "service.remove gone-1" {
		t.Errorf("after the re-list: %v", got)
	}
}

// A next_marker's event that the event cap deleted before the Feed
// followed it, as the newest it deleted, is a marker the registry does not
// call expired (a client that saw that event lost nothing), but the Feed
// never returned that event: it says to re-list, rather than going on
// past it.
func TestFeedNextMarkerDeleted(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{MaxEvents: 5})
	c := newClient(t, srv, "next-deleted")
	ctx := testContext(t)
	page, err := c.ListServicesPage(ctx, registry.ServiceListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	set := func(i int) {
		t.Helper()
		if err := c.SetConfig(ctx, fmt.Sprintf("key-%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		set(i)
	}
	w := c.NewFeed(page.FeedMarker, registry.WatchOptions{Limit: 2})
	if got := watchN(t, ctx, w, 2); !slices.Equal(got, []string{"configuration_value.update key-0", "configuration_value.update key-1"}) {
		t.Fatalf("first page: %v", got)
	}
	// The next page starts at key-2's event; three more delete it, the
	// newest deleted.
	for i := 5; i < 8; i++ {
		set(i)
	}
	ev, err := w.Next(ctx)
	if !errors.Is(err, registry.ErrMarkerExpired) {
		t.Fatalf("Next after key-2's event was deleted: %v %v %v, want ErrMarkerExpired", ev.Type, string(ev.Payload), err)
	}
}

// With several nodes, a poll that every node failed is sent again (to the
// node that asked for a Retry-After, the next call's first) not sooner
// than that node asked: another node that gave no answer at all asks
// nothing.
func TestFeedWaitsOutRetryAfterOfAFailedOverNode(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "3")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"type":"serviceUnavailable","code":503,"message":"busy","details":"x","txnId":"t"}`)
	}))
	t.Cleanup(busy.Close)
	c, err := registry.New(registry.Config{URL: busy.URL + "," + deadURL, Token: "t", Tenant: "1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var waits []time.Duration
	w := c.NewFeed("6ba7b810-9dad-11d1-80b4-00c04fd430c8", registry.WatchOptions{Wait: time.Second, MaxBackoff: 5 * time.Second,
		OnError: func(_ error, retryIn time.Duration) { waits = append(waits, retryIn) }})
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	w.Next(ctx)
	if n := hits.Load(); n != 1 {
		t.Errorf("the node that asked for a Retry-After of 3 s was polled %d times in 2.5 s (retried in %v); want once", n, waits)
	}
}

// TestFeedOutOfOrderErrorShowsIDsCut: the error for events out of order
// shows the registry's ids as its other errors do (ShownText): cut, and
// with what does not show as itself escaped.
func TestFeedOutOfOrderErrorShowsIDsCut(t *testing.T) {
	t.Parallel()
	long := "\u3164" + strings.Repeat("x", 1000)
	event := func(id string) string { return fmt.Sprintf(`{"id":%q,"type":"service.join","payload":{"id":"x"}}`, id) }
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		values := []string{
			event("00000003-0000-1000-8000-000000000000"),
			event(long),
			event("00000001-0000-1000-8000-000000000000"),
		}
		fmt.Fprintf(w, `{"values":[%s],"metadata":{"next_marker":null}}`, strings.Join(values, ","))
	}))
	defer api.Close()
	c := tokenClient(t, api.URL)
	feed := c.NewFeed("", registry.WatchOptions{Wait: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	for {
		if _, err = feed.Next(ctx); err != nil {
			break
		}
	}
	if !errors.Is(err, registry.ErrEventsOutOfOrder) {
		t.Fatalf("Next: %v; want an error matching ErrEventsOutOfOrder", err)
	}
	if msg := err.Error(); len(msg) > 1000 || strings.Contains(msg, "\u3164") {
		t.Errorf("the error shows the id whole or unescaped (%d bytes): %.200q", len(msg), msg)
	}
}
