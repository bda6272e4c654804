package registry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/freeport"
	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/registry"
)

// deadURL is a registry node that is down: nothing listens on port 1, so
// connections to it are refused.
const deadURL = "http://127.0.0.1:1"

// moves records a client's moves from one registry URL to the next
// (Config.OnFailover) as "from -> to".
type moves struct {
	mu   sync.Mutex
	list []string
}

func (m *moves) record(from, to string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.list = append(m.list, from+" -> "+to)
}

func (m *moves) get() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.list)
}

// expect checks that the client moved once, from from to to.
func (m *moves) expect(t *testing.T, from, to string) {
	t.Helper()
	if got, want := m.get(), []string{from + " -> " + to}; !slices.Equal(got, want) {
		t.Errorf("moves %q, want %q", got, want)
	}
}

// failoverClient returns a client for cfg that records its moves.
func failoverClient(t *testing.T, cfg registry.Config) (*registry.Client, *moves) {
	t.Helper()
	m := &moves{}
	cfg.OnFailover = m.record
	c, err := registry.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, m
}

// startNode serves h as a registry node on a loopback port reserved for
// the test, so that once the node is closed no other test's server takes
// its port: requests to it are then refused, as by a node that is down.
func startNode(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	port, release, err := freeport.Reserve()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewUnstartedServer(h)
	s.Listener.Close()
	s.Listener = ln
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// proxyTo passes requests on to srv.
func proxyTo(t *testing.T, srv *testserver.Server) *httputil.ReverseProxy {
	t.Helper()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorLog = log.New(io.Discard, "", 0) // the requests cut when a node shuts down
	return rp
}

// frontNode is another node of srv's registry: it passes every request
// on to srv, as a second svcreg server over the same etcd would serve it.
// It counts the long-polls it gets in polls.
func frontNode(t *testing.T, srv *testserver.Server, polls *atomic.Int32) *httptest.Server {
	t.Helper()
	rp := proxyTo(t, srv)
	return startNode(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("wait") != "" {
			polls.Add(1)
		}
		rp.ServeHTTP(w, r)
	}))
}

// shutDown stops a node as a crash does: the connections it holds are
// cut, and new ones are refused.
func shutDown(s *httptest.Server) {
	s.Listener.Close()
	s.CloseClientConnections()
	s.Close()
}

// statusNode is a registry node that answers every request with status,
// counting them.
func statusNode(t *testing.T, status int) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	return startNode(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"type":"serviceUnavailable","code":%d,"message":"node failing","txnId":"node"}`, status)
	})), &hits
}

// flakyNode is another node of srv's registry (see frontNode) that
// answers 503 while fail is above 0, counting it down.
func flakyNode(t *testing.T, srv *testserver.Server) (node *httptest.Server, fail *atomic.Int32) {
	t.Helper()
	rp := proxyTo(t, srv)
	fail = new(atomic.Int32)
	return startNode(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := fail.Load(); n > 0 && fail.CompareAndSwap(n, n-1) {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		rp.ServeHTTP(w, r)
	})), fail
}

// fakeClock makes c take the time for its memory of the nodes' failures
// from the returned clock, which stands still until the test sets it.
func fakeClock(c *registry.Client) *atomic.Int64 {
	var now atomic.Int64
	registry.SetClock(c, func() time.Duration { return time.Duration(now.Load()) })
	return &now
}

// A read that gets no answer (connection refused) from the first URL is
// sent to the next at once, which later calls then use; credentials go to
// the identity endpoint of the node in use, failing over the same way.
func TestFailoverRead(t *testing.T) {
	t.Parallel()
	p := &proxy{}
	srv := testserver.Start(t, testserver.Options{Wrap: p.wrap})
	ctx := testContext(t)
	token, tenant := srv.Token("failover-read")
	logins := p.count("POST /v2.0/tokens", 0)
	for _, tc := range []struct {
		name string
		cfg  registry.Config
	}{
		{"static token", registry.Config{Token: token, Tenant: tenant}},
		{"credentials", registry.Config{Username: "failover-read", APIKey: "dev"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.URL = deadURL + "," + srv.URL
			c, m := failoverClient(t, tc.cfg)
			before := p.count("/limits", 0)
			for range 2 {
				if _, err := c.Limits(ctx); err != nil {
					t.Fatalf("Limits with the first URL down: %v", err)
				}
			}
			m.expect(t, deadURL, srv.URL)
			if n := p.count("/limits", 0) - before; n != 2 {
				t.Errorf("%d requests reached the live node, want 2", n)
			}
		})
	}
	if n := p.count("POST /v2.0/tokens", http.StatusOK) - logins; n != 1 {
		t.Errorf("%d logins at the live node, want 1", n)
	}
}

// A change refused before it was sent goes to the next URL; one that was
// sent and got no answer is not sent again (it may have been applied),
// but later calls go to the next URL.
func TestFailoverChange(t *testing.T) {
	t.Parallel()
	p := &proxy{}
	srv := testserver.Start(t, testserver.Options{Wrap: p.wrap})
	ctx := testContext(t)
	token, tenant := srv.Token("failover-change")

	t.Run("refused", func(t *testing.T) {
		c, m := failoverClient(t, registry.Config{URL: deadURL + "," + srv.APIURL, Token: token, Tenant: tenant})
		if _, err := c.CreateService(ctx, registry.Service{ID: "refused-1", HeartbeatTimeout: 30}); err != nil {
			t.Fatalf("create with the first URL refusing connections: %v", err)
		}
		if _, err := c.GetService(ctx, "refused-1"); err != nil {
			t.Error(err)
		}
		m.expect(t, deadURL, srv.APIURL)
	})

	t.Run("outcome unknown", func(t *testing.T) {
		var hits atomic.Int32
		// A node that takes the request and dies before it answers.
		cut := startNode(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			io.Copy(io.Discard, r.Body)
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				conn.Close()
			}
		}))
		c, m := failoverClient(t, registry.Config{URL: cut.URL + "," + srv.APIURL, Token: token, Tenant: tenant})
		before := p.count("POST", 0)
		_, err := c.CreateService(ctx, registry.Service{ID: "unknown-1", HeartbeatTimeout: 30})
		if !errors.Is(err, registry.ErrOutcomeUnknown) {
			t.Fatalf("create cut off after it was sent: %v, want ErrOutcomeUnknown", err)
		}
		if n := p.count("POST", 0) - before; n != 0 {
			t.Errorf("the create was sent again to the next URL (%d requests): its outcome was unknown", n)
		}
		m.expect(t, cut.URL, srv.APIURL)
		if _, err := c.GetService(ctx, "unknown-1"); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("get after the move: %v, want the live node's 404", err)
		}
		if n := hits.Load(); n != 1 {
			t.Errorf("%d requests reached the node that failed, want 1", n)
		}
	})
}

// A change that a node made (2xx) and whose answer then stalls until the
// request's own time runs out (nodeTimeout, 30 s, within the caller's
// longer deadline: svcreg's commands give a minute) is not sent to the
// next node: it would find the service it made taken. The node is left
// for later calls. It takes nodeTimeout.
func TestChangeWhoseAnswerStallsIsNotSentAgain(t *testing.T) {
	t.Parallel()
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	stalled := startNode(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"tok`) // the node froze while it answered
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	next, nextHits := statusNode(t, http.StatusConflict)
	c, m := failoverClient(t, registry.Config{URL: stalled.URL + "," + next.URL, Token: "t", Tenant: "1"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := c.CreateService(ctx, registry.Service{ID: "stalled", HeartbeatTimeout: 30})
	if n := nextHits.Load(); n != 0 {
		t.Errorf("the create, which the first node answered 201, was sent again to the next (%d requests); the call returned %v", n, err)
	}
	if !errors.Is(err, registry.ErrOutcomeUnknown) {
		t.Errorf("create: %v, want ErrOutcomeUnknown", err)
	}
	m.expect(t, stalled.URL, next.URL)
}

// A URL's user information may be a secret (a token as the user name):
// no error shows it, neither a call's nor the one OnFailover is told, for
// a request or a login, as the http.Client's own errors would.
func TestFailedCallsHideUserInfo(t *testing.T) {
	t.Parallel()
	var told []string
	var mu sync.Mutex
	onFailover := func(from, to string, err error) {
		mu.Lock()
		defer mu.Unlock()
		told = append(told, from+" "+to+" "+err.Error())
	}
	var errs []string
	for _, cfg := range []registry.Config{
		{URL: "http://s3cr3t-token@127.0.0.1:1,http://user:pw@127.0.0.1:2/x", Token: "t", Tenant: "1", OnFailover: onFailover},
		{URL: "http://s3cr3t-token@127.0.0.1:1", Token: "t", Tenant: "1"},
		{URL: "http://s3cr3t-token@127.0.0.1:1,http://user:pw@127.0.0.1:2/x", Username: "u", APIKey: "k", OnFailover: onFailover},
		{URL: "http://s3cr3t-token@127.0.0.1:1", Username: "u", APIKey: "k"},
	} {
		c, err := registry.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Limits(testContext(t))
		c.Close()
		if err == nil {
			t.Fatal("Limits at nodes that refuse connections: no error")
		}
		errs = append(errs, err.Error())
	}
	mu.Lock()
	defer mu.Unlock()
	for _, s := range append(told, errs...) {
		if strings.Contains(s, "s3cr3t-token") || strings.Contains(s, "user") {
			t.Errorf("shows a URL's user information: %s", s)
		}
	}
}

// 502, 503 and 504 say the node failed: a read goes on to the next URL, a
// change does not (the registry may have applied it) but moves the URL.
// Other answers, a 500 included, are the registry's: nothing moves.
func TestFailoverStatuses(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	ctx := testContext(t)
	token, tenant := srv.Token("failover-status")
	for _, status := range []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			node, hits := statusNode(t, status)
			cfg := registry.Config{URL: node.URL + "," + srv.APIURL, Token: token, Tenant: tenant}
			c, m := failoverClient(t, cfg)
			_, err := c.Limits(ctx)
			if status == http.StatusInternalServerError {
				var e *registry.Error
				if !errors.As(err, &e) || e.StatusCode != status {
					t.Errorf("Limits: %v, want the node's %d", err, status)
				}
				if got := m.get(); len(got) != 0 {
					t.Errorf("moves %q, want none", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Limits: %v, want the next node's answer", err)
			}
			m.expect(t, node.URL, srv.APIURL)

			// A new client, which starts at the failing node, for a change.
			c2, m2 := failoverClient(t, cfg)
			_, err = c2.CreateService(ctx, registry.Service{ID: "status-" + strconv.Itoa(status), HeartbeatTimeout: 30})
			var e *registry.Error
			if !errors.Is(err, registry.ErrOutcomeUnknown) || !errors.As(err, &e) || e.StatusCode != status {
				t.Fatalf("create answered %d: %v, want ErrOutcomeUnknown with the *Error", status, err)
			}
			if _, err := c2.GetService(ctx, "status-"+strconv.Itoa(status)); !errors.Is(err, registry.ErrNotFound) {
				t.Errorf("get after the create: %v, want the live node's 404 (the create not sent again)", err)
			}
			m2.expect(t, node.URL, srv.APIURL)
			if n := hits.Load(); n != 2 {
				t.Errorf("%d requests reached the failing node, want 2", n)
			}
		})
	}
}

// Requests that fail at one URL together move the client once, to the
// next URL: none skips it for the one after.
func TestConcurrentFailuresMoveOnce(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	ctx := testContext(t)
	token, tenant := srv.Token("failover-concurrent")
	const n = 8
	var arrived atomic.Int32
	all := make(chan struct{})
	// The first node answers 503 once all n requests are in.
	first := startNode(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if arrived.Add(1) == n {
			close(all)
		}
		select {
		case <-all:
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	third, thirdHits := statusNode(t, http.StatusServiceUnavailable)
	c, m := failoverClient(t, registry.Config{URL: strings.Join([]string{first.URL, srv.URL, third.URL}, ","), Token: token, Tenant: tenant})
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Limits(ctx)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Limits: %v", err)
		}
	}
	m.expect(t, first.URL, srv.URL)
	if h := thirdHits.Load(); h != 0 {
		t.Errorf("%d requests went to the third URL; the second was live", h)
	}
}

// Each URL of a list is checked as one alone is; an empty or bad one is
// an error that names it, without a password it may hold.
func TestURLList(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url  string
		want string // in the error; "" if New accepts it
		urls []string
	}{
		{url: "http://a:8420,http://b:8420/v1.0", urls: []string{"http://a:8420", "http://b:8420/v1.0"}},
		{url: " http://a:8420/ , https://b ", urls: []string{"http://a:8420/", "https://b"}},
		// A comma inside one URL (its password) does not split it, nor
		// do two.
		{url: "http://u:pa,ss@a:8420", urls: []string{"http://u:pa,ss@a:8420"}},
		{url: "http://u:s3cr,,et@a:8420/v1.0", urls: []string{"http://u:s3cr,,et@a:8420/v1.0"}},
		// One that does not parse, cut out of a password with
		// ",http://" in it (written %2C%2F%2F in a URL), is not shown.
		{url: "http://u:s3cret,http://x@b:8420", want: `URL 1 of 2, "http://…", is not an http(s) URL`},
		{url: "http://a:8420,,http://b:8420", want: `URL 2 of 3 in "http://a:8420,,http://b:8420" is empty`},
		{url: "http://a:8420,", want: "URL 2 of 2"},
		{url: ",http://a:8420", want: "URL 1 of 2"},
		{url: "http://a:8420,ftp://u:s3cret@b", want: `URL 2 of 2, "ftp://…@b", is not an http(s) URL`},
		{url: "http://a:8420,http://", want: `URL 2 of 2, "http://", is not`},
		{url: "a:8420", want: `URL "a:8420" is not an http(s) URL`},
	} {
		_, err := registry.New(registry.Config{URL: tc.url, Token: "t", Tenant: "1"})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("New(%q): %v", tc.url, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "s3cret")):
			t.Errorf("New(%q) = %v, want an error saying %q", tc.url, err, tc.want)
		}
		if got := (registry.Config{URL: tc.url}).URLs(); tc.urls != nil && !slices.Equal(got, tc.urls) {
			t.Errorf("URLs of %q = %q, want %q", tc.url, got, tc.urls)
		}
	}
}

// A caller's own deadline says nothing of the node: a long-poll it ends
// moves nothing, and the next call goes to the same node.
func TestCallerDeadlineMovesNothing(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	token, tenant := srv.Token("caller-deadline")
	c, m := failoverClient(t, registry.Config{URL: srv.URL + "," + srv.URL + "/", Token: token, Tenant: tenant})
	for range 3 {
		ctx, cancel := context.WithTimeout(testContext(t), 100*time.Millisecond)
		_, err := c.ListEventsPage(ctx, registry.EventListOptions{Wait: 5 * time.Second})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("a long-poll past the caller's deadline: %v", err)
		}
	}
	if got := m.get(); len(got) != 0 {
		t.Errorf("the caller's deadline moved the client: %q", got)
	}
}

// A read whose answer breaks off (the node died while it sent it) is sent
// to the next node; the error of one that has nowhere to go shows no
// password.
func TestCutAnswerFailsOver(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	token, tenant := srv.Token("cut-answer")
	cut := startNode(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "1000")
		io.WriteString(w, `{"rate": {`)
	}))
	c, m := failoverClient(t, registry.Config{URL: cut.URL + "," + srv.URL, Token: token, Tenant: tenant})
	if _, err := c.Limits(testContext(t)); err != nil {
		t.Fatalf("a read cut short at the first node: %v", err)
	}
	m.expect(t, cut.URL, srv.URL)
	if got := c.URL(); got != srv.URL {
		t.Errorf("URL() = %q after the move, want %q", got, srv.URL)
	}

	withPassword := strings.Replace(cut.URL, "http://", "http://u:s3cret@", 1)
	one, err := registry.New(registry.Config{URL: withPassword, Token: token, Tenant: tenant})
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	if _, err := one.Limits(testContext(t)); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("a read cut short: %v; want an error without the password", err)
	}
}

// An early refresh of the token at a node that takes the login and never
// answers holds no call up: the calls go on with the token, which has
// hours left, and move to the next node by themselves.
func TestRefreshAtAHangingNodeHoldsNothingUp(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	rp := proxyTo(t, srv)
	// The node hangs logins first, then everything: so the refresh is
	// surely held there before a heartbeat hangs (one that hung first
	// would move the client, and the refresh would go to the next node).
	var hangLogins, hang atomic.Bool
	var held atomic.Int32 // logins the hanging node holds
	release := make(chan struct{})
	front := startNode(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		login := r.URL.Path == "/v2.0/tokens"
		if !hang.Load() && !(login && hangLogins.Load()) {
			rp.ServeHTTP(w, r)
			return
		}
		if login {
			held.Add(1)
			defer held.Add(-1)
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(func() { close(release) })
	c, m := failoverClient(t, registry.Config{URL: front.URL + "," + srv.URL, Username: "refresh-hang", APIKey: "dev"})
	ctx := testContext(t)
	opts, ch := beats(registry.HeartbeatOptions{Interval: 50 * time.Millisecond})
	h, err := c.Register(ctx, registry.Service{ID: "hb-hang", HeartbeatTimeout: 10}, registry.RegisterOptions{Heartbeat: opts})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	if b := nextBeat(t, ch); b.Err != nil {
		t.Fatalf("first beat: %v", b.Err)
	}
	hangLogins.Store(true)
	registry.RefreshDue(c)
	for held.Load() == 0 {
		if b := nextBeat(t, ch); b.Err != nil {
			t.Fatalf("a beat while the refresh waits: %v", b.Err)
		}
	}
	hang.Store(true)
	for {
		b := nextBeat(t, ch)
		// Only a success after the move counts: a beat that went through
		// the first node before it hung, and is told of only now, proves
		// nothing of the login.
		if b.Err != nil || len(m.get()) == 0 {
			continue
		}
		if held.Load() == 0 {
			t.Fatalf("no heartbeat got through until the login at the hanging node ended; moves %q", m.get())
		}
		break
	}
	m.expect(t, front.URL, srv.URL)
}

// With several URLs a Feed long-polls for at most 20 s, so that a node
// that froze while it held the poll is left within about half a minute;
// with one, for the wait asked.
func TestFeedWaitsLessWithSeveralNodes(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	rp := proxyTo(t, srv)
	waits := make(chan string, 10)
	node := startNode(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if wait := r.URL.Query().Get("wait"); wait != "" {
			waits <- wait
		}
		rp.ServeHTTP(w, r)
	}))
	token, tenant := srv.Token("feed-wait")
	for _, tc := range []struct{ url, want string }{
		{node.URL + "," + srv.URL, "20s"},
		{node.URL, "1m0s"},
	} {
		c, _ := failoverClient(t, registry.Config{URL: tc.url, Token: token, Tenant: tenant})
		feed := c.NewFeed("", registry.WatchOptions{Wait: time.Minute})
		ctx, cancel := context.WithCancel(testContext(t))
		go feed.Next(ctx)
		if got := <-waits; got != tc.want {
			t.Errorf("URL %s: a long-poll asked to wait %s, want %s", tc.url, got, tc.want)
		}
		cancel()
	}
}

// A Config shows each of its URLs without its password.
func TestURLListHidesPasswords(t *testing.T) {
	t.Parallel()
	cfg := registry.Config{URL: "http://u:s3cret@a.example:8420,http://v:s3cret@b.example:8420", Token: "t", Tenant: "1"}
	var js bytes.Buffer
	slog.New(slog.NewJSONHandler(&js, nil)).Info("start", "registry", cfg)
	for _, out := range []string{cfg.String(), fmt.Sprintf("%#v", cfg), js.String()} {
		if strings.Contains(out, "s3cret") || !strings.Contains(out, "a.example") || !strings.Contains(out, "b.example") {
			t.Errorf("%s\nwant both hosts, and no password", out)
		}
	}
}

// A URL whose password holds a comma still works, alone.
func TestCommaInURLPassword(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	token, tenant := srv.Token("comma-password")
	c, err := registry.New(registry.Config{URL: strings.Replace(srv.APIURL, "http://", "http://u:pa,ss@", 1), Token: token, Tenant: tenant})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Limits(testContext(t)); err != nil {
		t.Error(err)
	}
}

// A heartbeater whose node shuts down goes on heartbeating at the next,
// with the same token (any node takes it).
func TestHeartbeaterFailsOver(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	front := frontNode(t, srv, new(atomic.Int32))
	c, m := failoverClient(t, registry.Config{URL: front.URL + "," + srv.URL, Username: "hb-failover", APIKey: "dev"})
	ctx := testContext(t)
	opts, ch := beats(registry.HeartbeatOptions{Interval: 50 * time.Millisecond})
	h, err := c.Register(ctx, registry.Service{ID: "hb-1", HeartbeatTimeout: 5}, registry.RegisterOptions{Heartbeat: opts})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	if b := nextBeat(t, ch); b.Err != nil {
		t.Fatalf("first beat: %v", b.Err)
	}
	if got := m.get(); len(got) != 0 {
		t.Fatalf("moves %q before the node shut down", got)
	}
	shutDown(front)
	for ok := 0; ok < 3; {
		b := nextBeat(t, ch)
		if b.Err == nil {
			ok++
		} else if b.Failures > 1 {
			t.Fatalf("beat failed %d times in a row after the first node shut down: %v", b.Failures, b.Err)
		}
	}
	m.expect(t, front.URL, srv.URL)
	if s, err := c.GetService(ctx, "hb-1"); err != nil || s.LastSeen.IsZero() {
		t.Errorf("service after the move: %+v, %v", s, err)
	}
}

// A long-poll cut off by its node's death is sent again, at once, to the
// next node, and the feed goes on from where it was without an error.
func TestFeedFailsOver(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	var polls atomic.Int32
	front := frontNode(t, srv, &polls)
	c, m := failoverClient(t, registry.Config{URL: front.URL + "," + srv.URL, Username: "feed-failover", APIKey: "dev"})
	ctx := testContext(t)
	page, err := c.ListServicesPage(ctx, registry.ServiceListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var errs atomic.Int32
	feed := c.NewFeed(page.FeedMarker, registry.WatchOptions{Wait: 30 * time.Second, OnError: func(error, time.Duration) { errs.Add(1) }})
	type result struct {
		ev  registry.Event
		err error
	}
	got := make(chan result, 1)
	go func() {
		ev, err := feed.Next(ctx)
		got <- result{ev, err}
	}()
	eventually(t, "a long-poll at the first node", func() bool { return polls.Load() > 0 })
	shutDown(front)
	if _, err := c.CreateService(ctx, registry.Service{ID: "after-1", HeartbeatTimeout: 30}); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	if s, err := r.ev.Service(); err != nil || s.ID != "after-1" {
		t.Errorf("event %+v (%v), want after-1's join", r.ev, err)
	}
	if n := errs.Load(); n != 0 {
		t.Errorf("%d errors retried with a backoff; want the cut long-poll sent to the next node at once", n)
	}
	m.expect(t, front.URL, srv.URL)
}

// A node that failed is remembered: a node that still fails when it is
// tried again after its memory ran out is passed over for longer than one
// that failed once, and an answer clears a node's mark. With two live
// nodes that fail now and then and a dead one between them, the client
// then moves from one live node to the other without trying the dead one
// each time.
func TestFailoverRemembersFailures(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	ctx := testContext(t)
	token, tenant := srv.Token("failover-memory")
	a, failA := flakyNode(t, srv)
	dead, deadHits := statusNode(t, http.StatusServiceUnavailable)
	b, failB := flakyNode(t, srv)
	c, _ := failoverClient(t, registry.Config{URL: strings.Join([]string{a.URL, dead.URL, b.URL}, ","), Token: token, Tenant: tenant})
	clock := fakeClock(c)
	for _, step := range []struct {
		at       time.Duration
		fail     *atomic.Int32 // the live node that answers 503 once
		to       string        // the node the client is at after the call
		deadHits int32
	}{
		// The dead node is tried, and remembered for 10 s.
		{0, failA, b.URL, 1},
		{15 * time.Second, failB, a.URL, 1},
		// Its memory has run out: it is tried, fails again, and is
		// remembered for 20 s; b, which failed 1 s ago, is tried too,
		// answers, and is then no longer marked.
		{16 * time.Second, failA, b.URL, 2},
		{17 * time.Second, failB, a.URL, 2},
		// b failed a second ago (remembered 9 s more), the dead node
		// two seconds ago, for the second time (18 s more): b first.
		{18 * time.Second, failA, b.URL, 2},
	} {
		clock.Store(int64(step.at))
		step.fail.Store(1)
		if _, err := c.Limits(ctx); err != nil {
			t.Fatalf("at %v: Limits: %v", step.at, err)
		}
		if got := c.URL(); got != step.to {
			t.Errorf("at %v: the client is at %s, want %s", step.at, got, step.to)
		}
		if n := deadHits.Load(); n != step.deadHits {
			t.Fatalf("at %v: %d requests reached the dead node, want %d", step.at, n, step.deadHits)
		}
	}
}

// When every node fails, the error names each one, without its password,
// with its failure, in the order the call tried them; it matches
// ErrAllNodesFailed and the last node's error. With one
// URL the error is the node's, as ever.
func TestAllNodesFailed(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	bad, badHits := statusNode(t, http.StatusBadGateway)
	busy, busyHits := statusNode(t, http.StatusServiceUnavailable)
	withPassword := func(u string) string { return strings.Replace(u, "http://", "http://u:s3cret@", 1) }
	shown := func(u string) string { return regexp.QuoteMeta(strings.Replace(u, "http://", "http://…@", 1)) }
	c, _ := failoverClient(t, registry.Config{URL: strings.Join([]string{withPassword(bad.URL), deadURL, withPassword(busy.URL)}, ","), Token: "t", Tenant: "1"})
	_, err := c.Limits(ctx)
	want := regexp.MustCompile("^registry: every node failed: " +
		shown(bad.URL) + `: 502 serviceUnavailable: node failing \(txnId node\); ` +
		regexp.QuoteMeta(deadURL) + ": dial tcp [^;]*connection refused; " +
		shown(busy.URL) + `: 503 serviceUnavailable: node failing \(txnId node\)$`)
	if err == nil || !want.MatchString(err.Error()) || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("Limits with every node failing: %v\nwant it to match %s", err, want)
	}
	var e *registry.Error
	if !errors.As(err, &e) || e.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("errors.As finds %v, want the last node's 503", e)
	}
	if !errors.Is(err, registry.ErrAllNodesFailed) || !registry.Temporary(err) {
		t.Errorf("%v: want ErrAllNodesFailed, temporary", err)
	}
	if b, n := badHits.Load(), busyHits.Load(); b != 1 || n != 1 {
		t.Errorf("the nodes got %d and %d requests, want one each", b, n)
	}

	// A change refused at one node and answered 503 at the other: its
	// outcome is unknown.
	c, _ = failoverClient(t, registry.Config{URL: deadURL + "," + busy.URL, Token: "t", Tenant: "1"})
	_, err = c.CreateService(ctx, registry.Service{ID: "web1", HeartbeatTimeout: 30})
	if !errors.Is(err, registry.ErrOutcomeUnknown) || !errors.Is(err, registry.ErrAllNodesFailed) ||
		!strings.HasSuffix(err.Error(), ": 503 serviceUnavailable: node failing (txnId node) (the change may have been made)") {
		t.Errorf("create with every node failing: %v; want ErrOutcomeUnknown and ErrAllNodesFailed, and saying so", err)
	}

	one, _ := failoverClient(t, registry.Config{URL: busy.URL, Token: "t", Tenant: "1"})
	_, err = one.Limits(ctx)
	if e, ok := err.(*registry.Error); !ok || e.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("Limits at one node failing: %v (%T), want its *Error", err, err)
	}
}
