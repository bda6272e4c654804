package registry_test

import (
	"cmp"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testprog"
	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/registry"
)

// TestMain runs two tests per CPU at once: the client's tests wait on
// heartbeat intervals, timeouts and long-polls, not on the processors.
func TestMain(m *testing.M) {
	testprog.ParallelPerCPU(2)
	os.Exit(m.Run())
}

// newClient returns a client that authenticates user with the --dev API
// key against srv.
func newClient(t *testing.T, srv *testserver.Server, user string) *registry.Client {
	t.Helper()
	c, err := registry.New(registry.Config{URL: srv.APIURL, AuthURL: srv.AuthURL, Username: user, APIKey: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// tokenClient is a client of the registry at base (a URL without the
// version) with the static token "t" of tenant 1, closed when the test
// ends.
func tokenClient(t *testing.T, base string) *registry.Client {
	t.Helper()
	c, err := registry.New(registry.Config{URL: base + "/v1.0", Token: "t", Tenant: "1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// proxy sits between the client and the server (as testserver's Wrap): it
// records every request and fails the ones a rule selects.
type proxy struct {
	mu       sync.Mutex
	requests []string // "METHOD /raw/path?query"
	statuses []int
	rules    []*rule
	noWait   bool // strip the long-poll parameter: an original server
}

// rule fails the next n requests whose "METHOD path" contains match (ends
// with it, if end) with status, before the server sees them or, if after,
// after the server has answered (the answer is lost).
type rule struct {
	match  string
	end    bool
	n      int
	status int
	after  bool
	// typ is the fault's type, internalError if empty; retryAfter, if
	// set, is sent as Retry-After.
	typ, retryAfter string
}

func (ru *rule) matches(line string) bool {
	if ru.end {
		return strings.HasSuffix(line, ru.match)
	}
	return strings.Contains(line, ru.match)
}

func (p *proxy) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		line := r.Method + " " + r.RequestURI
		if p.noWait && strings.Contains(r.URL.Path, "/events") {
			q := r.URL.Query()
			q.Del("wait")
			r.URL.RawQuery = q.Encode()
			r.RequestURI = r.URL.Path + "?" + r.URL.RawQuery
		}
		p.mu.Lock()
		p.requests = append(p.requests, line)
		var hit *rule
		for _, ru := range p.rules {
			if ru.n > 0 && ru.matches(line) {
				ru.n--
				hit = ru
				break
			}
		}
		p.mu.Unlock()
		status := 0
		switch {
		case hit == nil:
			sw := &statusRecorder{ResponseWriter: w}
			h.ServeHTTP(sw, r)
			status = sw.status
		case hit.after:
			h.ServeHTTP(httptest.NewRecorder(), r)
			fallthrough
		default:
			status = hit.status
			typ := cmp.Or(hit.typ, "internalError")
			w.Header().Set("Content-Type", "application/json")
			if hit.retryAfter != "" {
				w.Header().Set("Retry-After", hit.retryAfter)
			}
			w.WriteHeader(hit.status)
			w.Write([]byte(`{"type":"` + typ + `","code":` + strconv.Itoa(hit.status) + `,"message":"Internal Error","details":"Internal Error","txnId":"proxy"}`))
		}
		p.mu.Lock()
		p.statuses = append(p.statuses, status)
		p.mu.Unlock()
	})
}

// fail adds a rule.
func (p *proxy) fail(r rule) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = append(p.rules, &r)
}

// clear drops the rules.
func (p *proxy) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = nil
}

// count returns how many requests "METHOD /path?query" contained match
// and, if status is not 0, were answered with status.
func (p *proxy) count(match string, status int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for i, line := range p.requests {
		if strings.Contains(line, match) && (status == 0 || (i < len(p.statuses) && p.statuses[i] == status)) {
			n++
		}
	}
	return n
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// collect gathers a sequence into a slice, stopping at the first error.
func collect[T any](t *testing.T, seq func(func(T, error) bool)) []T {
	t.Helper()
	var out []T
	for v, err := range seq {
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		out = append(out, v)
	}
	return out
}

// eventually retries cond until it holds, or fails the test after a
// generous time.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	eventuallyWithin(t, 30*time.Second, what, cond)
}

// eventuallyWithin is eventually for a cond that takes time to come true
// by design: it fails the test only after d.
func eventuallyWithin(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
