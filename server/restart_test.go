package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	neturl "net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/server"
	"github.com/svcreg/svcreg/server/store"
)

// rootOf is the root URL (scheme and host) of url, as clientOf takes it.
func rootOf(url string) string {
	u, err := neturl.Parse(url)
	if err != nil {
		panic(err)
	}
	return u.Scheme + "://" + u.Host
}

// call is a one-off authenticated JSON request for the restart tests, by
// the server's own client (clientOf).
func call(t *testing.T, method, url, token string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("X-Auth-Token", token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := clientOf(rootOf(url)).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// TestRestartKeepsTokensAndServices: design item 10. A restart keeps the
// outstanding heartbeat tokens valid and gives every live service its full
// timeout again, so a service whose deadline passed while the server was
// down is still there, and no timeout is emitted for it.
func TestRestartKeepsTokensAndServices(t *testing.T) {
	onEachStore(t, testRestartKeepsTokensAndServices)
}

func testRestartKeepsTokensAndServices(t *testing.T, kind string) {
	t.Parallel()
	clock := new(testserver.Clock)
	srv := testserver.Start(t, testserver.Options{Store: kind, Clock: clock})
	token, tenant := srv.Token("restart")
	base := srv.APIURL + "/" + tenant

	// A long timeout, so that the service surely lives past the restart
	// however slowly the server starts; the clock passes it.
	code, out := call(t, "POST", base+"/services", token, map[string]any{"id": "steady", "heartbeat_timeout": 30})
	if code != http.StatusCreated {
		t.Fatalf("create: %d %v", code, out)
	}
	code, out = call(t, "POST", base+"/services/steady/heartbeat", token, map[string]any{"token": out["token"]})
	if code != http.StatusOK {
		t.Fatalf("heartbeat: %d %v", code, out)
	}
	hb := out["token"]

	srv.Stop()
	clock.Advance(31 * time.Second) // past the service's deadline
	srv.Restart()

	code, out = call(t, "GET", base+"/services/steady", token, nil)
	if code != http.StatusOK {
		t.Fatalf("service after restart: %d %v; want it alive with a full timeout again", code, out)
	}
	code, out = call(t, "POST", base+"/services/steady/heartbeat", token, map[string]any{"token": hb})
	if code != http.StatusOK {
		t.Fatalf("heartbeat with the token from before the restart: %d %v", code, out)
	}
	code, out = call(t, "GET", base+"/events?type=service.timeout", token, nil)
	if code != http.StatusOK {
		t.Fatalf("events: %d %v", code, out)
	}
	if n := len(out["values"].([]any)); n != 0 {
		t.Fatalf("%d service.timeout events after a restart of a heartbeating service; want none", n)
	}
}

// TestRestartTakesTheRetryOfALostAnswer: design items 6 and 10. A
// heartbeat's answer is lost, its state is saved, the server restarts,
// and the client sends the heartbeat again with the same token: it is
// answered, as it is without the restart, and the client heartbeats on.
func TestRestartTakesTheRetryOfALostAnswer(t *testing.T) {
	onEachStore(t, testRestartTakesTheRetryOfALostAnswer)
}

func testRestartTakesTheRetryOfALostAnswer(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	token, tenant := srv.Token("restart-retry")
	base := srv.APIURL + "/" + tenant
	code, out := call(t, "POST", base+"/services", token, map[string]any{"id": "retried", "heartbeat_timeout": 30})
	if code != http.StatusCreated {
		t.Fatalf("create: %d %v", code, out)
	}
	sent := out["token"]
	if code, out = call(t, "POST", base+"/services/retried/heartbeat", token, map[string]any{"token": sent}); code != http.StatusOK {
		t.Fatalf("heartbeat: %d %v", code, out) // its answer is lost
	}
	// Twice: the answer to the retry is lost too.
	for i := range 2 {
		srv.Restart()
		// call's client would send the POST on a connection to the server
		// before the restart, and not again (a POST is not retried).
		clientOf(srv.URL).CloseIdleConnections()
		code, out = call(t, "POST", base+"/services/retried/heartbeat", token, map[string]any{"token": sent})
		if code != http.StatusOK {
			t.Fatalf("the heartbeat sent again after restart %d, its answers lost before: %d %v", i+1, code, out)
		}
	}
	if code, out = call(t, "POST", base+"/services/retried/heartbeat", token, map[string]any{"token": out["token"]}); code != http.StatusOK {
		t.Fatalf("the next heartbeat: %d %v", code, out)
	}
}

// TestRestartThenTimeout: after a restart a service that gets no heartbeat
// still times out, once, a full timeout after the restart.
func TestRestartThenTimeout(t *testing.T) { onEachStore(t, testRestartThenTimeout) }

func testRestartThenTimeout(t *testing.T, kind string) {
	t.Parallel()
	clock := new(testserver.Clock)
	srv := testserver.Start(t, testserver.Options{Store: kind, Clock: clock})
	token, tenant := srv.Token("restart-timeout")
	base := srv.APIURL + "/" + tenant
	if code, out := call(t, "POST", base+"/services", token, map[string]any{"id": "quiet", "heartbeat_timeout": 3}); code != http.StatusCreated {
		t.Fatalf("create: %d %v", code, out)
	}
	srv.Restart()
	clock.Advance(4500 * time.Millisecond)
	code, out := call(t, "GET", base+"/services/quiet", token, nil)
	if code != http.StatusNotFound {
		t.Fatalf("service without heartbeats a full timeout after restart: %d %v; want 404", code, out)
	}
	_, out = call(t, "GET", base+"/events?type=service.timeout", token, nil)
	if n := len(out["values"].([]any)); n != 1 {
		t.Fatalf("%d service.timeout events; want exactly 1", n)
	}
}

// TestShutdownAnswersLongPolls: a graceful stop (SIGTERM) answers the
// long-polls waiting on it, with what the feed holds, instead of dropping
// their connections.
func TestShutdownAnswersLongPolls(t *testing.T) { onEachStore(t, testShutdownAnswersLongPolls) }

func testShutdownAnswersLongPolls(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newUser(t, srv, "shutdown")
	type result struct {
		r   *reply
		err error
	}
	answered := make(chan result, 3)
	marker := c.do("GET", "/services", nil).want(200).header.Get("X-Registry-Marker")
	for range 3 {
		go func() {
			r, err := c.try("GET", "/events?wait=5m&marker="+marker, nil)
			answered <- result{r, err}
		}()
	}
	eventually(t, "the long-polls parked", func() bool { return srv.Metric("svcreg_connections_parked") == 3 })
	srv.Stop()
	for range 3 {
		select {
		case a := <-answered:
			var page struct{ Values []any }
			if a.err != nil || a.r.code != http.StatusOK || json.Unmarshal(a.r.body, &page) != nil || len(page.Values) != 0 {
				t.Fatalf("long-poll answered %+v (%v) at shutdown; want 200 with no events", a.r, a.err)
			}
			// Kept open, the connection would wait for a request that
			// never comes, and the server's stop with it.
			if !a.r.close {
				t.Error("a long-poll answered at shutdown did not say Connection: close")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a waiting long-poll was not answered by the graceful stop")
		}
	}
}

// TestDrainingServerSendsLongPollsElsewhere: once a graceful stop has
// begun, a new long-poll is answered at once (X-Registry-Wait: 0s) and its
// connection closed, so the client asks again on a new connection, which
// reaches the next server or this one restarted, instead of polling a
// server that is going away at an interval.
func TestDrainingServerSendsLongPollsElsewhere(t *testing.T) {
	onEachStore(t, testDrainingServerSendsLongPollsElsewhere)
}

func testDrainingServerSendsLongPollsElsewhere(t *testing.T, kind string) {
	t.Parallel()
	st := testserver.NewStore(t, testserver.Options{Store: kind, ReapInterval: -1})
	h := server.New(server.Config{Store: st, Auth: server.NewAuth(server.AuthConfig{Store: st, Dev: true})})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{ReadHeaderTimeout: 10 * time.Second}
	go h.Serve(hs, ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		hs.Shutdown(ctx)
	})
	c := devLogin(t, "http://"+ln.Addr().String(), "draining")
	marker := c.do("GET", "/services", nil).want(200).header.Get("X-Registry-Marker")

	r := c.do("GET", "/events?wait=0.2&marker="+marker, nil).want(200)
	if r.close || r.header.Get("X-Registry-Wait") == "0s" {
		t.Fatalf("before the stop: close %t, X-Registry-Wait %q; want a kept connection and a wait", r.close, r.header.Get("X-Registry-Wait"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h.Drain(ctx)
	r = c.do("GET", "/events?wait=5m&marker="+marker, nil).want(200)
	if !r.close || r.header.Get("X-Registry-Wait") != "0s" {
		t.Fatalf("while stopping: close %t, X-Registry-Wait %q; want Connection: close and 0s", r.close, r.header.Get("X-Registry-Wait"))
	}
}

// TestShutdownAnswersUnparkedLongPolls: a long-poll waiting on its
// goroutine (the handler served by a plain http.Server, without Serve) is
// answered by the stop as a parked one is, with Connection: close.
func TestShutdownAnswersUnparkedLongPolls(t *testing.T) {
	onEachStore(t, testShutdownAnswersUnparkedLongPolls)
}

func testShutdownAnswersUnparkedLongPolls(t *testing.T, kind string) {
	t.Parallel()
	st := testserver.NewStore(t, testserver.Options{Store: kind, ReapInterval: -1})
	reg := prometheus.NewRegistry()
	h := server.New(server.Config{Store: st, Auth: server.NewAuth(server.AuthConfig{Store: st, Dev: true}), Registerer: reg})
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	c := devLogin(t, hs.URL, "unparked")
	marker := c.do("GET", "/services", nil).want(200).header.Get("X-Registry-Marker")
	type result struct {
		r   *reply
		err error
	}
	answered := make(chan result, 1)
	go func() {
		r, err := c.try("GET", "/events?wait=5m&marker="+marker, nil)
		answered <- result{r, err}
	}()
	eventually(t, "the long-poll waiting", func() bool { return testserver.Metric(t, reg, "svcreg_longpolls_waiting") == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h.Drain(ctx)
	select {
	case a := <-answered:
		if a.err != nil || a.r.code != http.StatusOK {
			t.Fatalf("long-poll answered %+v (%v) at shutdown; want 200", a.r, a.err)
		}
		if !a.r.close {
			t.Error("a long-poll answered at shutdown did not say Connection: close")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a waiting long-poll was not answered by the stop")
	}
}

// feedSpy counts the feed reads a server makes, keeps their queries, and
// fails them while fail is set (counting those too).
type feedSpy struct {
	store.Store
	fail          atomic.Bool
	reads, failed atomic.Int32

	mu      sync.Mutex
	queries []store.EventQuery
}

func (f *feedSpy) Events(ctx context.Context, tenant string, q store.EventQuery) (store.EventPage, error) {
	f.reads.Add(1)
	f.mu.Lock()
	f.queries = append(f.queries, q)
	f.mu.Unlock()
	if f.fail.Load() {
		f.failed.Add(1)
		return store.EventPage{}, errors.New("flaky store: unavailable")
	}
	return f.Store.Events(ctx, tenant, q)
}

// last returns the last query that asked for exactly types.
func (f *feedSpy) last(t *testing.T, types ...registry.EventType) store.EventQuery {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.queries) - 1; i >= 0; i-- {
		if slices.Equal(f.queries[i].Types, types) {
			return f.queries[i]
		}
	}
	t.Fatalf("no feed read asked for %v", types)
	return store.EventQuery{}
}

// TestLongPollOutlivesAFailedRead: when the store fails the read that a
// commit wakes the parked long-polls for (an etcd member lost, say), they
// wait on and are answered once a read succeeds, instead of ending early
// with a 5xx.
func TestLongPollOutlivesAFailedRead(t *testing.T) { onEachStore(t, testLongPollOutlivesAFailedRead) }

func testLongPollOutlivesAFailedRead(t *testing.T, kind string) {
	t.Parallel()
	base, fs := startWrapped(t, kind, func(st store.Store) *feedSpy { return &feedSpy{Store: st} })
	c := devLogin(t, base, "flaky-read")
	marker := c.do("GET", "/services", nil).want(200).header.Get("X-Registry-Marker")
	ch := c.longPoll("?wait=60&marker=" + marker)
	stillWaiting(t, ch) // parked
	fs.fail.Store(true)
	c.create("svc-1", 30)
	stillWaiting(t, ch)
	if fs.failed.Load() == 0 {
		t.Fatal("the commit woke no read of the feed")
	}
	fs.fail.Store(false)
	if got := summary(answer(t, ch)); len(got) == 0 || got[len(got)-1] != "service.join svc-1" {
		t.Fatalf("long-poll answered %q, want the join", got)
	}
}

// A commit costs the long-poll dispatcher one read of the feed however
// many groups of polls wait, once each group has read its page: groups of
// their own (each its own marker, far back in the feed, asking for a type
// that never comes) were each read again from their marker on every
// commit, so that one account's polls made every write of it cost a scan
// of its feed per poll.
func TestLongPollWakeReadsOnce(t *testing.T) { onEachStore(t, testLongPollWakeReadsOnce) }

func testLongPollWakeReadsOnce(t *testing.T, kind string) {
	t.Parallel()
	base, cs := startWrapped(t, kind, func(st store.Store) *feedSpy { return &feedSpy{Store: st} })
	c := devLogin(t, base, "wake-once")
	const groups = 30
	for i := range groups {
		c.setConfig(fmt.Sprintf("key-%02d", i), "v")
	}
	evs := c.events("?limit=100")
	if len(evs) != groups {
		t.Fatalf("%d events, want %d", len(evs), groups)
	}
	var waiting []<-chan polled
	parkedFrom := cs.reads.Load()
	for _, ev := range evs {
		ch := c.longPoll("?wait=60&type=service.timeout&marker=" + ev.ID)
		waiting = append(waiting, ch)
	}
	// Each group reads its page once before it parks: counted from then
	// on, a slow machine's late first reads would pass for the commits'.
	for deadline := time.Now().Add(30 * time.Second); cs.reads.Load()-parkedFrom < groups; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d groups of polls read their page", cs.reads.Load()-parkedFrom, groups)
		}
	}
	stillParked := func() {
		t.Helper()
		time.Sleep(time.Second)
		for i, ch := range waiting {
			select {
			case p := <-ch:
				t.Fatalf("poll %d answered with no event of its type: %+v", i, p)
			default:
			}
		}
	}
	stillParked() // parked, each group read once
	before := cs.reads.Load()
	const writes = 5
	for i := range writes - 1 {
		c.setConfig(fmt.Sprintf("more-%d", i), "v")
	}
	// One more poll, of every type from the head, parked: the last
	// commit's wake-up answers it.
	marker := c.do("GET", "/services", nil).want(200).header.Get("X-Registry-Marker")
	last := c.longPoll("?wait=60&marker=" + marker)
	stillWaiting(t, last)
	c.setConfig("last", "v")
	if got := answer(t, last); len(got) == 0 {
		t.Fatal("the poll of every type was not answered")
	}
	time.Sleep(500 * time.Millisecond) // the wake-up's other groups
	// Each wake-up: the shared read, and the page of the poll it answers
	// (the last one's), and the last poll's own read before it parked.
	n := cs.reads.Load() - before
	if n > 3*writes {
		t.Errorf("%d feed reads for %d commits with %d groups of polls waiting; want about one a commit", n, writes, groups)
	}
	t.Logf("%d feed reads for %d commits with %d groups of polls waiting", n, writes, groups)
	stillParked()
}
