package server_test

// Descriptor and connection exhaustion (docs/security.md): one tenant, or
// clients that never authenticate, must not hold the descriptors that other
// tenants and /healthz need.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/server"
	"github.com/svcreg/svcreg/server/store"
)

// startLimited runs a server served as in production, with cfg's limits
// and a metrics registry the test reads.
func startLimited(t *testing.T, kind string, cfg server.Config) (string, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	base := startCustom(t, kind, func(st store.Store) server.Config {
		cfg.Store, cfg.Registerer = st, reg
		return cfg
	})
	return base, reg
}

// metric is the value of the metric name in reg (of the series with the
// label name and value pairs, if any); 0 if absent.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	return testserver.Metric(t, reg, name, labels...)
}

// eventually fails the test unless cond holds within a generous time. It
// is not a bound on speed: it only ends a test that would otherwise wait
// for good.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rawConn is a client connection that sends requests by hand and reads the
// answers, so a test controls exactly when it is idle and sees when the
// server closes it.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, base string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

// get sends GET uri, with token if not empty, and returns the answer.
func (rc *rawConn) get(uri, token string) (*http.Response, string) {
	rc.t.Helper()
	req := "GET " + uri + " HTTP/1.1\r\nHost: test\r\n"
	if token != "" {
		req += "X-Auth-Token: " + token + "\r\n"
	}
	if _, err := io.WriteString(rc.c, req+"\r\n"); err != nil {
		rc.t.Fatalf("GET %s: %v", uri, err)
	}
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		rc.t.Fatalf("GET %s: %v", uri, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		rc.t.Fatalf("GET %s: %v", uri, err)
	}
	return resp, string(body)
}

// closedByServer reports whether the server closed the connection; it waits
// generously for it.
func (rc *rawConn) closedByServer() bool {
	rc.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err := rc.br.ReadByte()
	return err == io.EOF
}

// A parked long-poll whose client hangs up is freed at once, not when its
// wait ends: 300 polls waiting 40 s whose clients close leave no waiter.
func TestLongPollClientGoneIsFreed(t *testing.T) { onEachStore(t, testLongPollClientGoneIsFreed) }

func testLongPollClientGoneIsFreed(t *testing.T, kind string) {
	t.Parallel()
	base, reg := startLimited(t, kind, server.Config{})
	c := devLogin(t, base, "gone")
	const n = 300
	conns := make([]*rawConn, n)
	for i := range conns {
		conns[i] = dialRaw(t, base)
		req := "GET /v1.0/" + c.tenant + "/events?wait=40 HTTP/1.1\r\nHost: test\r\nX-Auth-Token: " + c.token + "\r\n\r\n"
		if _, err := io.WriteString(conns[i].c, req); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, fmt.Sprintf("%d long-polls waiting", n), func() bool {
		return metric(t, reg, "svcreg_longpolls_waiting") == n
	})
	for _, rc := range conns {
		rc.c.Close()
	}
	eventually(t, "the long-polls of closed clients freed", func() bool {
		return metric(t, reg, "svcreg_longpolls_waiting") == 0
	})
	// A poll still reading the feed when its client left (not yet parked)
	// ends with its request's context instead.
	if got := metric(t, reg, "svcreg_longpolls_client_gone_total"); got == 0 || got > n {
		t.Errorf("svcreg_longpolls_client_gone_total %v, want 1 to %d", got, n)
	}
	// The server still answers long-polls.
	ch := c.longPoll("?wait=30")
	stillWaiting(t, ch)
	c.setConfig("key", "v")
	if got := summary(answer(t, ch)); len(got) != 1 {
		t.Errorf("long-poll after the hang-ups answered %q", got)
	}
}

// Bytes a client sends while its long-poll waits end the wait: the poll
// is answered at once and the http.Server reads them, rather than their
// sitting in the socket's receive buffer (up to 128 kB of the host's TCP
// memory a poll) for the whole wait. Junk gets its 400 and the
// connection closed; a pipelined request is answered after the poll.
func TestLongPollClientBytesEndTheWait(t *testing.T) {
	onEachStore(t, testLongPollClientBytesEndTheWait)
}

func testLongPollClientBytesEndTheWait(t *testing.T, kind string) {
	t.Parallel()
	base, reg := startLimited(t, kind, server.Config{})
	c := devLogin(t, base, "bytes")
	poll := "GET /v1.0/" + c.tenant + "/events?wait=600 HTTP/1.1\r\nHost: test\r\nX-Auth-Token: " + c.token + "\r\n\r\n"
	services := "GET /v1.0/" + c.tenant + "/services HTTP/1.1\r\nHost: test\r\nX-Auth-Token: " + c.token + "\r\n\r\n"
	junk, pipelined, together := dialRaw(t, base), dialRaw(t, base), dialRaw(t, base)
	for _, rc := range []*rawConn{junk, pipelined} {
		if _, err := io.WriteString(rc.c, poll); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "2 long-polls waiting", func() bool { return metric(t, reg, "svcreg_longpolls_waiting") == 2 })
	if _, err := junk.c.Write(append(bytes.Repeat([]byte{'x'}, 64<<10), "\r\n\r\n"...)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(pipelined.c, services); err != nil {
		t.Fatal(err)
	}
	// A request pipelined in the same write as the poll: the server has
	// read it with the poll, and the poll does not wait either.
	if _, err := io.WriteString(together.c, poll+services); err != nil {
		t.Fatal(err)
	}
	// Every poll answered (read deadlines far inside their 600 s wait).
	for name, rc := range map[string]*rawConn{"junk": junk, "pipelined": pipelined, "together": together} {
		rc.c.SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(rc.br, nil)
		if err != nil {
			t.Fatalf("%s: the long-poll was not answered: %v", name, err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 {
			t.Errorf("%s: long-poll answered %s", name, resp.Status)
		}
	}
	for name, rc := range map[string]*rawConn{"pipelined": pipelined, "together": together} {
		if resp, err := http.ReadResponse(rc.br, nil); err != nil || resp.StatusCode != 200 || resp.Header.Get("X-Registry-Wait") != "" {
			t.Errorf("%s: the pipelined GET /services: %v, %v; want its 200", name, resp, err)
		}
	}
	// The junk is read: an error answer (400, or 431 past the server's
	// MaxHeaderBytes) and a close.
	resp, err := http.ReadResponse(junk.br, nil)
	if err == nil {
		io.Copy(io.Discard, resp.Body)
	}
	if err != nil || resp.StatusCode/100 != 4 || !junk.closedByServer() {
		t.Errorf("after the junk: %v, %v; want 400 or 431 and the connection closed", resp, err)
	}
	if got := metric(t, reg, "svcreg_longpolls_cut_short_total"); got != 3 {
		t.Errorf("svcreg_longpolls_cut_short_total %v, want 3", got)
	}
	if got := metric(t, reg, "svcreg_longpolls_waiting"); got != 0 {
		t.Errorf("svcreg_longpolls_waiting %v, want 0", got)
	}
}

// Long-polls are capped per tenant and in all: past either cap a long-poll
// answers at once, so one tenant cannot take every waiting slot.
func TestLongPollGlobalCap(t *testing.T) { onEachStore(t, testLongPollGlobalCap) }

func testLongPollGlobalCap(t *testing.T, kind string) {
	t.Parallel()
	base, reg := startLimited(t, kind, server.Config{MaxWaiters: 5, MaxWaitersPerTenant: 3})
	a, b := devLogin(t, base, "cap-a"), devLogin(t, base, "cap-b")
	for range 3 {
		a.longPoll("?wait=30")
	}
	eventually(t, "3 long-polls of tenant a waiting", func() bool { return metric(t, reg, "svcreg_longpolls_waiting") == 3 })
	r := a.do("GET", "/events?wait=30", nil).want(200)
	if w := r.header.Get("X-Registry-Wait"); w != "0s" {
		t.Errorf("past the tenant cap: X-Registry-Wait %q, want 0s", w)
	}
	for range 2 {
		b.longPoll("?wait=30")
	}
	eventually(t, "5 long-polls waiting", func() bool { return metric(t, reg, "svcreg_longpolls_waiting") == 5 })
	r = b.do("GET", "/events?wait=30", nil).want(200)
	if w := r.header.Get("X-Registry-Wait"); w != "0s" {
		t.Errorf("past the global cap: X-Registry-Wait %q, want 0s", w)
	}
	if got := metric(t, reg, "svcreg_longpolls_refused_total", "limit", "total"); got != 1 {
		t.Errorf("refused for the global cap: %v, want 1", got)
	}
	sendRequest(t, base, "GET", "/healthz", nil).want(200)
}

// Past the cap on all tenants' waiting long-polls, a tenant holding two
// or more fewer than the one holding the most takes one of its slots: one
// of that tenant's polls is answered early (no event, its own wait
// header), and the newcomer waits. Before, two tenants at their own cap
// left every other tenant polling.
func TestLongPollSlotsSharedPastTheGlobalCap(t *testing.T) {
	onEachStore(t, testLongPollSlotsSharedPastTheGlobalCap)
}

func testLongPollSlotsSharedPastTheGlobalCap(t *testing.T, kind string) {
	t.Parallel()
	reg, a, b, c, as := fullOfA(t, kind, "share", nil)

	// c holds none, a four: one of a's gives way, twice.
	c1, c2 := c.longPoll("?wait=30"), c.longPoll("?wait=30")
	eventually(t, "two of a's long-polls answered", func() bool { return metric(t, reg, "svcreg_longpolls_yielded_total") == 2 })
	stillWaiting(t, c1)
	stillWaiting(t, c2)
	answered := 0
	for _, ch := range as {
		select {
		case p := <-ch:
			answered++
			if p.err != nil || p.r.code != 200 || p.r.header.Get("X-Registry-Wait") == "0s" {
				t.Errorf("a's long-poll that gave way: %+v, want a 200 with its own wait", p)
			}
		default:
		}
	}
	if answered != 2 {
		t.Errorf("%d of a's long-polls answered, want 2", answered)
	}
	if got := metric(t, reg, "svcreg_longpolls_waiting"); got != 5 {
		t.Errorf("%v long-polls waiting, want 5", got)
	}

	// Now a, b and c hold 2, 1 and 2: no tenant holds two more than
	// another, so their next ones are answered at once (a slot does not
	// go back and forth between tenants one apart).
	for _, cl := range []*api{c, a, b} {
		if w := cl.do("GET", "/events?wait=30", nil).want(200).header.Get("X-Registry-Wait"); w != "0s" {
			t.Errorf("a long-poll with no tenant two ahead: X-Registry-Wait %q, want 0s", w)
		}
	}
	if got := metric(t, reg, "svcreg_longpolls_refused_total", "limit", "total"); got != 3 {
		t.Errorf("refused for the global cap: %v, want 3", got)
	}
	if got := metric(t, reg, "svcreg_longpolls_yielded_total"); got != 2 {
		t.Errorf("%v long-polls gave way, want 2", got)
	}
}

// fullOfA starts a server with room for 5 waiting long-polls, 4 a tenant,
// and fills it: tenant a's 4 (as) and b's 1, parked (only a parked poll
// gives way); c holds none. prep, if not nil, runs for c first.
func fullOfA(t *testing.T, kind, prefix string, prep func(c *api)) (reg *prometheus.Registry, a, b, c *api, as []<-chan polled) {
	t.Helper()
	base, reg := startLimited(t, kind, server.Config{MaxWaiters: 5, MaxWaitersPerTenant: 4})
	a, b, c = devLogin(t, base, prefix+"-a"), devLogin(t, base, prefix+"-b"), devLogin(t, base, prefix+"-c")
	if prep != nil {
		prep(c)
	}
	for range 4 {
		as = append(as, a.longPoll("?wait=30"))
	}
	b.longPoll("?wait=30")
	eventually(t, "5 long-polls parked", func() bool {
		return metric(t, reg, "svcreg_longpolls_waiting") == 5 && metric(t, reg, "svcreg_connections_parked") == 5
	})
	return reg, a, b, c, as
}

// A long-poll that does not wait (its tenant's feed has news for it) takes
// no slot past the total cap: no parked poll of another tenant gives way
// for it. Before, each such read of one account answered a parked poll of
// the tenant holding the most, whose client asked again.
func TestLongPollAnsweredAtOnceTakesNoSlot(t *testing.T) {
	onEachStore(t, testLongPollAnsweredAtOnceTakesNoSlot)
}

func testLongPollAnsweredAtOnceTakesNoSlot(t *testing.T, kind string) {
	t.Parallel()
	// c's long-polls from the start have news.
	reg, _, _, c, as := fullOfA(t, kind, "news", func(c *api) { c.create("svc-c", 60) })
	for range 5 {
		if evs := c.events("?wait=30"); len(evs) == 0 {
			t.Fatal("c's long-poll had no news")
		}
	}
	if got := metric(t, reg, "svcreg_longpolls_yielded_total"); got != 0 {
		t.Errorf("%v of a's long-polls gave way to polls of c that did not wait", got)
	}
	for _, ch := range as {
		select {
		case p := <-ch:
			t.Errorf("one of a's long-polls was answered: %+v", p)
		default:
		}
	}
	if got := metric(t, reg, "svcreg_longpolls_waiting"); got != 5 {
		t.Errorf("%v long-polls waiting, want 5", got)
	}
}

// A waiting long-poll keeps its query (for next_href), Host and
// X-Forwarded-Proto; padded past 4096 bytes together as sent, or 32
// parameters, which takes parameters the API does not use, the poll is
// refused before it waits, so one account's polls cannot each pin the
// header limit. The same request without wait is answered.
func TestLongPollKeepsABoundedRequest(t *testing.T) {
	onEachStore(t, testLongPollKeepsABoundedRequest)
}

func testLongPollKeepsABoundedRequest(t *testing.T, kind string) {
	t.Parallel()
	base, reg := startLimited(t, kind, server.Config{})
	c := devLogin(t, base, "padded")
	for _, pad := range []string{
		"&pad=" + strings.Repeat("a", 4096),
		strings.Repeat("&=", 200),   // empty pairs: nothing decoded, 200 pairs
		strings.Repeat("&", 4100),   // nothing parsed at all
		strings.Repeat("&p=1", 100), // short, but many
	} {
		var f struct{ Type, Message string }
		c.do("GET", "/events?wait=30"+pad, nil).want(400).json(&f)
		if want := "A long-poll's query string, Host and X-Forwarded-Proto may be 4096 bytes at most together, and its query 32 parameters"; f.Type != "badRequest" || !strings.HasPrefix(f.Message, want) {
			t.Errorf("padded long-poll (%.20s…): %s %q, want badRequest %q…", pad, f.Type, f.Message, want)
		}
		c.do("GET", "/events?limit=5"+pad, nil).want(200)
	}
	if got := metric(t, reg, "svcreg_longpolls_waiting"); got != 0 {
		t.Errorf("%v long-polls waiting after the refusal", got)
	}
	// A long query of the API's own parameters still waits.
	ch := c.longPoll("?wait=30&include=service.update&type=configuration_value.update&limit=100")
	stillWaiting(t, ch)
	c.setConfig("key", "v")
	answer(t, ch)
}

// Idle keep-alive connections are capped per tenant and in all; past a
// cap the longest-idle one is closed.
func TestIdleConnectionCaps(t *testing.T) { onEachStore(t, testIdleConnectionCaps) }

func testIdleConnectionCaps(t *testing.T, kind string) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		cfg    server.Config
		reason string
	}{
		{"per tenant", server.Config{MaxIdleConnsPerTenant: 2}, "tenant"},
		{"in all", server.Config{MaxIdleConns: 2}, "idle"},
		{"room for new connections", server.Config{MaxConns: 2, MaxIdleConns: 10, MaxIdleConnsPerTenant: 10}, "conns"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base, reg := startLimited(t, kind, tc.cfg)
			c := devLogin(t, base, "idle")
			clientOf(base).CloseIdleConnections()
			eventually(t, "no connection open", func() bool { return metric(t, reg, "svcreg_connections_open") == 0 })
			conns := make([]*rawConn, 5)
			for i := range conns {
				conns[i] = dialRaw(t, base)
				if resp, body := conns[i].get("/v1.0/"+c.tenant+"/limits", c.token); resp.StatusCode != 200 {
					t.Fatalf("GET /limits: %d %s", resp.StatusCode, body)
				}
				// Each connection is idle (or closed) before the next
				// opens, so that "longest idle" is the order of opening.
				eventually(t, "the connection idle", func() bool {
					return metric(t, reg, "svcreg_connections_idle")+metric(t, reg, "svcreg_connections_closed_total", "reason", tc.reason) == float64(i+1)
				})
			}
			// The three longest idle are closed, the two last stay.
			for i, rc := range conns[:3] {
				if !rc.closedByServer() {
					t.Errorf("connection %d: still open past the cap", i)
				}
			}
			for i, rc := range conns[3:] {
				if resp, _ := rc.get("/v1.0/"+c.tenant+"/limits", c.token); resp.StatusCode != 200 {
					t.Errorf("connection %d: %d", i+3, resp.StatusCode)
				}
			}
			if got := metric(t, reg, "svcreg_connections_closed_total", "reason", tc.reason); got != 3 {
				t.Errorf("closed for %s: %v, want 3", tc.reason, got)
			}
		})
	}
}

// A keep-alive connection that never authenticated is closed after a short
// idle time; one that did stays.
func TestUnauthenticatedIdleTimeout(t *testing.T) { onEachStore(t, testUnauthenticatedIdleTimeout) }

func testUnauthenticatedIdleTimeout(t *testing.T, kind string) {
	t.Parallel()
	base, reg := startLimited(t, kind, server.Config{UnauthIdleTimeout: 200 * time.Millisecond})
	c := devLogin(t, base, "unauth")
	anon, authed := dialRaw(t, base), dialRaw(t, base)
	if resp, _ := anon.get("/healthz", ""); resp.StatusCode != 200 {
		t.Fatalf("healthz: %d", resp.StatusCode)
	}
	if resp, _ := authed.get("/v1.0/"+c.tenant+"/limits", c.token); resp.StatusCode != 200 {
		t.Fatalf("limits: %d", resp.StatusCode)
	}
	if !anon.closedByServer() {
		t.Fatal("an unauthenticated idle connection stayed open")
	}
	if got := metric(t, reg, "svcreg_connections_closed_total", "reason", "unauthenticated"); got < 1 {
		t.Errorf("closed unauthenticated: %v, want at least 1", got)
	}
	if resp, _ := authed.get("/v1.0/"+c.tenant+"/limits", c.token); resp.StatusCode != 200 {
		t.Errorf("authenticated connection after the unauthenticated one closed: %d", resp.StatusCode)
	}
}

// A commit that lands just as a tenant's long-poll parks, before the
// poll's dispatcher watches the feed, still answers it. Each round commits
// as soon as the poll counts as waiting.
func TestLongPollCommitWhileParking(t *testing.T) { onEachStore(t, testLongPollCommitWhileParking) }

func testLongPollCommitWhileParking(t *testing.T, kind string) {
	t.Parallel()
	base, reg := startLimited(t, kind, server.Config{})
	c := devLogin(t, base, "parking")
	c.create("svc-0", 30)
	for i := range 40 {
		evs := c.events("?limit=1000")
		ch := c.longPoll("?marker=" + evs[len(evs)-1].ID + "&wait=60")
		for metric(t, reg, "svcreg_longpolls_waiting") == 0 {
		}
		c.create(fmt.Sprintf("svc-%d", i+1), 30)
		select {
		case p := <-ch:
			if p.err != nil {
				t.Fatal(p.err)
			}
			p.r.want(200)
		case <-time.After(20 * time.Second):
			t.Fatalf("round %d: the long-poll missed the commit that landed as it parked", i)
		}
	}
}

// Over TLS a long-poll parks too: it is answered when an event commits,
// and freed when its client hangs up.
func TestLongPollOverTLS(t *testing.T) { onEachStore(t, testLongPollOverTLS) }

func testLongPollOverTLS(t *testing.T, kind string) {
	t.Parallel()
	// httptest's certificate and a client that trusts it.
	certs := httptest.NewUnstartedServer(nil)
	certs.StartTLS()
	cfg, client := certs.TLS.Clone(), certs.Client()
	certs.Close()
	cfg.NextProtos = []string{"http/1.1"}

	st := testserver.NewStore(t, testserver.Options{Store: kind, ReapInterval: -1})
	reg := prometheus.NewRegistry()
	h := server.New(server.Config{Store: st, Auth: server.NewAuth(server.AuthConfig{Store: st, Dev: true}), Registerer: reg})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{ReadHeaderTimeout: 10 * time.Second}
	go h.Serve(hs, tls.NewListener(ln, cfg))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		h.Drain(ctx)
		hs.Shutdown(ctx)
	})
	base := "https://" + ln.Addr().String()

	resp, err := client.Post(base+"/v2.0/tokens", "application/json", strings.NewReader(`{"auth":{"RAX-KSKEY:apiKeyCredentials":{"username":"tls","apiKey":"dev"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	var login struct {
		Access struct {
			Token struct {
				ID     string
				Tenant struct{ ID string }
			}
		}
	}
	json.NewDecoder(resp.Body).Decode(&login)
	resp.Body.Close()
	token, tenant := login.Access.Token.ID, login.Access.Token.Tenant.ID
	call := func(ctx context.Context, method, path, body string) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, method, base+"/v1.0/"+tenant+path, strings.NewReader(body))
		req.Header.Set("X-Auth-Token", token)
		req.Header.Set("Content-Type", "application/json")
		return client.Do(req)
	}

	answered := make(chan string, 1)
	go func() {
		resp, err := call(context.Background(), "GET", "/events?wait=30", "")
		if err != nil {
			answered <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		answered <- string(b)
	}()
	eventually(t, "the long-poll waiting", func() bool { return metric(t, reg, "svcreg_longpolls_waiting") == 1 })
	if resp, err := call(context.Background(), "PUT", "/configuration/key", `{"value":"v"}`); err != nil || resp.StatusCode != 204 {
		t.Fatalf("set a value: %v %v", resp, err)
	}
	got := <-answered
	var page struct{ Values []struct{ ID, Type string } }
	if json.Unmarshal([]byte(got), &page); len(page.Values) != 1 || page.Values[0].Type != "configuration_value.update" {
		t.Fatalf("long-poll over TLS answered %s", got)
	}

	// A client that leaves.
	ctx, cancel := context.WithCancel(context.Background())
	left := make(chan struct{})
	go func() {
		defer close(left)
		if resp, err := call(ctx, "GET", "/events?wait=30&marker="+page.Values[0].ID, ""); err == nil {
			resp.Body.Close()
		}
	}()
	eventually(t, "the second long-poll waiting", func() bool { return metric(t, reg, "svcreg_longpolls_waiting") == 1 })
	cancel()
	<-left
	eventually(t, "the long-poll of the client that left freed", func() bool { return metric(t, reg, "svcreg_longpolls_waiting") == 0 })
}

// gatedServices blocks the list reads of services of one tenant in the
// store until the test releases them, saying when each starts.
type gatedServices struct {
	store.Store
	tenant  atomic.Pointer[string]
	entered chan struct{}
	release chan struct{}
	panics  atomic.Bool // each read of the tenant panics instead
}

func (g *gatedServices) Services(ctx context.Context, tenant string, q store.ServiceQuery) (store.Page[registry.Service], error) {
	if t := g.tenant.Load(); t != nil && *t == tenant && g.panics.Load() {
		panic("a damaged page")
	}
	if t := g.tenant.Load(); t != nil && *t == tenant && !g.panics.Load() {
		g.entered <- struct{}{}
		<-g.release
	}
	return g.Store.Services(ctx, tenant, q)
}

// startGated starts a server whose store blocks the list reads of the
// tenant gs.tenant names (gatedServices), with a metrics registry.
func startGated(t *testing.T, kind string) (string, *prometheus.Registry, *gatedServices) {
	return startGatedWith(t, kind, server.Config{})
}

// startGatedWith is startGated with the limits of cfg.
func startGatedWith(t *testing.T, kind string, cfg server.Config) (string, *prometheus.Registry, *gatedServices) {
	reg := prometheus.NewRegistry()
	gs := &gatedServices{entered: make(chan struct{}, 64), release: make(chan struct{})}
	base := startCustom(t, kind, func(st store.Store) server.Config {
		gs.Store = st
		cfg.Store, cfg.Registerer = gs, reg
		return cfg
	})
	return base, reg, gs
}

// listReadSlots is the server's rule for the list reads of one account
// that run at once: half the processors, at least one.
func listReadSlots() int { return max(1, runtime.GOMAXPROCS(0)/2) }

// listServices lists c's services on a goroutine of its own, and sends
// the answer's status to codes (0 if none came).
func listServices(t *testing.T, base string, c *api, codes chan<- int) {
	go func() {
		r, err := trySend(t, base, "GET", "/v1.0/"+c.tenant+"/services", nil, "X-Auth-Token", c.token)
		if err != nil {
			codes <- 0
			return
		}
		codes <- r.code
	}()
}

// One account's list reads run at most half the processors at once (at
// least one): past that they wait their turn, before they reach the store,
// while another account's list reads, and the account's other requests,
// do not wait for them.
func TestListReadsOfOneAccountTakeTurns(t *testing.T) {
	onEachStore(t, testListReadsOfOneAccountTakeTurns)
}

func testListReadsOfOneAccountTakeTurns(t *testing.T, kind string) {
	t.Parallel()
	base, reg, gs := startGated(t, kind)
	busy, other := devLogin(t, base, "busy"), devLogin(t, base, "other")
	busy.create("svc-1", 30)
	other.create("svc-1", 30)
	gs.tenant.Store(&busy.tenant)
	slots := listReadSlots()
	answers := make(chan int, slots+1)
	for range slots + 1 {
		listServices(t, base, busy, answers)
	}
	for range slots {
		<-gs.entered
	}
	eventually(t, "a list read waiting for its account's turn", func() bool {
		return metric(t, reg, "svcreg_list_reads_waiting") == 1
	})
	select {
	case <-gs.entered:
		t.Fatalf("%d list reads of one account reached the store at once; want %d", slots+1, slots)
	default:
	}
	// Another account lists; the busy one reads a service and heartbeats.
	other.do("GET", "/services", nil).want(200)
	busy.do("GET", "/services/svc-1", nil).want(200)
	close(gs.release)
	for range slots + 1 {
		if code := <-answers; code != 200 {
			t.Errorf("a list read of the busy account: %d, want 200", code)
		}
	}
	if got := metric(t, reg, "svcreg_list_reads_waiting"); got != 0 {
		t.Errorf("%v list reads waiting once all were answered", got)
	}
}

// Past MaxListReadsWaitingPerTenant list reads of one account waiting for
// its turn, one more is refused at once with the rate-limit fault and
// Retry-After: each waiting read holds a connection, and an account that
// kept sending slow list reads on new connections held every descriptor of
// the server. Another account's reads still run; the waiting ones are
// answered.
func TestListReadsPastTheWaitingBoundAreRefused(t *testing.T) {
	t.Parallel()
	const bound = 20
	base, reg, gs := startGatedWith(t, "bolt", server.Config{MaxListReadsWaitingPerTenant: bound})
	busy, other := devLogin(t, base, "busy"), devLogin(t, base, "other")
	gs.tenant.Store(&busy.tenant)
	slots := listReadSlots()
	answers := make(chan int, slots+bound)
	for range slots {
		listServices(t, base, busy, answers)
		<-gs.entered
	}
	for range bound {
		listServices(t, base, busy, answers)
	}
	eventually(t, "the bound of list reads waiting", func() bool {
		return metric(t, reg, "svcreg_list_reads_waiting") == float64(bound)
	})
	// Refused before it is read, a read does not count against the daily
	// GET limit: over it, /limits counts itself alone.
	before := busy.getsUsed()
	r := busy.do("GET", "/services", nil)
	r.fault(400, "rateLimitReached", "Rate limit has been reached.",
		fmt.Sprintf("Limit of %d list reads of the account waiting at once, behind the %d that run, has been reached", bound, slots))
	if after := busy.getsUsed(); after != before+1 {
		t.Errorf("the daily GET count went from %d to %d over a refused read; want %d", before, after, before+1)
	}
	if ra := r.header.Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After %q, want 1", ra)
	}
	if got := metric(t, reg, "svcreg_list_reads_refused_total"); got != 1 {
		t.Errorf("%v list reads counted refused, want 1", got)
	}
	other.do("GET", "/services", nil).want(200)
	close(gs.release)
	for n := 0; n < slots+bound; {
		select {
		case code := <-answers:
			n++
			if code != 200 {
				t.Errorf("a list read of the busy account: %d, want 200", code)
			}
		case <-gs.entered: // past its buffer, on a machine of many cores
		}
	}
}

// A client that gives up while its list read waits for the account's
// turn is counted as 499 (client gone), not as the server's failure; a
// list read that panics (a damaged file) gives its turn back.
func TestListReadTurnsEndWithTheRequest(t *testing.T) {
	t.Parallel()
	base, reg, gs := startGated(t, "bolt")
	c := devLogin(t, base, "busy")
	gs.tenant.Store(&c.tenant)
	slots := listReadSlots()
	held := make(chan int, slots)
	for range slots {
		listServices(t, base, c, held)
		<-gs.entered
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/v1.0/"+c.tenant+"/services", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Auth-Token", c.token)
	gaveUp := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		gaveUp <- err
	}()
	eventually(t, "a list read waiting for its account's turn", func() bool {
		return metric(t, reg, "svcreg_list_reads_waiting") == 1
	})
	cancel()
	<-gaveUp
	eventually(t, "the abandoned read counted as 499", func() bool {
		return metric(t, reg, "svcreg_http_requests_total", "route", "services.list", "code", "499") == 1
	})
	if got := metric(t, reg, "svcreg_http_requests_total", "route", "services.list", "code", "500"); got != 0 {
		t.Errorf("%v list reads counted as the server's failure", got)
	}
	close(gs.release)
	for range slots {
		if code := <-held; code != 200 {
			t.Errorf("a held list read: %d, want 200", code)
		}
	}

	// A read that panics in the store, then one that must get its turn.
	// Both bounded, so that a turn never given back fails the test rather
	// than hang it (Go's client sends the panicked GET again, on a new
	// connection).
	get := func() (int, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, "GET", base+"/v1.0/"+c.tenant+"/services", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Auth-Token", c.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	gs.panics.Store(true)
	if code, err := get(); errors.Is(err, context.DeadlineExceeded) || code == 200 {
		t.Fatalf("the panicking read: %d, %v; want it failed at once", code, err)
	}
	gs.panics.Store(false)
	if code, err := get(); err != nil || code != 200 {
		t.Errorf("a list read after one that panicked: %d, %v; want 200 (was the turn given back?)", code, err)
	}
}

// Connections that send their requests slowly (headers a line at a time,
// or a body a byte at a time) are not idle, and used to be past every
// bound: one address opening them faster than the read timeouts closed
// them took every descriptor, and other accounts' requests failed. Past
// --max-conns a new connection now takes the place of one still reading,
// the oldest of the address with the most.
func TestSlowRequestsCannotTakeEveryConnection(t *testing.T) {
	t.Parallel()
	const maxConns = 20
	// The http.Server's header timeout (10 s in production) would close
	// the first slow connections, uncounted, should the machine be so
	// slow that opening them all took longer; the tracker alone is tested.
	reg := prometheus.NewRegistry()
	st := testserver.NewStore(t, testserver.Options{Store: "bolt", ReapInterval: -1})
	base := serveCustomHS(t, st, server.Config{Store: st, Registerer: reg, MaxConns: maxConns}, &http.Server{ReadHeaderTimeout: 10 * time.Minute})
	c := devLogin(t, base, "victim")
	addr := strings.TrimPrefix(base, "http://")
	// The attacker is another address than the victim's 127.0.0.1.
	dialer := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	var slow []net.Conn
	for i := range 3 * maxConns {
		sc, err := dialer.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sc.Close() })
		start := "GET /healthz HTTP/1.1\r\nHost: test\r\n" // headers unfinished
		if i%2 == 1 {
			start = "POST /v2.0/tokens HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n{" // body unfinished
		}
		if _, err := io.WriteString(sc, start); err != nil {
			t.Fatal(err)
		}
		slow = append(slow, sc)
		// Each is counted before the next: the server holds at most
		// maxConns of them.
		eventually(t, "the slow connection counted", func() bool {
			return metric(t, reg, "svcreg_connections_open")+metric(t, reg, "svcreg_connections_closed_total", "reason", "client") >= float64(i+1)
		})
	}
	eventually(t, fmt.Sprintf("at most --max-conns=%d connections open", maxConns), func() bool {
		return metric(t, reg, "svcreg_connections_open") <= maxConns
	})
	closed := 0
	for _, sc := range slow {
		sc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := sc.Read(make([]byte, 1)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			closed++
		}
	}
	if closed < 2*maxConns {
		t.Errorf("%d of the %d slow connections closed, want at least %d", closed, len(slow), 2*maxConns)
	}
	// Another client's requests, on new connections, are served.
	for range 5 {
		rc := dialRaw(t, base)
		if resp, body := rc.get("/v1.0/"+c.tenant+"/services", c.token); resp.StatusCode != 200 {
			t.Fatalf("GET /services past the slow connections: %d %s", resp.StatusCode, body)
		}
	}
}

// Connections whose client does not take its answers (pipelined requests,
// a receive window that stays closed) wait on their client too: past
// --max-conns a new connection takes the place of one whose answer has
// waited a second. Before, they were past every bound, as slow requests
// were.
func TestUnreadAnswersCannotTakeEveryConnection(t *testing.T) {
	t.Parallel()
	const maxConns = 10
	// The idle caps far off: an answer that fits in the socket buffers
	// leaves its connection idle until the next pipelined request, and
	// this is about the others.
	base, reg := startLimited(t, "bolt", server.Config{MaxConns: maxConns, MaxIdleConns: 1000, MaxIdleConnsPerTenant: 1000})
	addr := strings.TrimPrefix(base, "http://")
	dialer := net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)},
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 2048) })
			return serr
		},
	}
	// Each 404 echoes its 1 kB path (a fault repeats that much of it at
	// most): 7 MB of answers, more than the server's send buffer takes
	// (4 MB at most), so its writes block.
	req := strings.Repeat("GET /x"+strings.Repeat("a", 1000)+" HTTP/1.1\r\nHost: test\r\n\r\n", 5000)
	unread := func() {
		sc, err := dialer.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sc.Close() })
		go io.WriteString(sc, req) // never reads an answer
	}
	for range maxConns {
		unread()
	}
	eventually(t, "the connections open", func() bool {
		return metric(t, reg, "svcreg_connections_open") >= maxConns
	})
	// New connections of the same client, until one takes the place of a
	// connection whose answer has waited a second.
	for i := 0; metric(t, reg, "svcreg_connections_closed_total", "reason", "client") == 0; i++ {
		if i == 100 {
			t.Fatal("no connection whose answers are not taken was closed for a new one")
		}
		unread()
		time.Sleep(200 * time.Millisecond)
	}
	// Another address's requests, on new connections, are served, and
	// connections are closed for them: no more connections are open
	// than before them (some may have been let in over maxConns while
	// none had waited a second). Were they let in without room made
	// (the reserve), the open connections would grow.
	before := metric(t, reg, "svcreg_connections_open")
	for i := range 5 {
		rc := dialRaw(t, base)
		if resp, body := rc.get("/healthz", ""); resp.StatusCode != 200 {
			t.Fatalf("GET /healthz past the connections not read: %d %s", resp.StatusCode, body)
		}
		eventually(t, fmt.Sprintf("at most the %v connections open before %d more of another address", before, i+1), func() bool {
			return metric(t, reg, "svcreg_connections_open") <= before
		})
	}
}
