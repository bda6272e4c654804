package server_test

// The conformance suite talks raw HTTP to a real server, so that it controls
// the exact path, query, headers and body of every request (spec §2: the
// raw path matters). This file holds its small client.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testprog"
	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/internal/testserver/etcdserver"
	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/server"
	"github.com/svcreg/svcreg/server/store"
)

// clientOf is the client of the server at base (testserver.Client): a
// client for each server, never following a redirect.
func clientOf(base string) *http.Client { return testserver.Client(base) }

// api is one authenticated --dev user, and so one tenant, of a server.
type api struct {
	t      *testing.T
	base   string // http://127.0.0.1:port
	token  string
	tenant string
}

// onEachStore runs a conformance test, in parallel, on each store the
// suite checks (testserver.StoreKinds), as the subtests bolt and etcd: the
// test gives kind to the servers it starts.
func onEachStore(t *testing.T, test func(t *testing.T, kind string)) {
	t.Parallel()
	for _, kind := range testserver.StoreKinds() {
		t.Run(kind, func(t *testing.T) { test(t, kind) })
	}
}

// newAPI logs in a --dev user named after the test. Every test and subtest
// therefore works in a tenant of its own.
func newAPI(t *testing.T, srv *testserver.Server) *api {
	t.Helper()
	return newUser(t, srv, t.Name())
}

func newUser(t *testing.T, srv *testserver.Server, name string) *api {
	t.Helper()
	// A connection the client dialled but never used holds up the server's
	// graceful stop for seconds; this cleanup runs before that stop.
	t.Cleanup(clientOf(srv.URL).CloseIdleConnections)
	return loginTo(t, srv, name)
}

// loginTo is newUser without the cleanup, for a server that tests running
// at once share (whose owner closes the idle connections as it ends).
func loginTo(t *testing.T, srv *testserver.Server, name string) *api {
	t.Helper()
	token, tenant := srv.Token(name)
	return &api{t: t, base: srv.URL, token: token, tenant: tenant}
}

// in is the same user for the (sub)test t.
func (c *api) in(t *testing.T) *api {
	d := *c
	d.t = t
	return &d
}

// do sends method to /v1.0/{tenant}{path}, where path may hold a query.
func (c *api) do(method, path string, body any, header ...string) *reply {
	c.t.Helper()
	return c.raw(method, "/v1.0/"+c.tenant+path, body, header...)
}

// raw sends method to uri exactly as given, with the user's token.
func (c *api) raw(method, uri string, body any, header ...string) *reply {
	c.t.Helper()
	return sendRequest(c.t, c.base, method, uri, body, append([]string{"X-Auth-Token", c.token}, header...)...)
}

// try is do for other goroutines: it reports a transport error instead of
// failing the test.
func (c *api) try(method, path string, body any) (*reply, error) {
	return trySend(c.t, c.base, method, "/v1.0/"+c.tenant+path, body, "X-Auth-Token", c.token)
}

// sendRequest sends a request for uri (path and query exactly as given, never
// cleaned) to the server at base. A string or []byte body is sent as is, an
// io.Reader without a length (chunked), anything else as JSON; a request
// with a body has Content-Type application/json. header holds name/value
// pairs applied after that: an empty value removes the header, and "Host"
// sets the Host header.
func sendRequest(t *testing.T, base, method, uri string, body any, header ...string) *reply {
	t.Helper()
	r, err := trySend(t, base, method, uri, body, header...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, uri, err)
	}
	return r
}

func trySend(t *testing.T, base, method, uri string, body any, header ...string) (*reply, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	case io.Reader:
		rd = b
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, base, rd)
	if err != nil {
		return nil, err
	}
	path, query, _ := strings.Cut(uri, "?")
	req.URL.Opaque, req.URL.RawQuery = path, query
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		name, value := header[i], header[i+1]
		switch {
		case strings.EqualFold(name, "Host"):
			req.Host = value
		case value == "":
			req.Header.Del(name)
		default:
			req.Header.Set(name, value)
		}
	}
	resp, err := clientOf(base).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &reply{t: t, code: resp.StatusCode, header: resp.Header, body: data, close: resp.Close}, nil
}

// reply is an answer as received.
type reply struct {
	t      *testing.T
	code   int
	header http.Header
	body   []byte
	// close reports Connection: close, which the client takes out of header.
	close bool
}

// want fails the test unless the status is code.
func (r *reply) want(code int) *reply {
	r.t.Helper()
	if r.code != code {
		r.t.Fatalf("status %d, want %d; body: %s", r.code, code, r.body)
	}
	return r
}

// json decodes the body into v.
func (r *reply) json(v any) {
	r.t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		r.t.Fatalf("decode %q: %v", r.body, err)
	}
}

// absent stands for a fault body without a details key.
type absent struct{}

// prefixed stands for details, equal to the message, that begin with a text.
type prefixed string

// unspecified leaves message and details unchecked, for faults whose text
// nothing specifies.
type unspecified struct{}

// fault checks an error answer (spec §4.1): the status; a JSON body whose
// type, message and details are as given, whose code is the status as a JSON
// number, and whose txnId is the X-Response-Id header. details is a string,
// absent{}, prefixed, unspecified{}, or a map for an object.
func (r *reply) fault(code int, typ, message string, details any) {
	r.t.Helper()
	r.want(code)
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		r.t.Errorf("fault Content-Type %q, want application/json", ct)
	}
	var f struct {
		Type    string `json:"type"`
		Code    int    `json:"code"`
		Message string `json:"message"`
		Details any    `json:"details"`
		TxnID   string `json:"txnId"`
	}
	r.json(&f)
	var keys map[string]json.RawMessage
	r.json(&keys)
	_, hasDetails := keys["details"]
	if f.Type != typ || f.Code != code {
		r.t.Errorf("fault type %q code %d, want %q %d; body: %s", f.Type, f.Code, typ, code, r.body)
	}
	if id := r.header.Get("X-Response-Id"); id == "" || f.TxnID != id {
		r.t.Errorf("fault txnId %q, X-Response-Id %q: want equal and not empty", f.TxnID, id)
	}
	switch d := details.(type) {
	case unspecified:
	case absent:
		if f.Message != message || hasDetails {
			r.t.Errorf("fault message %q details %v, want %q and no details key", f.Message, keys["details"], message)
		}
	case prefixed:
		s, ok := f.Details.(string)
		if !strings.HasPrefix(f.Message, string(d)) || !ok || s != f.Message {
			r.t.Errorf("fault message %q details %v, want both the same and beginning %q", f.Message, f.Details, d)
		}
	default:
		if f.Message != message || !hasDetails || !reflect.DeepEqual(f.Details, d) {
			r.t.Errorf("fault message %q details %#v, want %q %#v", f.Message, f.Details, message, d)
		}
	}
}

// tooLarge checks the 413 of spec §2.3 step 1: an empty body, an
// X-Response-Id, and the connection closed.
func (r *reply) tooLarge() {
	r.t.Helper()
	r.want(413)
	if len(r.body) != 0 {
		r.t.Errorf("413 body %q, want empty", r.body)
	}
	if r.header.Get("X-Response-Id") == "" {
		r.t.Errorf("413 without X-Response-Id")
	}
	if !r.close {
		r.t.Errorf("413 without Connection: close")
	}
}

// notFound checks the 404 of a missing object (spec §4.3).
func (r *reply) notFound(kind, key string) {
	r.t.Helper()
	r.fault(404, "notFoundError", "object does not exist", `Object "`+kind+`" with key "`+key+`" does not exist`)
}

// invalid checks the 400 of a body field that fails validation (spec §5).
func (r *reply) invalid(key, details string) {
	r.t.Helper()
	r.fault(400, "badRequest", "Validation error for key '"+key+"'", details)
}

// badRequest checks a 400 badRequest whose message and details are the same.
func (r *reply) badRequest(message string) {
	r.t.Helper()
	r.fault(400, "badRequest", message, message)
}

// The JSON shapes of spec §6.
type (
	service struct {
		ID               string            `json:"id"`
		Tags             []string          `json:"tags"`
		Metadata         map[string]string `json:"metadata"`
		HeartbeatTimeout int               `json:"heartbeat_timeout"`
		LastSeen         *int64            `json:"last_seen"`
	}
	configValue struct {
		ID    string `json:"id"`
		Value string `json:"value"`
	}
	event struct {
		ID        string          `json:"id"`
		Timestamp int64           `json:"timestamp"`
		Type      string          `json:"type"`
		Payload   json.RawMessage `json:"payload"`
	}
	listMeta struct {
		Count      int     `json:"count"`
		Limit      int     `json:"limit"`
		Marker     *string `json:"marker"`
		NextMarker *string `json:"next_marker"`
		NextHref   *string `json:"next_href"`
	}
)

// list decodes a 200 list answer (spec §6.5): values is an array, never
// null, and count is its length.
func list[T any](r *reply) ([]T, listMeta) {
	r.t.Helper()
	r.want(200)
	var env struct {
		Values   []T      `json:"values"`
		Metadata listMeta `json:"metadata"`
	}
	r.json(&env)
	if env.Values == nil {
		r.t.Errorf("values is not an array: %s", r.body)
	}
	if env.Metadata.Count != len(env.Values) {
		r.t.Errorf("metadata.count %d, but %d values", env.Metadata.Count, len(env.Values))
	}
	return env.Values, env.Metadata
}

// create creates a service and returns its first heartbeat token.
func (c *api) create(id string, timeout int) string {
	c.t.Helper()
	return c.createBody(map[string]any{"id": id, "heartbeat_timeout": timeout})
}

func (c *api) createBody(body any) string {
	c.t.Helper()
	var out struct {
		Token string `json:"token"`
	}
	c.do("POST", "/services", body).want(201).json(&out)
	return out.Token
}

func (c *api) heartbeat(id, token string) *reply {
	c.t.Helper()
	return c.do("POST", "/services/"+id+"/heartbeat", map[string]string{"token": token})
}

// nextToken heartbeats and returns the new token.
func (c *api) nextToken(id, token string) string {
	c.t.Helper()
	var out struct {
		Token string `json:"token"`
	}
	c.heartbeat(id, token).want(200).json(&out)
	return out.Token
}

func (c *api) service(id string) service {
	c.t.Helper()
	var s service
	c.do("GET", "/services/"+id, nil).want(200).json(&s)
	return s
}

func (c *api) setConfig(id, value string) {
	c.t.Helper()
	c.do("PUT", "/configuration/"+id, map[string]string{"value": value}).want(204)
}

// events lists the events feed; query is "" or begins with "?".
func (c *api) events(query string) []event {
	c.t.Helper()
	evs, _ := list[event](c.do("GET", "/events"+query, nil))
	return evs
}

// polled is the outcome of a long-poll.
type polled struct {
	r   *reply
	err error
}

// longPoll sends GET /events{query} in the background.
func (c *api) longPoll(query string) <-chan polled {
	ch := make(chan polled, 1)
	go func() {
		r, err := c.try("GET", "/events"+query, nil)
		ch <- polled{r, err}
	}()
	return ch
}

// stillWaiting fails the test if the long-poll has answered after a while
// with no new event: it must be parked.
func stillWaiting(t *testing.T, ch <-chan polled) {
	t.Helper()
	time.Sleep(300 * time.Millisecond)
	select {
	case p := <-ch:
		if p.err != nil {
			t.Fatalf("long-poll: %v", p.err)
		}
		t.Fatalf("long-poll answered with no new event: %d %s", p.r.code, p.r.body)
	default:
	}
}

// answer waits for the long-poll's answer and returns its events.
func answer(t *testing.T, ch <-chan polled) []event {
	t.Helper()
	p := <-ch
	if p.err != nil {
		t.Fatalf("long-poll: %v", p.err)
	}
	evs, _ := list[event](p.r)
	return evs
}

// summary names each event by type and object id, e.g. "service.join a".
func summary(evs []event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		var p struct {
			ID       string `json:"id"`
			ConfigID string `json:"configuration_value_id"`
		}
		json.Unmarshal(ev.Payload, &p)
		out[i] = ev.Type + " " + p.ID + p.ConfigID
	}
	return out
}

// deref is *s, or "" for nil.
func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// parallel runs fn(0) … fn(n-1) at once and waits for them.
func parallel(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			fn(i)
		})
	}
	close(start)
	wg.Wait()
}

// startCustom runs a server as cmd/svcreg serves it (server.Serve, so
// long-polls park) for what testserver does not offer: cfg gets its Store
// from configure, given a store of the kind the test runs on with the
// reaper off, and --dev authentication. It returns the server's root URL.
func startCustom(t *testing.T, kind string, configure func(store.Store) server.Config) string {
	t.Helper()
	st := testserver.NewStore(t, testserver.Options{Store: kind, ReapInterval: -1})
	return serveCustom(t, st, configure(st))
}

// serveCustom runs a server of cfg, with --dev's logins to st unless cfg
// has an Auth, as Server.Serve runs it, until the test ends, and returns its root URL.
func serveCustom(t *testing.T, st testserver.Store, cfg server.Config) string {
	t.Helper()
	return serveCustomHS(t, st, cfg, &http.Server{ReadHeaderTimeout: 10 * time.Second})
}

// serveCustomHS is serveCustom with the http.Server hs.
func serveCustomHS(t *testing.T, st testserver.Store, cfg server.Config, hs *http.Server) string {
	t.Helper()
	if cfg.Auth == nil {
		cfg.Auth = server.NewAuth(server.AuthConfig{Store: st, Dev: true})
	}
	h := server.New(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- h.Serve(hs, ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		h.Drain(ctx)
		if err := hs.Shutdown(ctx); err != nil {
			hs.Close()
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// startWrapped runs a server over wrap's wrapper of the test store, as
// startCustom, and returns its root URL and the wrapper.
func startWrapped[S store.Store](t *testing.T, kind string, wrap func(store.Store) S) (string, S) {
	t.Helper()
	var w S
	base := startCustom(t, kind, func(st store.Store) server.Config {
		w = wrap(st)
		return server.Config{Store: w}
	})
	return base, w
}

// startUnparked runs a server behind a plain http.Server, without
// Server.Serve or its Listener, as a program embedding the handler may: a
// long-poll then waits on its goroutine. It returns the root URL.
func startUnparked(t *testing.T, kind string) string {
	t.Helper()
	st := testserver.NewStore(t, testserver.Options{Store: kind, ReapInterval: -1})
	h := server.New(server.Config{Store: st, Auth: server.NewAuth(server.AuthConfig{Store: st, Dev: true})})
	hs := httptest.NewServer(h)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		h.Drain(ctx)
		hs.Close()
	})
	return hs.URL
}

// devLogin logs a --dev user in at the identity endpoint of the server at
// base (spec §3.1).
func devLogin(t *testing.T, base, username string) *api {
	t.Helper()
	body := map[string]any{"auth": map[string]any{
		"RAX-KSKEY:apiKeyCredentials": map[string]string{"username": username, "apiKey": "dev"},
	}}
	var out struct {
		Access struct {
			Token struct {
				ID     string `json:"id"`
				Tenant struct {
					ID string `json:"id"`
				} `json:"tenant"`
			} `json:"token"`
		} `json:"access"`
	}
	sendRequest(t, base, "POST", "/v2.0/tokens", body).want(200).json(&out)
	return &api{t: t, base: base, token: out.Access.Token.ID, tenant: out.Access.Token.Tenant.ID}
}

// lowUUID is the smallest v1 UUID at t: "from t on" (spec §9.3).
func lowUUID(t time.Time) string { return timeuuid.Low(t).String() }

// highUUID is the largest v1 UUID at t: "after t".
func highUUID(t time.Time) string { return timeuuid.High(t).String() }

// pollMode is a way a server holds long-polls, and a login to such a
// server.
type pollMode struct {
	name  string
	login func(t *testing.T, username string) *api
}

// pollModes are a testserver, served as in production, where a long-poll
// parks, and a server without Server.Serve, where it waits on its
// goroutine.
func pollModes(t *testing.T, kind string) []pollMode {
	srv := testserver.Start(t, testserver.Options{Store: kind})
	// Its subtests run at once: one's end must not close the connections
	// of another's request.
	t.Cleanup(clientOf(srv.URL).CloseIdleConnections)
	waiting := startUnparked(t, kind)
	return []pollMode{
		{"parked", func(t *testing.T, username string) *api { return loginTo(t, srv, username) }},
		{"waiting", func(t *testing.T, username string) *api { return devLogin(t, waiting, username) }},
	}
}

// TestMain shares one etcd member among the etcd-store servers of the
// conformance suite (each works under its own key prefix), and runs two
// tests per CPU at once: most of them wait on long-polls, timers and etcd.
func TestMain(m *testing.M) {
	testprog.ParallelPerCPU(2)
	os.Exit(etcdserver.Main(m))
}

// getsUsed is the account's count of GET requests today, as GET /limits
// gives it (counting that request too).
func (a *api) getsUsed() int {
	var l struct {
		Rate map[string]struct{ Used int } `json:"rate"`
	}
	a.do("GET", "/limits", nil).want(200).json(&l)
	return l.Rate["/.*"].Used
}
