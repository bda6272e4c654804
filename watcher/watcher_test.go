package watcher_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/watcher"
)

func client(t *testing.T, srv *testserver.Server, user string) *registry.Client {
	t.Helper()
	c, err := registry.New(registry.Config{URL: srv.APIURL, AuthURL: srv.AuthURL, Username: user, APIKey: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// start runs a watcher until the test ends.
func start(t *testing.T, cfg watcher.Config) *watcher.Watcher {
	t.Helper()
	w := watcher.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

// eventually waits for cond on the newest snapshot; the bound only stops a
// broken test.
func eventually(t *testing.T, w *watcher.Watcher, what string, cond func(*watcher.Snapshot) bool) *watcher.Snapshot {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if s := w.Snapshot(); s != nil && cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; status %+v", what, w.Status())
		}
		select {
		case <-w.Updates():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func TestWatcherFollowsTheRegistry(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	c := client(t, srv, "watch-follow")
	ctx := context.Background()
	if _, err := c.CreateService(ctx, registry.Service{ID: "before", Tags: []string{"www"}, HeartbeatTimeout: 120}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetConfig(ctx, "/proxy/port", "80"); err != nil {
		t.Fatal(err)
	}
	w := start(t, watcher.Config{Client: c, Wait: 5 * time.Second})
	first := eventually(t, w, "the first sync", func(s *watcher.Snapshot) bool { return s.Synced })
	if _, ok := first.Service("before"); !ok {
		t.Fatal("listed snapshot lacks the service")
	}
	if v, _ := first.Config("/proxy/port"); v != "80" {
		t.Fatalf("listed config /lb/port = %q", v)
	}

	if _, err := c.CreateService(ctx, registry.Service{ID: "after", Metadata: map[string]string{"ip": "1"}, HeartbeatTimeout: 120}); err != nil {
		t.Fatal(err)
	}
	eventually(t, w, "the join", func(s *watcher.Snapshot) bool { _, ok := s.Service("after"); return ok })

	if err := c.UpdateService(ctx, "after", registry.ServicePatch{Metadata: map[string]string{"ip": "2"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, w, "the update", func(s *watcher.Snapshot) bool { x, _ := s.Service("after"); return x.Metadata["ip"] == "2" })

	if err := c.DeleteService(ctx, "before"); err != nil {
		t.Fatal(err)
	}
	if err := c.SetConfig(ctx, "/proxy/port", "8080"); err != nil {
		t.Fatal(err)
	}
	last := eventually(t, w, "the remove and the config change", func(s *watcher.Snapshot) bool {
		_, ok := s.Service("before")
		v, _ := s.Config("/proxy/port")
		return !ok && v == "8080"
	})
	if last.Version <= first.Version || !last.Synced {
		t.Fatalf("versions %d -> %d", first.Version, last.Version)
	}
	if st := w.Status(); !st.Synced || st.LastContact.IsZero() || st.Marker != last.Marker {
		t.Fatalf("status %+v", st)
	}
}

func TestWatcherSeesTimeouts(t *testing.T) {
	t.Parallel()
	// The service times out when the test moves the registry's clock past
	// its deadline, once the watcher has seen it join: a slow machine
	// cannot time it out before.
	clock := new(testserver.Clock)
	srv := testserver.Start(t, testserver.Options{Clock: clock})
	c := client(t, srv, "watch-timeout")
	w := start(t, watcher.Config{Client: c, Wait: 5 * time.Second})
	eventually(t, w, "the first sync", func(s *watcher.Snapshot) bool { return s.Synced })
	if _, err := c.CreateService(context.Background(), registry.Service{ID: "dies", HeartbeatTimeout: 120}); err != nil {
		t.Fatal(err)
	}
	eventually(t, w, "the join", func(s *watcher.Snapshot) bool { _, ok := s.Service("dies"); return ok })
	clock.Advance(121 * time.Second)
	eventually(t, w, "the timeout", func(s *watcher.Snapshot) bool { _, ok := s.Service("dies"); return !ok })
}

// TestWatcherConvergesAfterOutage stops the server, changes the registry
// behind the watcher's back while it is down (by restarting it on the same
// data), and checks the watcher keeps its snapshot meanwhile and converges.
func TestWatcherConvergesAfterOutage(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	c := client(t, srv, "watch-outage")
	ctx := context.Background()
	if _, err := c.CreateService(ctx, registry.Service{ID: "kept", HeartbeatTimeout: 120}); err != nil {
		t.Fatal(err)
	}
	w := start(t, watcher.Config{Client: c, Wait: 2 * time.Second, Outage: time.Second, MaxBackoff: 500 * time.Millisecond})
	eventually(t, w, "the first sync", func(s *watcher.Snapshot) bool { _, ok := s.Service("kept"); return ok })

	srv.Stop()
	eventually(t, w, "errors to be noticed", func(*watcher.Snapshot) bool { return w.Status().LastError != "" })
	if s := w.Snapshot(); !s.Synced {
		t.Fatal("the snapshot was dropped during the outage")
	}
	time.Sleep(1500 * time.Millisecond) // longer than Outage
	srv.Restart()
	if _, err := c.CreateService(ctx, registry.Service{ID: "added-after", HeartbeatTimeout: 120}); err != nil {
		t.Fatal(err)
	}
	eventually(t, w, "convergence after the outage", func(s *watcher.Snapshot) bool {
		_, kept := s.Service("kept")
		_, added := s.Service("added-after")
		return kept && added
	})
	if st := w.Status(); st.LastError != "" {
		t.Fatalf("status after recovery: %+v", st)
	}
}

// TestWatcherListsAgainWhenMarkerExpires hides the feed from the watcher
// while retention deletes the events it missed; when the feed comes back
// the marker has expired, and the watcher lists again.
func TestWatcherListsAgainWhenMarkerExpires(t *testing.T) {
	t.Parallel()
	var blocked atomic.Bool
	var refused atomic.Int32
	srv := testserver.Start(t, testserver.Options{
		Retention: time.Second,
		Wrap: func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				// Only the watcher long-polls.
				if blocked.Load() && strings.Contains(r.URL.Path, "/events") && r.URL.Query().Has("wait") {
					refused.Add(1)
					http.Error(w, "blocked by the test", http.StatusServiceUnavailable)
					return
				}
				h.ServeHTTP(w, r)
			})
		},
	})
	c := client(t, srv, "watch-expire")
	reg := prometheus.NewRegistry()
	w := start(t, watcher.Config{Client: c, Wait: time.Second, Outage: time.Hour, MaxBackoff: 200 * time.Millisecond, Registerer: reg})
	eventually(t, w, "the first sync", func(s *watcher.Snapshot) bool { return s.Synced })

	blocked.Store(true)
	// The long-poll already waiting at the server would be answered with
	// the creates below: they are made once it has ended and the next one
	// was refused.
	for deadline := time.Now().Add(20 * time.Second); refused.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the watcher sent no long-poll after the block")
		}
	}
	ctx := context.Background()
	for _, id := range []string{"missed-1", "missed-2"} {
		if _, err := c.CreateService(ctx, registry.Service{ID: id, HeartbeatTimeout: 120}); err != nil {
			t.Fatal(err)
		}
	}
	// Wait until retention has deleted the events the watcher missed.
	for i := 0; ; i++ {
		page, err := c.ListEventsPage(ctx, registry.EventListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Values) == 0 {
			break
		}
		if i == 300 {
			t.Fatal("retention never deleted the events")
		}
		time.Sleep(50 * time.Millisecond)
	}
	blocked.Store(false)
	eventually(t, w, "the re-list", func(s *watcher.Snapshot) bool {
		_, a := s.Service("missed-1")
		_, b := s.Service("missed-2")
		return a && b
	})
	if n := lists(t, reg, "marker-expired"); n != 1 {
		t.Fatalf("lists for an expired marker: %v, want 1", n)
	}
}

// lists reads svcreg_watcher_lists_total for a reason.
func lists(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	return testserver.Metric(t, reg, "svcreg_watcher_lists_total", "reason", reason)
}

// TestWatcherListsAgainAfterUndecodableEvent garbles the payload of one
// event on its way to the watcher: the watcher must not skip it silently
// (its snapshot would lack the service until the next periodic list) but
// count it, log it and list the registry again.
func TestWatcherListsAgainAfterUndecodableEvent(t *testing.T) {
	t.Parallel()
	var garbled atomic.Int32
	srv := testserver.Start(t, testserver.Options{
		Wrap: longPolls(func(body []byte) []byte {
			if bytes.Contains(body, []byte(`"garbled"`)) && garbled.Add(1) == 1 {
				body = bytes.ReplaceAll(body, []byte(`"garbled"`), []byte(`17`))
			}
			return body
		}),
	})
	c := client(t, srv, "watch-undecodable")
	reg := prometheus.NewRegistry()
	var logs testserver.Buffer
	w := start(t, watcher.Config{Client: c, Wait: time.Second, Registerer: reg, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	eventually(t, w, "the first sync", func(s *watcher.Snapshot) bool { return s.Synced })
	ctx := context.Background()
	if _, err := c.CreateService(ctx, registry.Service{ID: "garbled", Tags: []string{"www"}, HeartbeatTimeout: 120}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateService(ctx, registry.Service{ID: "after", HeartbeatTimeout: 120}); err != nil {
		t.Fatal(err)
	}
	s := eventually(t, w, "both services", func(s *watcher.Snapshot) bool {
		_, a := s.Service("garbled")
		_, b := s.Service("after")
		return a && b
	})
	if svc, _ := s.Service("garbled"); !slices.Equal(svc.Tags, []string{"www"}) {
		t.Fatalf("garbled = %+v", svc)
	}
	if garbled.Load() == 0 {
		t.Fatal("the test garbled no event")
	}
	if n := lists(t, reg, "undecodable-event"); n != 1 {
		t.Fatalf("lists after an undecodable event: %v, want 1", n)
	}
	if n := testserver.Metric(t, reg, "svcreg_watcher_undecodable_events_total"); n != 1 {
		t.Fatalf("svcreg_watcher_undecodable_events_total = %v, want 1", n)
	}
	if !strings.Contains(logs.String(), "could not be decoded") {
		t.Fatalf("no log line about the event:\n%s", logs.String())
	}
}

// TestWatcherListsAgainAfterEventsOutOfOrder swaps two new events in a
// page on its way to the watcher, as a registry that breaks the feed's
// order would: the older one, after the newer, must not be skipped (the
// snapshot would lack its service until the next periodic list) nor
// applied over it; the watcher lists the registry again.
func TestWatcherListsAgainAfterEventsOutOfOrder(t *testing.T) {
	t.Parallel()
	var swapped atomic.Int32
	srv := testserver.Start(t, testserver.Options{
		Wrap: longPolls(func(body []byte) []byte {
			var page struct {
				Values   []map[string]any `json:"values"`
				Metadata map[string]any   `json:"metadata"`
			}
			if json.Unmarshal(body, &page) != nil || len(page.Values) < 2 {
				return body
			}
			n := len(page.Values)
			a, _ := page.Values[n-2]["payload"].(map[string]any)
			b, _ := page.Values[n-1]["payload"].(map[string]any)
			if a["id"] != "one" || b["id"] != "two" || !swapped.CompareAndSwap(0, 1) {
				return body
			}
			page.Values[n-2], page.Values[n-1] = page.Values[n-1], page.Values[n-2]
			out, _ := json.Marshal(page)
			return out
		}),
	})
	c := client(t, srv, "watch-out-of-order")
	reg := prometheus.NewRegistry()
	var logs testserver.Buffer
	// The coalescing wait puts both writes below in one page.
	w := start(t, watcher.Config{Client: c, Wait: 5 * time.Second, Coalesce: 3 * time.Second, Registerer: reg,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	eventually(t, w, "the first sync", func(s *watcher.Snapshot) bool { return s.Synced })
	ctx := context.Background()
	if _, err := c.CreateService(ctx, registry.Service{ID: "first", HeartbeatTimeout: 120}); err != nil {
		t.Fatal(err)
	}
	eventually(t, w, "the first join", func(s *watcher.Snapshot) bool { _, ok := s.Service("first"); return ok })
	for _, id := range []string{"one", "two"} {
		if _, err := c.CreateService(ctx, registry.Service{ID: id, HeartbeatTimeout: 120}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, w, "both services", func(s *watcher.Snapshot) bool {
		_, a := s.Service("one")
		_, b := s.Service("two")
		return a && b
	})
	if swapped.Load() == 0 {
		t.Fatal("the test swapped no events: they came in different pages")
	}
	if n := lists(t, reg, "out-of-order"); n != 1 {
		t.Fatalf("lists after events out of order: %v, want 1", n)
	}
	if !strings.Contains(logs.String(), "out of order") {
		t.Fatalf("no log line about the events:\n%s", logs.String())
	}
}

// TestWatcherCoalescesAStreamOfChanges: changes made while the watcher
// waits after an answer are fetched by one long-poll, not one each.
func TestWatcherCoalescesAStreamOfChanges(t *testing.T) {
	t.Parallel()
	var answered atomic.Int32 // long-polls answered with events
	srv := testserver.Start(t, testserver.Options{
		Wrap: longPolls(func(body []byte) []byte {
			if bytes.Contains(body, []byte(`"service.join"`)) {
				answered.Add(1)
			}
			return body
		}),
	})
	c := client(t, srv, "watch-coalesce")
	// Far longer than the ten writes below take.
	w := start(t, watcher.Config{Client: c, Wait: 5 * time.Second, Coalesce: 3 * time.Second})
	eventually(t, w, "the first sync", func(s *watcher.Snapshot) bool { return s.Synced })
	ctx := context.Background()
	if _, err := c.CreateService(ctx, registry.Service{ID: "first", HeartbeatTimeout: 120}); err != nil {
		t.Fatal(err)
	}
	eventually(t, w, "the first join", func(s *watcher.Snapshot) bool { _, ok := s.Service("first"); return ok })
	before := answered.Load()
	for i := range 10 {
		if _, err := c.CreateService(ctx, registry.Service{ID: fmt.Sprintf("stream-%d", i), HeartbeatTimeout: 120}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, w, "the stream", func(s *watcher.Snapshot) bool { return len(s.Services()) == 11 })
	if n := answered.Load() - before; n > 2 {
		t.Fatalf("10 changes made while the watcher coalesced were fetched by %d long-polls", n)
	}
}

// Polls that bring events are bounded (PollEvery, PollBurst): a stream of
// writes costs a watcher a GET a poll allowed, not a GET a write, which
// would spend the account's GETs a day for every client of it. Here one
// poll after the first is allowed, then none for an hour: the writes
// after it wait, and no GET asks for them.
func TestWatcherBoundsItsPolls(t *testing.T) {
	t.Parallel()
	if n := pollsPastTheBound(t, nil); n > 2 {
		t.Errorf("%d polls of the feed for 10 writes past the bound; want none but stragglers", n)
	}
}

// A registry that names a next page on every page (an off-by-one) does
// not lift the bound: a page that is not full counts as a poll.
func TestWatcherBoundsPagesThatAreNotFull(t *testing.T) {
	t.Parallel()
	nextAlways := func(body []byte) []byte {
		var page struct {
			Values   []map[string]any `json:"values"`
			Metadata map[string]any   `json:"metadata"`
		}
		if json.Unmarshal(body, &page) != nil || len(page.Values) == 0 {
			return body
		}
		page.Metadata["next_marker"] = page.Values[len(page.Values)-1]["id"]
		out, _ := json.Marshal(page)
		return out
	}
	if n := pollsPastTheBound(t, nextAlways); n > 2 {
		t.Errorf("%d polls of the feed for 10 writes past the bound; want none but stragglers", n)
	}
}

// pollsPastTheBound runs a watcher whose bound allows one poll after the
// first, then none for an hour, on a registry whose events pages go
// through page (nil: as they are): it spends the bound on a change, then
// counts the polls of the feed while ten more are made.
func pollsPastTheBound(t *testing.T, page func(body []byte) []byte) int32 {
	t.Helper()
	var polls atomic.Int32
	srv := testserver.Start(t, testserver.Options{
		Wrap: func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !strings.HasSuffix(r.URL.Path, "/events") || r.Method != http.MethodGet {
					h.ServeHTTP(w, r)
					return
				}
				polls.Add(1)
				if page == nil {
					h.ServeHTTP(w, r)
					return
				}
				rewritten(h, w, r, page)
			})
		},
	})
	c := client(t, srv, "watch-bounded")
	w := start(t, watcher.Config{Client: c, Wait: 5 * time.Second, PollEvery: time.Hour, PollBurst: 1})
	eventually(t, w, "the first sync", func(s *watcher.Snapshot) bool { return s.Synced })
	ctx := context.Background()
	if _, err := c.CreateService(ctx, registry.Service{ID: "svc-1", HeartbeatTimeout: 120}); err != nil {
		t.Fatal(err)
	}
	eventually(t, w, "the first join", func(s *watcher.Snapshot) bool { _, ok := s.Service("svc-1"); return ok })
	time.Sleep(200 * time.Millisecond) // the polls the first join leads to
	before := polls.Load()
	for i := range 10 {
		if _, err := c.CreateService(ctx, registry.Service{ID: fmt.Sprint("stream-", i), HeartbeatTimeout: 120}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond) // long enough for polls to go out, were they allowed
	return polls.Load() - before
}

// A full page that names a next one costs no poll of the bound: a watcher
// catching up on a backlog fetches it page after page, or a steady stream
// of big events would outrun it. Here the bound allows one poll an hour,
// and 600 events of 4 kB wait: three pages of up to 1 MiB (the registry's
// most), all fetched.
func TestWatcherFollowsFullPagesAtOnce(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := testserver.Start(t, testserver.Options{
		Wrap: func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/events") && r.URL.Query().Has("wait") {
					<-release // the first poll waits for the backlog
				}
				h.ServeHTTP(w, r)
			})
		},
	})
	c := client(t, srv, "watch-pages")
	w := start(t, watcher.Config{Client: c, Wait: 5 * time.Second, PollEvery: time.Hour, PollBurst: 1})
	eventually(t, w, "the first sync", func(s *watcher.Snapshot) bool { return s.Synced })
	md := map[string]string{}
	for k := range 16 {
		md[fmt.Sprint("key-", k)] = strings.Repeat("x", 250)
	}
	ctx := context.Background()
	for i := range 150 { // a join and three updates each, 2.6 MB of events
		id := fmt.Sprint("backlog-", i)
		if _, err := c.CreateService(ctx, registry.Service{ID: id, HeartbeatTimeout: 120, Metadata: md}); err != nil {
			t.Fatal(err)
		}
		for u := range 3 {
			md["key-0"] = fmt.Sprint(id, "-", u)
			if err := c.UpdateService(ctx, id, registry.ServicePatch{Metadata: md}); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(release)
	eventually(t, w, "the backlog, three pages", func(s *watcher.Snapshot) bool {
		last, ok := s.Service("backlog-149")
		return ok && last.Metadata["key-0"] == "backlog-149-2"
	})
	if st := w.Status(); st.Resyncs != 0 {
		t.Errorf("the backlog came by %d lists again, not by its pages", st.Resyncs)
	}
}

// rewritten serves r through h, passing the answer's body through f.
func rewritten(h http.Handler, w http.ResponseWriter, r *http.Request, f func(body []byte) []byte) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	maps.Copy(w.Header(), rec.Header())
	w.Header().Del("Content-Length")
	w.WriteHeader(rec.Code)
	w.Write(f(rec.Body.Bytes()))
}

// longPolls returns a testserver Wrap that passes the body of every
// long-poll answer through f.
func longPolls(f func(body []byte) []byte) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.Contains(r.URL.Path, "/events") || !r.URL.Query().Has("wait") {
				h.ServeHTTP(w, r)
				return
			}
			rewritten(h, w, r, f)
		})
	}
}

// The services and the configuration are read one after the other: a
// change made between the two reads (the service deleted, then the value
// written) must not give a first snapshot holding both, a state the
// registry never had. --once renders that snapshot, and the loop's first
// pass does so at once.
func TestWatcherFirstSnapshotIsOneState(t *testing.T) {
	t.Parallel()
	var c *registry.Client
	var once atomic.Bool
	srv := testserver.Start(t, testserver.Options{
		Wrap: func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == "GET" && strings.HasSuffix(r.URL.Path, "/configuration") && once.CompareAndSwap(false, true) {
					ctx := context.Background()
					if err := c.DeleteService(ctx, "aaa"); err != nil {
						t.Error(err)
					}
					if err := c.SetConfig(ctx, "/proxy/key", "v2"); err != nil {
						t.Error(err)
					}
				}
				if strings.Contains(r.URL.Path, "/events") && r.URL.Query().Has("wait") {
					time.Sleep(500 * time.Millisecond) // a slow feed: the list would stay as it was read
				}
				h.ServeHTTP(w, r)
			})
		},
	})
	c = client(t, srv, "watch-torn")
	ctx := context.Background()
	if _, err := c.CreateService(ctx, registry.Service{ID: "aaa", Metadata: map[string]string{"ip": "10.0.0.1", "port": "80"}, HeartbeatTimeout: 120}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetConfig(ctx, "/proxy/key", "v1"); err != nil {
		t.Fatal(err)
	}
	w := start(t, watcher.Config{Client: c, Wait: 5 * time.Second})
	first := eventually(t, w, "the first sync", func(s *watcher.Snapshot) bool { return s.Synced })
	_, hasA := first.Service("aaa")
	if k, _ := first.Config("/proxy/key"); hasA || k != "v2" {
		t.Fatalf("first synced snapshot: service aaa %v, /proxy/key %q; want the registry's state after both changes (no aaa, v2)", hasA, k)
	}
}

// Two failed long-polls far apart, with the feed answering in between
// (nothing new), are not an outage: only a feed failing for longer than
// Outage without an answer is listed again.
func TestWatcherTwoBlipsAreNotAnOutage(t *testing.T) {
	t.Parallel()
	srv, fail := pollsFailing(t)
	c := client(t, srv, "watch-blips")
	reg := prometheus.NewRegistry()
	w := start(t, watcher.Config{Client: c, Wait: 100 * time.Millisecond, Outage: time.Second, MaxBackoff: 50 * time.Millisecond, Registerer: reg})
	eventually(t, w, "the first sync", func(s *watcher.Snapshot) bool { return s.Synced })
	fail.Store(1)
	time.Sleep(2 * time.Second) // empty long-polls answered meanwhile
	fail.Store(1)
	time.Sleep(500 * time.Millisecond)
	if n := lists(t, reg, "outage"); n != 0 {
		t.Fatalf("%v lists for an outage; want none: two failed polls 2 s apart, the feed answering in between, are not a 1 s outage", n)
	}
}

// A registry whose services list pages in a loop (its next_marker comes
// back) fails the list, rather than growing it for ever.
func TestWatcherListLoopingPages(t *testing.T) {
	t.Parallel()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next := "svc-b"
		if r.URL.Query().Get("marker") == "svc-b" {
			next = "svc-a"
		}
		w.Header().Set("X-Registry-Marker", "6ba7b810-9dad-11d1-80b4-00c04fd430c8")
		fmt.Fprintf(w, `{"values":[{"id":"svc-x","heartbeat_timeout":30}],"metadata":{"next_marker":%q}}`, next)
	}))
	t.Cleanup(api.Close)
	listRefused(t, registry.Config{URL: api.URL + "/v1.0", Token: "t", Tenant: "1"}, "pages in a loop")
}

// listRefused runs a watcher of the registry cfg names, and waits for its
// list to fail with an error that says want; nothing is published.
func listRefused(t *testing.T, cfg registry.Config, want string) {
	t.Helper()
	c, err := registry.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := start(t, watcher.Config{Client: c})
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(w.Status().LastError, want) {
		if time.Now().After(deadline) {
			t.Fatalf("the watcher's last error %q; want one that says %q", w.Status().LastError, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s := w.Snapshot(); s != nil && s.Synced {
		t.Errorf("a list that failed (%s) was published", want)
	}
}

// A registry whose feed brings new services without end does not grow
// the snapshot past the client's bound: the batch that would take it past
// is not applied, and the watcher lists again (and again, backing off),
// its snapshot never over the bound.
func TestWatcherFeedWithoutEnd(t *testing.T) {
	t.Parallel()
	var joins, lists atomic.Int64
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Registry-Marker", "6ba7b810-9dad-11d1-80b4-00c04fd430c8")
		if strings.HasSuffix(r.URL.Path, "/services") {
			lists.Add(1)
		}
		if !strings.HasSuffix(r.URL.Path, "/events") {
			io.WriteString(w, `{"values":[],"metadata":{"next_marker":null}}`)
			return
		}
		var b strings.Builder
		for i := range 100 {
			if i > 0 {
				b.WriteByte(',')
			}
			// New events, after the marker and each other.
			n := joins.Add(1)
			fmt.Fprintf(&b, `{"id":"%08x-0000-11d2-8000-000000000000","type":"service.join","payload":{"id":"svc-%d","heartbeat_timeout":30}}`, n, n)
		}
		fmt.Fprintf(w, `{"values":[%s],"metadata":{"next_marker":null}}`, b.String())
	}))
	t.Cleanup(api.Close)
	c, err := registry.New(registry.Config{URL: api.URL + "/v1.0", Token: "t", Tenant: "1", MaxListItems: 500})
	if err != nil {
		t.Fatal(err)
	}
	w := start(t, watcher.Config{Client: c})
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(w.Status().LastError, "past 500") {
		if time.Now().After(deadline) {
			t.Fatalf("the watcher's last error %q after %d joins; want one that says the snapshot would pass 500", w.Status().LastError, joins.Load())
		}
		if s := w.Snapshot(); s != nil && len(s.Services()) > 500 {
			t.Fatalf("the snapshot holds %d services, past the bound of 500", len(s.Services()))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if s := w.Snapshot(); s == nil || len(s.Services()) > 500 {
		t.Errorf("the snapshot after the refusal: %v", s)
	}
	// Backing off from 100 ms, doubling: about five lists in 2 s.
	from := lists.Load()
	time.Sleep(2 * time.Second)
	if n := lists.Load() - from; n > 10 {
		t.Errorf("%d lists in 2 s after the first refusal; want the watcher to back off", n)
	}
}

// A registry whose feed brings ever more registry text, few services
// each of a megabyte or new ones without end, does not grow the
// snapshot past the bytes a list may hold (10 KiB for each of
// MaxListItems): the batch that would is not applied, and the watcher
// lists again.
func TestWatcherFeedOfLargeServices(t *testing.T) {
	t.Parallel()
	var joins atomic.Int64
	junk := strings.Repeat("j", 64<<10)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Registry-Marker", "6ba7b810-9dad-11d1-80b4-00c04fd430c8")
		if !strings.HasSuffix(r.URL.Path, "/events") {
			io.WriteString(w, `{"values":[],"metadata":{"next_marker":null}}`)
			return
		}
		var b strings.Builder
		for i := range 5 {
			if i > 0 {
				b.WriteByte(',')
			}
			n := joins.Add(1)
			fmt.Fprintf(&b, `{"id":"%08x-0000-11d2-8000-000000000000","type":"service.join","payload":{"id":"svc-%d","heartbeat_timeout":30,"metadata":{"junk":"%s"}}}`, n, n, junk)
		}
		fmt.Fprintf(w, `{"values":[%s],"metadata":{"next_marker":null}}`, b.String())
	}))
	t.Cleanup(api.Close)
	c, err := registry.New(registry.Config{URL: api.URL + "/v1.0", Token: "t", Tenant: "1", MaxListItems: 100})
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxListBytes() != 100*10<<10 {
		t.Fatalf("MaxListBytes = %d, want 10 KiB for each of 100 items", c.MaxListBytes())
	}
	held := func(s *watcher.Snapshot) (n int) {
		for _, svc := range s.Services() {
			n += len(svc.ID) + len(svc.Metadata["junk"]) + len("junk")
		}
		return n
	}
	w := start(t, watcher.Config{Client: c})
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(w.Status().LastError, "past 1000 KiB of ids, tags, metadata and values") {
		if time.Now().After(deadline) {
			t.Fatalf("the watcher's last error %q after %d joins; want one that says the snapshot would pass 1000 KiB", w.Status().LastError, joins.Load())
		}
		if s := w.Snapshot(); s != nil && held(s) > 100*10<<10 {
			t.Fatalf("the snapshot holds %d bytes of services, past the bound of 1000 KiB", held(s))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if s := w.Snapshot(); s == nil || held(s) > 100*10<<10 {
		t.Errorf("the snapshot after the refusal holds too much")
	}
}

// A registry that lists but expires every long-poll's marker (a proxy
// that answers long requests 410) is listed again after a growing
// backoff, not at once for ever.
func TestWatcherBacksOffAMarkerThatAlwaysExpires(t *testing.T) {
	t.Parallel()
	var lists atomic.Int64
	c := fakeRegistry(t, func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "/services") {
			lists.Add(1)
		}
		if strings.HasSuffix(r.URL.Path, "/events") && r.URL.Query().Has("wait") {
			fault(w, http.StatusGone, "markerExpired", "")
			return true
		}
		return false
	})
	w := start(t, watcher.Config{Client: c, MaxBackoff: time.Second})
	eventually(t, w, "the first sync", func(s *watcher.Snapshot) bool { return s.Synced })
	// Backing off from 100 ms, doubling to 1 s: about five lists in 2 s.
	from := lists.Load()
	time.Sleep(2 * time.Second)
	if n := lists.Load() - from; n > 10 {
		t.Errorf("%d lists in 2 s of a feed that answers every long-poll 410; want the watcher to back off", n)
	}
}

// A list refused with a Retry-After (a registry that is overloaded) is
// not sent again sooner, up to MaxBackoff.
func TestWatcherWaitsOutRetryAfter(t *testing.T) {
	t.Parallel()
	var lists atomic.Int64
	c := fakeRegistry(t, func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "/services") && lists.Add(1) == 1 {
			fault(w, http.StatusServiceUnavailable, "serviceUnavailable", "3")
			return true
		}
		return false
	})
	start(t, watcher.Config{Client: c, MaxBackoff: 5 * time.Second})
	time.Sleep(2 * time.Second)
	if n := lists.Load(); n != 1 {
		t.Errorf("%d lists within 2 s of a refusal with a Retry-After of 3 s; want that one", n)
	}
}

// Watchers that a registry turned away together, with a Retry-After past
// MaxBackoff (a proxy in maintenance, 120 s), do not come back in step:
// each retry of the feed is spread below the cap, not all at the cap.
func TestWatcherSpreadsRetriesPastTheCap(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var polls []time.Time
	c := fakeRegistry(t, func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasSuffix(r.URL.Path, "/events") || !r.URL.Query().Has("wait") {
			return false
		}
		mu.Lock()
		polls = append(polls, time.Now())
		mu.Unlock()
		fault(w, http.StatusServiceUnavailable, "serviceUnavailable", "120")
		return true
	})
	start(t, watcher.Config{Client: c, MaxBackoff: 400 * time.Millisecond, Outage: time.Hour})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		n := len(polls)
		mu.Unlock()
		if n >= 12 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d polls in 30 s", n)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	// The first retries come as the backoff grows; the last ones at its
	// cap.
	lo, hi := time.Hour, time.Duration(0)
	for i := 6; i < 12; i++ {
		d := polls[i].Sub(polls[i-1])
		lo, hi = min(lo, d), max(hi, d)
	}
	if hi-lo < 20*time.Millisecond {
		t.Errorf("retries at the cap %v..%v apart: in step, not spread", lo, hi)
	}
}

// A registry that holds more services than the client's bound cannot be
// listed (the error says what to raise); one at the bound is followed,
// removals and configuration changes included, without listing again.
func TestWatcherAtTheBound(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	c := func(user string) *registry.Client {
		c, err := registry.New(registry.Config{URL: srv.APIURL, AuthURL: srv.AuthURL, Username: user, APIKey: "dev", MaxListItems: 5})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	over, at := c("over-the-bound"), c("at-the-bound")
	ctx := context.Background()
	for i := range 6 {
		if _, err := over.CreateService(ctx, registry.Service{ID: fmt.Sprintf("svc-%d", i), HeartbeatTimeout: 120}); err != nil {
			t.Fatal(err)
		}
		if i < 5 {
			if _, err := at.CreateService(ctx, registry.Service{ID: fmt.Sprintf("svc-%d", i), HeartbeatTimeout: 120}); err != nil {
				t.Fatal(err)
			}
		}
	}
	listRefused(t, registry.Config{URL: srv.APIURL, AuthURL: srv.AuthURL, Username: "over-the-bound", APIKey: "dev", MaxListItems: 5}, "max_list_items")

	reg := prometheus.NewRegistry()
	w := start(t, watcher.Config{Client: at, Registerer: reg})
	eventually(t, w, "the first sync", func(s *watcher.Snapshot) bool { return s.Synced && len(s.Services()) == 5 })
	if err := at.DeleteService(ctx, "svc-0"); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := at.SetConfig(ctx, fmt.Sprintf("key-%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, w, "the changes", func(s *watcher.Snapshot) bool {
		_, ok := s.Config("key-4")
		return len(s.Services()) == 4 && ok
	})
	if n := testserver.Metric(t, reg, "svcreg_watcher_lists_total"); n != 1 {
		t.Errorf("%v lists, want the first only", n)
	}
}

// A registry that pages without end, with a new next_marker on every
// page, fails the list once it passes the client's bound, rather than
// grow it until the list's timeout: the services after the first page,
// the configuration, and the feed's changes made while listing.
func TestWatcherListWithoutEnd(t *testing.T) {
	t.Parallel()
	for _, endless := range []string{"/services", "/configuration", "/events"} {
		t.Run(endless, func(t *testing.T) {
			t.Parallel()
			var pages atomic.Int64 // a fresh next_marker on every page
			api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Registry-Marker", "6ba7b810-9dad-11d1-80b4-00c04fd430c8")
				if !strings.HasSuffix(r.URL.Path, endless) {
					io.WriteString(w, `{"values":[],"metadata":{"next_marker":null}}`)
					return
				}
				n := pages.Add(1)
				values := `{"id":"svc-x","heartbeat_timeout":30}`
				if endless == "/events" {
					values = `{"id":"6ba7b810-9dad-11d1-80b4-00c04fd430c8","type":"service.join","payload":{"id":"svc-x"}}`
				}
				fmt.Fprintf(w, `{"values":[%s],"metadata":{"next_marker":"m%d"}}`, values, n)
			}))
			t.Cleanup(api.Close)
			listRefused(t, registry.Config{URL: api.URL + "/v1.0", Token: "t", Tenant: "1", MaxListItems: 500}, "pages without end")
		})
	}
}

// fakeRegistry is a client of a registry that answers what answer answers
// (it returns true), and every other request with an empty page, each
// with the same X-Registry-Marker.
func fakeRegistry(t *testing.T, answer func(w http.ResponseWriter, r *http.Request) bool) *registry.Client {
	t.Helper()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Registry-Marker", "6ba7b810-9dad-11d1-80b4-00c04fd430c8")
		if !answer(w, r) {
			io.WriteString(w, `{"values":[],"metadata":{"next_marker":null}}`)
		}
	}))
	t.Cleanup(api.Close)
	c, err := registry.New(registry.Config{URL: api.URL + "/v1.0", Token: "t", Tenant: "1"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fault answers with an API fault of type typ and status, and
// Retry-After if not empty.
func fault(w http.ResponseWriter, status int, typ, retryAfter string) {
	w.Header().Set("Content-Type", "application/json")
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"type":%q,"code":%d,"message":"fault","details":"x","txnId":"t"}`, typ, status)
}
