package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/server"
	"github.com/svcreg/svcreg/server/store"
)

// brokenStore fails one kind of read with err: "account" the account read
// of every API request, "events" every read of the feed, "parked events" the
// reads of the feed once a long-poll has parked (once its dispatcher
// watches the feed: the second call of Changed).
type brokenStore struct {
	store.Store
	err     error
	broken  string
	watches atomic.Int32
}

func (b *brokenStore) Account(ctx context.Context, tenant string) (store.Account, error) {
	if b.broken == "account" {
		return store.Account{}, b.err
	}
	return b.Store.Account(ctx, tenant)
}

func (b *brokenStore) Changed(ctx context.Context, tenant string) (<-chan struct{}, error) {
	b.watches.Add(1)
	return b.Store.Changed(ctx, tenant)
}

func (b *brokenStore) Events(ctx context.Context, tenant string, q store.EventQuery) (store.EventPage, error) {
	if b.broken == "events" || b.broken == "parked events" && b.watches.Load() >= 2 {
		return store.EventPage{}, b.err
	}
	return b.Store.Events(ctx, tenant, q)
}

// logBuffer collects a server's JSON log lines.
type logBuffer struct{ testserver.Buffer }

// count is how many records have the message msg and the transaction id
// txn.
func (l *logBuffer) count(t *testing.T, msg, txn string) int {
	n := 0
	for _, line := range bytes.Split(bytes.TrimSpace([]byte(l.String())), []byte("\n")) {
		if len(line) == 0 {
			continue // nothing logged
		}
		var rec struct{ Msg, Txn string }
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec.Msg == msg && rec.Txn == txn {
			n++
		}
	}
	return n
}

// A store failure at any step of a request, in a handler, before routing,
// or while a long-poll is parked, is answered with the masked 5xx fault of
// spec §4.1 and logged once with the request's transaction id.
func TestStoreFailureLoggedOnce(t *testing.T) { onEachStore(t, testStoreFailureLoggedOnce) }

func testStoreFailureLoggedOnce(t *testing.T, kind string) {
	t.Parallel()
	for _, tc := range []struct {
		name, broken, path string
		err                error
		code               int
		typ, logged        string
	}{
		{"handler", "events", "/events", errors.New("disk on fire"), 500, "internalError", "request failed"},
		{"before routing", "account", "/services", errors.New("disk on fire"), 500, "internalError", "request failed"},
		{"waiting long-poll", "events", "/events?wait=30", errors.New("disk on fire"), 500, "internalError", "request failed"},
		// Parked, a poll is answered by the read at the end of its wait
		// (the dispatcher's reads before it fail too, and the poll waits
		// on): a short wait, long enough for the dispatcher's retries.
		{"parked long-poll", "parked events", "/events?wait=2", errors.New("disk on fire"), 500, "internalError", "request failed"},
		{"unavailable", "events", "/events", store.ErrUnavailable, 503, "systemFailureError", "store unavailable"},
		{"parked unavailable", "parked events", "/events?wait=2", store.ErrUnavailable, 503, "systemFailureError", "store unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs logBuffer
			var broken *brokenStore
			base := startCustom(t, kind, func(st store.Store) server.Config {
				broken = &brokenStore{Store: st, err: tc.err, broken: tc.broken}
				return server.Config{Store: broken, Logger: slog.New(slog.NewJSONHandler(&logs, nil))}
			})
			c := devLogin(t, base, "broken")
			r := c.do("GET", tc.path, nil)
			r.fault(tc.code, tc.typ, "Internal Error", "Internal Error")
			if tc.broken == "parked events" && broken.watches.Load() < 2 {
				t.Fatalf("the long-poll was answered before it parked")
			}
			txn := r.header.Get("X-Response-Id")
			if n := logs.count(t, tc.logged, txn); n != 1 {
				t.Errorf("%d log records %q with txn %s, want 1; log:\n%v", n, tc.logged, txn, &logs)
			}
		})
	}
}

// pingStore fails Ping, as an etcd store whose cluster is gone does, while
// down is set.
type pingStore struct {
	store.Store
	down atomic.Bool
}

func (p *pingStore) Ping(ctx context.Context) error {
	if p.down.Load() {
		return fmt.Errorf("%w: dial tcp 10.1.2.3:2379: connect: connection refused", store.ErrUnavailable)
	}
	return p.Store.Ping(ctx)
}

// /healthz says whether the store answers and nothing more, since anyone
// may ask: the store's error, which can name its endpoints, goes to the
// log, once each time the answer changes.
func TestHealthLeavesTheStoresErrorToTheLog(t *testing.T) {
	onEachStore(t, testHealthLeavesTheStoresErrorToTheLog)
}

func testHealthLeavesTheStoresErrorToTheLog(t *testing.T, kind string) {
	t.Parallel()
	var logs logBuffer
	var ps *pingStore
	base := startCustom(t, kind, func(st store.Store) server.Config {
		ps = &pingStore{Store: st}
		return server.Config{Store: ps, Logger: slog.New(slog.NewJSONHandler(&logs, nil))}
	})
	sendRequest(t, base, "GET", "/healthz", nil).want(200)
	ps.down.Store(true)
	for range 3 {
		r := sendRequest(t, base, "GET", "/healthz", nil).want(503)
		if got := strings.TrimSpace(string(r.body)); got != `{"status":"unavailable"}` {
			t.Errorf("/healthz with the store down: %s", got)
		}
	}
	ps.down.Store(false)
	sendRequest(t, base, "GET", "/healthz", nil).want(200)
	sendRequest(t, base, "GET", "/healthz", nil).want(200)
	if n := logs.count(t, "store does not answer /healthz", ""); n != 1 || !strings.Contains(logs.String(), "10.1.2.3:2379") {
		t.Errorf("%d records of the store's failure, want 1 with its error; log:\n%v", n, &logs)
	}
	if n := logs.count(t, "store answers /healthz again", ""); n != 1 {
		t.Errorf("%d records of the store's return, want 1; log:\n%v", n, &logs)
	}
}

// hangStore holds PutToken or DevTenant until the caller's context ends,
// and returns its error, as the etcd store does when the request behind
// the call ends; and answers Ping after pingDelay, or when the caller's
// context ends, with its error.
type hangStore struct {
	testserver.Store
	putToken, devTenant atomic.Bool
	pingDelay           atomic.Int64
}

func (h *hangStore) Ping(ctx context.Context) error {
	if d := time.Duration(h.pingDelay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return fmt.Errorf("etcd: ping: %w", ctx.Err())
		}
	}
	return h.Store.Ping(ctx)
}

func (h *hangStore) PutToken(ctx context.Context, hash [32]byte, ti store.TokenInfo) error {
	if h.putToken.Load() {
		<-ctx.Done()
		return fmt.Errorf("etcd: grant token lease: %w", ctx.Err())
	}
	return h.Store.PutToken(ctx, hash, ti)
}

func (h *hangStore) DevTenant(ctx context.Context, user string) (string, error) {
	if h.devTenant.Load() {
		<-ctx.Done()
		return "", fmt.Errorf("etcd: claim dev tenant: %w", ctx.Err())
	}
	return h.Store.DevTenant(ctx, user)
}

// A client that hangs up while its /healthz ping or its login waits for
// the store is no store failure: nothing is logged (anyone may ask, and
// hang up, at any rate: each such request logged an error or flipped
// /healthz's state), /healthz stays healthy, the request counts as 499,
// and the login's token issue is given back. A store that does not answer
// the ping shows as down all the same when the client hung up first (a
// probe whose timeout is under the ping's).
func TestClientGoneIsNoStoreFailure(t *testing.T) { onEachStore(t, testClientGoneIsNoStoreFailure) }

func testClientGoneIsNoStoreFailure(t *testing.T, kind string) {
	t.Parallel()
	var logs logBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	reg := prometheus.NewRegistry()
	st := &hangStore{Store: testserver.NewStore(t, testserver.Options{Store: kind, ReapInterval: -1})}
	auth := server.NewAuth(server.AuthConfig{Store: st, Dev: true, Logger: log, Registerer: reg,
		Limits: server.AuthLimits{IssuesPerUser: 2}})
	base := serveCustom(t, st, server.Config{Store: st, Auth: auth, Logger: log, Registerer: reg})
	counted := func(metric, label, value string) float64 {
		t.Helper()
		return testserver.Metric(t, reg, metric, label, value)
	}
	// hangUp sends a request that the client gives up on after 200 ms,
	// and waits until the server has counted it as 499.
	hangUp := func(method, path, body, metric, label string, was float64) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			t.Fatalf("%s %s answered %d while the store held it", method, path, resp.StatusCode)
		}
		deadline := time.Now().Add(20 * time.Second)
		for counted(metric, label, "499") != was+1 {
			if time.Now().After(deadline) {
				t.Fatalf("%s %s: not counted as 499 within 20 s; log:\n%v", method, path, &logs)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	login := func(user string) string {
		return fmt.Sprintf(`{"auth":{"RAX-KSKEY:apiKeyCredentials":{"username":%q,"apiKey":"dev"}}}`, user)
	}

	st.pingDelay.Store(int64(500 * time.Millisecond)) // slow, but it answers
	hangUp("GET", "/healthz", "", "svcreg_http_requests_total", "code", 0)
	st.pingDelay.Store(0)
	sendRequest(t, base, "GET", "/healthz", nil).want(200)

	st.devTenant.Store(true)
	hangUp("POST", "/v2.0/tokens", login("gone-1"), "svcreg_identity_token_requests_total", "code", 0)
	st.devTenant.Store(false)
	st.putToken.Store(true)
	hangUp("POST", "/v2.0/tokens", login("gone-2"), "svcreg_identity_token_requests_total", "code", 1)
	hangUp("POST", "/v2.0/tokens", login("gone-2"), "svcreg_identity_token_requests_total", "code", 2)
	st.putToken.Store(false)
	// Both token issues of gone-2's two a hour were given back.
	for range 2 {
		sendRequest(t, base, "POST", "/v2.0/tokens", []byte(login("gone-2"))).want(200)
	}

	for _, msg := range []string{"store does not answer /healthz", "store answers /healthz again", "store token", "authenticate"} {
		if n := logs.count(t, msg, ""); n != 0 {
			t.Errorf("%d log records %q, want none; log:\n%v", n, msg, &logs)
		}
	}
	if n := counted("svcreg_identity_token_requests_total", "code", "503"); n != 0 {
		t.Errorf("svcreg_identity_token_requests_total{code=\"503\"} = %v, want 0", n)
	}

	// The store stops answering; the probe gives up before the ping does.
	st.pingDelay.Store(int64(time.Hour))
	hangUp("GET", "/healthz", "", "svcreg_http_requests_total", "code", 1)
	if n := logs.count(t, "store does not answer /healthz", ""); n != 1 {
		t.Errorf("%d log records of the store's failure, want 1; log:\n%v", n, &logs)
	}
	st.pingDelay.Store(0)
	sendRequest(t, base, "GET", "/healthz", nil).want(200)
	if n := logs.count(t, "store answers /healthz again", ""); n != 1 {
		t.Errorf("%d log records of the store's return, want 1; log:\n%v", n, &logs)
	}
}

// The debug log's request line cuts what the client sent, the method as
// the URI: a 60,000-byte method wrote a 60 KB line.
func TestDebugLogCutsTheRequest(t *testing.T) {
	t.Parallel()
	var logs logBuffer
	base := startCustom(t, testserver.Bolt, func(st store.Store) server.Config {
		return server.Config{Store: st, Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	})
	method, path := strings.Repeat("A", 60000), "/healthz?"+strings.Repeat("q", 60000)
	if _, err := trySend(t, base, method, path, nil); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec struct{ Msg, Method, URI string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec.Msg == "request" && (len(rec.Method) > 300 || len(rec.URI) > 300) {
			t.Errorf("request logged with a method of %d bytes and a URI of %d", len(rec.Method), len(rec.URI))
		}
		if len(line) > 2000 {
			t.Errorf("a log line of %d bytes: %.200s…", len(line), line)
		}
	}
	if logs.count(t, "request", "") != 1 {
		t.Errorf("want one request logged; log:\n%.2000s", &logs)
	}
}

// A path whose bytes before "/tokens" are not UTF-8 is answered and
// logged: the debug log's request line looked for the tokens collection
// in the path lowercased, where each such byte is three, and sliced the
// path past its end (the handler panicked, the answer was lost).
func TestDebugLogPathNotUTF8(t *testing.T) {
	t.Parallel()
	var logs logBuffer
	base := startCustom(t, testserver.Bolt, func(st store.Store) server.Config {
		return server.Config{Store: st, Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	})
	for _, path := range []string{"/" + strings.Repeat("\xff", 10) + "/tokens", "/v2.0\xff\xff/tokens/d02278a2"} {
		rep, err := trySend(t, base, "GET", path, nil)
		if err != nil {
			t.Fatalf("GET %q: %v", path, err)
		}
		rep.want(404)
	}
	if n := logs.count(t, "request", ""); n != 2 {
		t.Errorf("%d requests logged, want 2; log:\n%.2000s", n, &logs)
	}
}

// A store that fails every request logs 20 of them at once and then 10 a
// second, not one line each at the rate clients send them; the next line
// logged says how many were not (not_logged). Every request still gets its
// fault.
func TestStoreFailuresLogBounded(t *testing.T) {
	t.Parallel()
	var logs logBuffer
	// The server's clock stands still but for the second the test adds:
	// the requests may take any time.
	var offset atomic.Int64 // in ns
	t0 := time.Now()
	base := startCustom(t, "bolt", func(st store.Store) server.Config {
		return server.Config{Store: &brokenStore{Store: st, err: errors.New("disk full"), broken: "events"},
			Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
			Clock:  func() time.Time { return t0.Add(time.Duration(offset.Load())) }}
	})
	c := devLogin(t, base, "broken")
	const n = 100
	for range n {
		c.do("GET", "/events", nil).fault(500, "internalError", "Internal Error", "Internal Error")
	}
	lines := func() (logged, notLogged int) {
		for _, line := range bytes.Split(bytes.TrimSpace([]byte(logs.String())), []byte("\n")) {
			var rec struct {
				Msg       string
				NotLogged int `json:"not_logged"`
			}
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "request failed" {
				logged++
				notLogged += rec.NotLogged
			}
		}
		return logged, notLogged
	}
	if logged, _ := lines(); logged != 20 {
		t.Errorf("%d failures: %d logged; want the burst, 20", n, logged)
	}
	offset.Add(int64(time.Second)) // 10 more may be logged
	c.do("GET", "/events", nil).fault(500, "internalError", "Internal Error", "Internal Error")
	if logged, notLogged := lines(); logged != 21 || notLogged != n-20 {
		t.Errorf("a second later: %d logged, %d said not logged; want 21 and %d", logged, notLogged, n-20)
	}
}

// tokenFailStore fails every PutToken with err, as a full disk or an etcd
// out of reach does.
type tokenFailStore struct {
	testserver.Store
	err error
}

func (s *tokenFailStore) PutToken(context.Context, [32]byte, store.TokenInfo) error { return s.err }

// A store that cannot record tokens fails every login that would get one,
// at the rate clients log in (a client that logs in before every call,
// and retries): the log takes the lines of those failures as it takes
// the API's, a burst of 20 and then 10 a second, the next line saying
// how many were not logged; each answer is still 503.
func TestTokenStoreFailuresLogBounded(t *testing.T) {
	t.Parallel()
	var logs logBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	clock := &manualClock{now: time.Now()}
	st := &tokenFailStore{Store: testserver.NewStore(t, testserver.Options{Store: "bolt", ReapInterval: -1}), err: errors.New("disk full")}
	auth := server.NewAuth(server.AuthConfig{Store: st, Logger: log, Clock: clock.Now,
		Users: []server.User{{Name: "carol", Tenant: "1003", APIKey: "carol-key"}}})
	base := serveCustom(t, st, server.Config{Store: st, Auth: auth, Logger: log})
	login := func() {
		t.Helper()
		sendRequest(t, base, "POST", "/v2.0/tokens", map[string]any{"auth": map[string]any{
			"RAX-KSKEY:apiKeyCredentials": map[string]string{"username": "carol", "apiKey": "carol-key"}}}).want(503)
	}
	lines := func() (logged, notLogged int) {
		for _, line := range bytes.Split(bytes.TrimSpace([]byte(logs.String())), []byte("\n")) {
			var rec struct {
				Msg       string
				NotLogged int `json:"not_logged"`
			}
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "store token" {
				logged++
				notLogged += rec.NotLogged
			}
		}
		return logged, notLogged
	}
	const n = 100
	for range n {
		login()
	}
	if logged, _ := lines(); logged != 20 {
		t.Errorf("%d failed logins: %d logged; want the burst, 20", n, logged)
	}
	clock.Add(time.Second) // 10 more may be logged
	login()
	if logged, notLogged := lines(); logged != 21 || notLogged != n-20 {
		t.Errorf("a second later: %d logged, %d said not logged; want 21 and %d", logged, notLogged, n-20)
	}
}

// failingEvents fails every read of the feed while fail is set.
type failingEvents struct {
	store.Store
	fail atomic.Bool
}

func (f *failingEvents) Events(ctx context.Context, tenant string, q store.EventQuery) (store.EventPage, error) {
	if f.fail.Load() {
		return store.EventPage{}, errors.New("disk on fire")
	}
	return f.Store.Events(ctx, tenant, q)
}

// A store that fails the feed's reads while long-polls are parked has the
// dispatcher read again after a backoff; the polls wait on. One account
// can park polls of as many queries as it may park polls (each its own
// group, read on its own): their failed reads are logged as failed
// requests are, a burst of 20 and then 10 a second, not one line per
// group at each try.
func TestParkedReadFailuresLogBounded(t *testing.T) {
	t.Parallel()
	var logs logBuffer
	reg := prometheus.NewRegistry()
	var fe *failingEvents
	base := startCustom(t, "bolt", func(st store.Store) server.Config {
		fe = &failingEvents{Store: st}
		return server.Config{Store: fe, Registerer: reg, Logger: slog.New(slog.NewJSONHandler(&logs, nil))}
	})
	c := devLogin(t, base, "groups")
	const n = 200
	for i := range n {
		rc := dialRaw(t, base)
		req := fmt.Sprintf("GET /v1.0/%s/events?wait=60&limit=%d HTTP/1.1\r\nHost: test\r\nX-Auth-Token: %s\r\n\r\n", c.tenant, i+1, c.token)
		if _, err := io.WriteString(rc.c, req); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, fmt.Sprintf("%d long-polls parked", n), func() bool {
		return metric(t, reg, "svcreg_connections_parked") == n
	})
	fe.fail.Store(true)
	c.setConfig("key", "v") // wakes the dispatcher
	msg := "long-poll dispatcher: read the feed; the long-polls wait on"
	eventually(t, "a failed read logged", func() bool { return logs.count(t, msg, "") > 0 })
	time.Sleep(time.Second) // its next tries: after 50, 100, 200 and 400 ms
	if got := logs.count(t, msg, ""); got > 30 {
		t.Errorf("a second of failed reads of %d parked groups: %d lines %q; want at most 30", n, got, msg)
	}
	fe.fail.Store(false)
}
