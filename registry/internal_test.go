package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testcert"
)

func TestHeartbeatInterval(t *testing.T) {
	t.Parallel()
	// spec §11.2: randInt(-3..1) is randN(5)-3.
	tests := []struct {
		timeout  int
		min, max time.Duration
	}{
		{3, 1800 * time.Millisecond, 1800 * time.Millisecond},
		{5, 3 * time.Second, 3 * time.Second},
		{10, 1 * time.Second, 4 * time.Second}, // 6+[-3..1]-3 = 0..4, and 0 becomes 3
		{14, 2*time.Second + 400*time.Millisecond, 6*time.Second + 400*time.Millisecond},
		{30, 18 * time.Second, 22 * time.Second},
		{120, 90 * time.Second, 94 * time.Second},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.timeout), func(t *testing.T) {
			seen := map[time.Duration]bool{}
			for r := range 5 {
				d := heartbeatInterval(tt.timeout, func(n int) int {
					if n != 5 {
						t.Fatalf("randN(%d), want randN(5)", n)
					}
					return r
				})
				d = d.Round(time.Millisecond)
				if d < tt.min || d > tt.max {
					t.Errorf("timeout %d, rand %d: interval %v, want %v..%v", tt.timeout, r, d, tt.min, tt.max)
				}
				seen[d] = true
			}
			if tt.min == tt.max && len(seen) != 1 {
				t.Errorf("timeout %d: intervals %v, want no jitter", tt.timeout, seen)
			}
		})
	}
	// 6 + (-3) - 3 = 0 is not positive, so it becomes 3.
	if d := heartbeatInterval(10, func(int) int { return 0 }); d.Round(time.Millisecond) != 3*time.Second {
		t.Errorf("timeout 10 at the lowest jitter: %v, want 3s", d)
	}
}

func TestParseExpires(t *testing.T) {
	t.Parallel()
	want := time.Date(2013, 5, 21, 17, 0, 0, 0, time.UTC)
	for _, s := range []string{
		"2013-05-21T12:00:00.000-05:00",
		"2013-05-21T17:00:00.000-00:00",
		"2013-05-21T17:00:00Z",
		"2013-05-21T12:00:00.000-0500",
	} {
		if got := parseExpires(s); !got.Equal(want) {
			t.Errorf("parseExpires(%q) = %v, want %v", s, got, want)
		}
	}
	if got := parseExpires("Tue May 21 2013 12:00:00 GMT-0500 (CDT)"); !got.IsZero() {
		t.Errorf("a JavaScript date string gave %v, want zero", got)
	}
}

func TestRefreshTime(t *testing.T) {
	t.Parallel()
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		expires time.Time
		want    time.Time
	}{
		{"day", start.Add(24 * time.Hour), start.Add(24*time.Hour - maxRefreshEarly)},
		{"short", start.Add(10 * time.Second), start.Add(9 * time.Second)},
		{"unknown", time.Time{}, start.Add(defaultTokenLife)},
		{"past by our clock", start.Add(-time.Hour), start.Add(defaultTokenLife)},
	}
	for _, tt := range tests {
		if got := refreshTime(start, tt.expires); !got.Equal(tt.want) {
			t.Errorf("%s: refreshTime = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestNewError(t *testing.T) {
	t.Parallel()
	req := &http.Request{Method: "GET", URL: &url.URL{Scheme: "http", Host: "h", Path: "/v1.0/1/x"}}
	tests := []struct {
		name   string
		status int
		body   string
		want   Error
		is     error
	}{
		{"fault", 404, `{"type":"notFoundError","code":404,"message":"object does not exist","details":"Object \"Service\" with key \"x\" does not exist","txnId":"t1"}`,
			Error{StatusCode: 404, Type: "notFoundError", Code: 404, Message: "object does not exist", Details: `Object "Service" with key "x" does not exist`, TxnID: "t1"}, ErrNotFound},
		{"keystone", 401, `{"unauthorized":{"code":401,"message":"Username or api key is invalid."}}`,
			Error{StatusCode: 401, Type: "unauthorized", Code: 401, Message: "Username or api key is invalid."}, ErrUnauthorized},
		{"html", 502, `<html>bad gateway</html>`, Error{StatusCode: 502, Code: 502}, nil},
		{"expired", 410, `{"type":"markerExpired","code":410,"message":"Marker has expired","txnId":"t2"}`,
			Error{StatusCode: 410, Type: "markerExpired", Code: 410, Message: "Marker has expired", TxnID: "t2"}, ErrMarkerExpired},
		{"exists", 400, `{"type":"serviceWithThisIdExists","code":400,"message":"m","details":"m","txnId":"t"}`,
			Error{StatusCode: 400, Type: "serviceWithThisIdExists", Code: 400, Message: "m", Details: "m", TxnID: "t"}, ErrServiceExists},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newError(&http.Response{StatusCode: tt.status, Request: req, Header: http.Header{}}, []byte(tt.body))
			tt.want.Method, tt.want.URL = "GET", "http://h/v1.0/1/x"
			if fmt.Sprint(*e) != fmt.Sprint(tt.want) {
				t.Errorf("got  %+v\nwant %+v", *e, tt.want)
			}
			if tt.is != nil && !errors.Is(e, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false", e, tt.is)
			}
			for _, other := range []error{ErrNotFound, ErrServiceExists, ErrLimitReached, ErrUnauthorized, ErrMarkerExpired, ErrRateLimited} {
				if other != tt.is && errors.Is(e, other) {
					t.Errorf("errors.Is(%v, %v) = true", e, other)
				}
			}
		})
	}
}

// endlessList is a list answer whose values never end: {"values":[{},{},…
// It counts the bytes read from it.
type endlessList struct{ read int64 }

func (r *endlessList) Read(p []byte) (int, error) {
	const head, item = `{"values":[`, `{},`
	for i := range p {
		if at := r.read + int64(i); at < int64(len(head)) {
			p[i] = head[at]
		} else {
			p[i] = item[(at-int64(len(head)))%int64(len(item))]
		}
	}
	r.read += int64(len(p))
	return len(p), nil
}

// A page is decoded value by value and refused at the first value past
// its limit: what the registry sends after it is neither decoded nor read.
func TestPageStopsAtItsLimit(t *testing.T) {
	t.Parallel()
	for _, limit := range []int{0, 1, 10, 1000} {
		var r endlessList
		env := newListEnvelope[Service](limit)
		err := env.decodeStream(json.NewDecoder(capped(&r, maxAnswer)))
		want := limit
		if limit == 0 {
			want = maxPageLimit
		}
		var tooLong errPageTooLong
		if !errors.As(err, &tooLong) || tooLong.limit != want {
			t.Errorf("limit %d: %v; want the page refused past %d values", limit, err, want)
		}
		// The decoder reads ahead by its buffer, a few KiB.
		if read := r.read; read > 64<<10 {
			t.Errorf("limit %d: %d bytes read; want decoding to stop past the limit", limit, read)
		}
	}
}

// A list answer cut short is an error, not a shorter list, and an empty
// body or null holds no list (getPage says so).
func TestPageDecodeStream(t *testing.T) {
	t.Parallel()
	tests := []struct {
		body   string
		values int // -1: none
		next   string
		err    bool
	}{
		{``, -1, "", true},
		{`null`, -1, "", false},
		{`{}`, -1, "", false},
		{`{"values":null}`, -1, "", false},
		{`{"values":[]}`, 0, "", false},
		{`{"metadata":{"next_marker":"b","count":2},"values":[{"id":"a"},{"id":"a2"}],"other":{"x":[1]}}`, 2, "b", false},
		{`{"Values":[{"id":"a"}],"METADATA":{"next_marker":"b"}}`, 1, "b", false},
		{`{"values":[{"id":"a"},`, 0, "", true},
		{`{"values":[{"id":"a"}`, 0, "", true},
		{`{"values":[{"id":"a"}]`, 0, "", true},
		{`{"values":[{"id":"a"} {"id":"b"}]}`, 0, "", true},
		{`{"values":{}}`, 0, "", true},
		{`[]`, 0, "", true},
		{`{"values":[],"values":[]}`, 0, "", true},
		{`{"values":[1]}`, 0, "", true},
	}
	for _, tt := range tests {
		env := newListEnvelope[Service](2)
		err := env.decodeStream(json.NewDecoder(strings.NewReader(tt.body)))
		if tt.body == `` {
			// An empty body: io.EOF, which send takes for no answer.
			if err != io.EOF {
				t.Errorf("an empty body: %v, want io.EOF", err)
			}
			continue
		}
		if (err != nil) != tt.err {
			t.Errorf("%s: error %v, want an error: %v", tt.body, err, tt.err)
			continue
		}
		if err != nil {
			continue
		}
		n := -1
		if env.Values != nil {
			n = len(*env.Values)
		}
		next := ""
		if env.Metadata.NextMarker != nil {
			next = *env.Metadata.NextMarker
		}
		if n != tt.values || next != tt.next {
			t.Errorf("%s: %d values, next %q; want %d, %q", tt.body, n, next, tt.values, tt.next)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		header string
		want   time.Duration
	}{
		{"", 0},
		{"2", 2 * time.Second},
		{" 120 ", 2 * time.Minute},
		{"0", 0},
		{"-5", 0},
		{"soon", 0},
		{"Sat, 05 Dec 2026 12:00:30 GMT", 30 * time.Second},
		{"Sat, 05 Dec 2026 11:59:00 GMT", 0},
		{"99999999999999999999", 0},
		{"9999999999999", time.Duration(math.MaxInt64/time.Second) * time.Second},
	} {
		if got := retryAfter(tt.header, now); got != tt.want {
			t.Errorf("retryAfter(%q) = %v, want %v", tt.header, got, tt.want)
		}
	}
}

// CACert's CAs are the transport's only roots, and the transport keeps the
// settings of its own (idle connections kept for heartbeats and polls).
func TestCACertTransport(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(file, testcert.New(t, "a CA", 1).PEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{URL: "https://registry.example/v1.0", Token: "t", Tenant: "1", CACert: file})
	if err != nil {
		t.Fatal(err)
	}
	want, err := LoadCACert(file)
	if err != nil {
		t.Fatal(err)
	}
	tr := c.transport
	if tr.TLSClientConfig == nil || !tr.TLSClientConfig.RootCAs.Equal(want) {
		t.Errorf("the transport's roots are not the CACert file's alone")
	}
	if tr.MaxIdleConnsPerHost != newTransport().MaxIdleConnsPerHost || !tr.ForceAttemptHTTP2 || tr.Proxy == nil {
		t.Errorf("the transport lost its settings: %+v", tr)
	}
	if c, _ := New(Config{URL: "https://registry.example/v1.0", Token: "t", Tenant: "1"}); c.transport.TLSClientConfig != nil && c.transport.TLSClientConfig.RootCAs != nil {
		t.Error("without CACert the transport has roots of its own, not the system's")
	}
}

// nodesClient returns a client of n nodes whose memory of their failures
// takes the time from *now.
func nodesClient(t *testing.T, n int, now *time.Duration) *Client {
	t.Helper()
	urls := make([]string, n)
	for i := range urls {
		urls[i] = fmt.Sprintf("http://node%d:8420", i)
	}
	c, err := New(Config{URL: strings.Join(urls, ","), Token: "t", Tenant: "1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.clock = func() time.Duration { return *now }
	return c
}

// A node's failure is remembered for 10 s, renewed by each failure while
// it lasts; a failure after it ran out is remembered twice as long, up to
// 160 s; an answer clears it.
func TestFailMemory(t *testing.T) {
	t.Parallel()
	var now time.Duration
	c := nodesClient(t, 2, &now)
	for _, step := range []struct{ at, until time.Duration }{
		{0, 10 * time.Second},
		{5 * time.Second, 15 * time.Second},
		{15 * time.Second, 35 * time.Second},
		{35 * time.Second, 75 * time.Second},
		{75 * time.Second, 155 * time.Second},
		{155 * time.Second, 315 * time.Second},
		{315 * time.Second, 475 * time.Second},
	} {
		c.markFailed(1, step.at, step.at)
		if m := c.marks[1].Load(); m == nil || m.until != step.until {
			t.Fatalf("failed at %v: mark %+v, want one until %v", step.at, m, step.until)
		}
	}
	// A failure older than the mark's (a request sent before) changes
	// nothing.
	before := c.marks[1].Load()
	c.markFailed(1, 300*time.Second, 300*time.Second)
	if c.marks[1].Load() != before {
		t.Errorf("an earlier failure changed the mark")
	}
	ctx := context.Background()
	if c.failover(ctx, 1, &Error{StatusCode: http.StatusNotFound, Type: FaultNotFound}, sentTo{mark: c.marks[1].Load()}) || c.marks[1].Load() != nil {
		t.Errorf("an answer left the mark %+v", c.marks[1].Load())
	}
	c.markFailed(1, 500*time.Second, 500*time.Second)
	if m := c.marks[1].Load(); m.until != 510*time.Second {
		t.Errorf("after an answer, a failure is remembered until %v, want 510s", m.until)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if c.failover(cancelled, 1, cancelled.Err(), sentTo{mark: c.marks[1].Load()}); c.marks[1].Load() == nil {
		t.Errorf("the caller's cancellation cleared the mark")
	}
	if c.failover(ctx, 1, nil, sentTo{mark: c.marks[1].Load()}); c.marks[1].Load() != nil {
		t.Errorf("a success left the mark")
	}
}

// A move from a node goes to the next one that has not failed recently;
// if every other one has, to the one whose memory runs out first. A call
// sends its request again to the nodes it has not tried, those that have
// not failed recently first, and to each of them before it gives up.
func TestFailoverOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	failed := &Error{StatusCode: http.StatusServiceUnavailable}
	var now time.Duration
	c := nodesClient(t, 4, &now)

	c.markFailed(1, 0, 0)
	now = time.Second
	if !c.failover(ctx, 0, failed, sentTo{}) || c.cur.Load() != 2 {
		t.Fatalf("moved from 0 with 1 failed a second ago to %d, want 2", c.cur.Load())
	}
	// 0 (until 11 s) and 1 (until 10 s) failed: from 3 to 1, then 2.
	c.markFailed(2, now, now)
	c.markFailed(3, now, now)
	c.cur.Store(3)
	now = 2 * time.Second
	var tried tries
	want := []int{1, 2, 0}
	for i := 3; ; {
		next, _ := c.failedAt(ctx, ctx, i, failed, &tried)
		if next < 0 {
			if len(want) != 0 {
				t.Errorf("the call gave up with %v untried", want)
			}
			break
		}
		if len(want) == 0 || next != want[0] {
			t.Fatalf("after %d the call tries %d, want %v first", i, next, want)
		}
		if cur := int(c.cur.Load()); cur != next {
			t.Errorf("the call tries %d, the client is at %d", next, cur)
		}
		i, want = next, want[1:]
	}

	// Another request moved the client to a node that failed recently,
	// which a call that has not tried it passes over for one that has
	// not, while there is one.
	c = nodesClient(t, 4, &now)
	c.markFailed(2, now, now)
	c.cur.Store(2)
	tried = tries{}
	if next, _ := c.failedAt(ctx, ctx, 0, failed, &tried); next != 3 {
		t.Errorf("after 0, with the client at 2, which failed, the call tries %d, want 3", next)
	}

	// With two nodes, the client goes back and forth.
	c = nodesClient(t, 2, &now)
	for _, want := range []uint32{1, 0, 1} {
		c.failover(ctx, int(c.cur.Load()), failed, sentTo{})
		if got := c.cur.Load(); got != want {
			t.Fatalf("moved to %d, want %d", got, want)
		}
	}
}

// countingNode answers every request with status (and Retry-After ra, if
// not empty), counting them.
func countingNode(t *testing.T, status int, ra string) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(s.Close)
	return s, &hits
}

// An answer to a request sent before a node's newer failure does not
// clear that failure's mark, so the client does not move to the node
// that just failed.
func TestAnswerKeepsANewerFailuresMark(t *testing.T) {
	t.Parallel()
	var now time.Duration
	c := nodesClient(t, 3, &now)
	ctx := context.Background()
	failed := &Error{StatusCode: http.StatusServiceUnavailable}
	now = 5 * time.Second
	sent := sentTo{mark: c.marks[1].Load(), at: now} // a request to node 1
	c.failover(ctx, 1, failed, sentTo{at: now})      // another fails there
	c.failover(ctx, 1, nil, sent)                    // the first is answered
	now = 6 * time.Second
	c.failover(ctx, 0, failed, sentTo{at: now})
	if got := c.cur.Load(); got != 2 {
		t.Errorf("moved from 0 to %d; want 2: node 1 failed a second ago", got)
	}
}

// A call that nodes in use failed and another node answered makes that
// node the current one, so the next call goes straight to it, not back to
// a node that failed: an answer with a fault of the registry's own (a
// 404) as well as a success, as the node works.
func TestCallAnsweredElsewhereMovesTheClient(t *testing.T) {
	t.Parallel()
	for _, status := range []int{http.StatusNoContent, http.StatusNotFound} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			t.Parallel()
			d0, h0 := countingNode(t, http.StatusServiceUnavailable, "")
			d1, h1 := countingNode(t, http.StatusServiceUnavailable, "")
			live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(status)
				if status == http.StatusNotFound { // the registry's own fault
					io.WriteString(w, `{"type":"notFoundError","code":404,"message":"object does not exist"}`)
				}
			}))
			t.Cleanup(live.Close)
			var now time.Duration
			c, err := New(Config{URL: d0.URL + "," + d1.URL + "," + live.URL, Token: "t", Tenant: "1"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			c.clock = func() time.Duration { return now }
			// The live node failed twice before: remembered until 30 s.
			c.markFailed(2, 0, 0)
			c.markFailed(2, 10*time.Second, 10*time.Second)
			now = 12 * time.Second
			ctx := context.Background()
			for range 2 {
				_, err := c.do(ctx, call{method: http.MethodGet, path: "/limits"}, nil)
				if status == http.StatusNotFound && !errors.Is(err, ErrNotFound) || status != http.StatusNotFound && err != nil {
					t.Fatalf("the live node answers %d; the call returned %v", status, err)
				}
			}
			if n := h0.Load() + h1.Load(); n != 2 {
				t.Errorf("the failing nodes got %d requests over two calls, want 2", n)
			}
			if got := c.URL(); got != live.URL {
				t.Errorf("the client is at %s, want the node that answered, %s", got, live.URL)
			}
		})
	}
}

// When every node failed, RetryAfter (and Temporary) tell what the call's
// last request got, not the Retry-After of a node the call left.
func TestAllNodesFailedRetryAfterIsTheLastNodes(t *testing.T) {
	t.Parallel()
	busy, _ := countingNode(t, http.StatusServiceUnavailable, "120")
	c, err := New(Config{URL: busy.URL + ",http://127.0.0.1:1", Token: "t", Tenant: "1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_, err = c.do(context.Background(), call{method: http.MethodGet, path: "/limits"}, nil)
	if !errors.Is(err, ErrAllNodesFailed) || !Temporary(err) {
		t.Fatalf("%v: want ErrAllNodesFailed, temporary", err)
	}
	if ra := RetryAfter(err); ra != 0 {
		t.Errorf("RetryAfter = %v, the first node's; the last request (refused) asked for none", ra)
	}
}

// The requests in flight at a node that froze time out one after another,
// over up to nodeTimeout: one failure of the node, not a streak.
func TestInFlightTimeoutsAreOneFailure(t *testing.T) {
	t.Parallel()
	var now time.Duration
	c := nodesClient(t, 2, &now)
	c.markFailed(1, time.Second, -29*time.Second)
	c.markFailed(1, 25*time.Second, -5*time.Second)
	if m := c.marks[1].Load(); m.streak != 1 || m.until != 35*time.Second {
		t.Errorf("one freeze: streak %d until %v, want 1 until 35 s", m.streak, m.until)
	}
	c.markFailed(1, 40*time.Second, 36*time.Second) // sent after the memory ran out
	if m := c.marks[1].Load(); m.streak != 2 {
		t.Errorf("a request sent after the memory ran out failed: streak %d, want 2", m.streak)
	}
}

// A login at nodes that all take the connection and never answer ends
// with the error that names each of them, though the login's own time
// has run out by the last one's. (It takes the login's 30 s.)
func TestLoginEveryNodeFrozen(t *testing.T) {
	t.Parallel()
	frozen := func() *httptest.Server {
		stop := make(chan struct{})
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-stop:
			}
		}))
		t.Cleanup(s.Close)
		t.Cleanup(func() { close(stop) })
		return s
	}
	a, b := frozen(), frozen()
	c, err := New(Config{URL: a.URL + "," + b.URL, Username: "bob", APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_, err = c.Authenticate(context.Background())
	if !errors.Is(err, ErrAllNodesFailed) || !strings.Contains(err.Error(), "authenticate bob: every node failed: ") {
		t.Errorf("a login every node failed: %v; want ErrAllNodesFailed, naming each node", err)
	}
}

// A caller that stops waiting for a merged call gets its context's cause,
// so that a deadline a command set says which (the CLI's --max-time).
func TestFlightCallerGetsItsCause(t *testing.T) {
	t.Parallel()
	var f flight[int]
	release := make(chan struct{})
	defer close(release)
	block := func(ctx context.Context) (int, error) {
		<-release
		return 1, nil
	}
	cause := errors.New("the caller's own reason")
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(cause)
	if _, err := f.do(ctx, time.Minute, block); err != cause {
		t.Errorf("do on an ended context: %v, want %v", err, cause)
	}
	ctx, stop := context.WithTimeoutCause(context.Background(), 10*time.Millisecond, cause)
	defer stop()
	if _, err := f.do(ctx, time.Minute, block); err != cause {
		t.Errorf("do waiting when the context ends: %v, want %v", err, cause)
	}
}

// A node behind a proxy that answers 404 pages of its own (it took the
// node out) failed: the call goes on to the next node, and the client
// stays there.
func TestProxys404MovesToTheNextNode(t *testing.T) {
	t.Parallel()
	proxied := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, "<html><body>404 Not Found</body></html>")
	}))
	t.Cleanup(proxied.Close)
	live, hits := countingNode(t, http.StatusNoContent, "")
	c, err := New(Config{URL: proxied.URL + "," + live.URL, Token: "t", Tenant: "1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for range 2 {
		if _, err := c.do(context.Background(), call{method: http.MethodGet, path: "/limits"}, nil); err != nil {
			t.Fatalf("the call returned %v; want the next node's answer", err)
		}
	}
	if got := c.URL(); got != live.URL || hits.Load() != 2 {
		t.Errorf("the client is at %s after %d answers of the live node; want %s, 2", got, hits.Load(), live.URL)
	}
}
