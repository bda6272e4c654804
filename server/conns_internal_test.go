package server

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// fakeConn is a connection from addr that records its closing.
type fakeConn struct {
	net.Conn
	addr   net.Addr
	closed bool
}

func (c *fakeConn) RemoteAddr() net.Addr { return c.addr }
func (c *fakeConn) Close() error         { c.closed = true; return nil }

// trackerBed is a connection tracker with MaxConns 3 on a clock the test
// moves.
type trackerBed struct {
	t   *testing.T
	ct  *connTracker
	now time.Time
}

func newTrackerBed(t *testing.T) *trackerBed {
	s := &Server{closing: make(chan struct{}), metrics: newServerMetrics(nil),
		cfg: Config{MaxConns: 3, MaxIdleConns: 100, MaxIdleConnsPerTenant: 100, UnauthIdleTimeout: time.Hour}}
	s.poller = newPoller(s)
	b := &trackerBed{t: t, ct: newConnTracker(s), now: time.Unix(1_800_000_000, 0)}
	b.ct.now = func() time.Time { return b.now }
	return b
}

// open accepts a connection from ip, as the http.Server does.
func (b *trackerBed) open(ip string) *fakeConn {
	c := &fakeConn{addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}}
	b.ct.add(c)
	b.ct.setState(c, http.StateNew)
	return c
}

// request has c's request arrive (headers; a body if body is not empty,
// read to its end if read) and its handler run.
func (b *trackerBed) request(c *fakeConn, body string, read bool) {
	b.ct.setState(c, http.StateActive)
	r := httptest.NewRequest("POST", "/v1.0/1/services", strings.NewReader(body))
	if body == "" {
		r.Body = http.NoBody
	}
	r = r.WithContext(withConn(context.Background(), b.ct.open[c]))
	b.ct.requestRead(r)
	if read {
		buf := make([]byte, len(body)+1)
		for {
			if _, err := r.Body.Read(buf); err != nil {
				break
			}
		}
	}
}

func (b *trackerBed) closed(want map[*fakeConn]bool, names map[*fakeConn]string) {
	b.t.Helper()
	for c, name := range names {
		if c.closed != want[c] {
			b.t.Errorf("%s closed: %v, want %v", name, c.closed, want[c])
		}
	}
}

// Which connection a new one past MaxConns takes the place of.
func TestConnTrackerMakesRoom(t *testing.T) {
	t.Run("a request a second on its way before an idle connection", func(t *testing.T) {
		b := newTrackerBed(t)
		slow, idle, busy := b.open("10.0.0.1"), b.open("10.0.0.2"), b.open("10.0.0.2")
		b.request(idle, "", false)
		b.ct.setState(idle, http.StateIdle)
		b.request(busy, "{}", true)
		b.now = b.now.Add(stalledAfter)
		nc := b.open("10.0.0.3")
		b.closed(map[*fakeConn]bool{slow: true}, map[*fakeConn]string{slow: "slow", idle: "idle", busy: "busy", nc: "new"})
	})
	t.Run("an idle connection before a young request on its way", func(t *testing.T) {
		b := newTrackerBed(t)
		young, idle, busy := b.open("10.0.0.1"), b.open("10.0.0.2"), b.open("10.0.0.2")
		b.request(idle, "", false)
		b.ct.setState(idle, http.StateIdle)
		b.request(busy, "", false)
		b.now = b.now.Add(stalledAfter / 2)
		nc := b.open("10.0.0.3")
		b.closed(map[*fakeConn]bool{idle: true}, map[*fakeConn]string{young: "young", idle: "idle", busy: "busy", nc: "new"})
		// No idle one left: the young one, not the new one.
		nc2 := b.open("10.0.0.4")
		b.closed(map[*fakeConn]bool{idle: true, young: true}, map[*fakeConn]string{young: "young", idle: "idle", busy: "busy", nc: "new", nc2: "new 2"})
	})
	t.Run("never the new one: it is let in past MaxConns", func(t *testing.T) {
		b := newTrackerBed(t)
		var served []*fakeConn
		for _, ip := range []string{"10.0.0.1", "10.0.0.1", "10.0.0.2"} {
			c := b.open(ip)
			b.request(c, "{}", true) // arrived, being served
			served = append(served, c)
		}
		b.now = b.now.Add(time.Hour)
		nc := b.open("10.0.0.1")
		for i, c := range append(served, nc) {
			if c.closed {
				t.Errorf("connection %d closed; the server's own work and the new connection are not the client's to wait on", i)
			}
		}
	})
	t.Run("a body not read to its end is still on its way", func(t *testing.T) {
		b := newTrackerBed(t)
		half, whole, other := b.open("10.0.0.1"), b.open("10.0.0.2"), b.open("10.0.0.2")
		b.request(half, `{"x":1}`, false)
		b.request(whole, `{"x":1}`, true)
		b.request(other, "", false)
		b.now = b.now.Add(stalledAfter)
		b.open("10.0.0.3")
		b.closed(map[*fakeConn]bool{half: true}, map[*fakeConn]string{half: "half", whole: "whole", other: "other"})
	})
	t.Run("an answer not taken for a second", func(t *testing.T) {
		b := newTrackerBed(t)
		unread, idle, busy := b.open("10.0.0.1"), b.open("10.0.0.2"), b.open("10.0.0.2")
		b.request(unread, "", false)
		b.ct.open[unread].writing.Store(b.now.UnixNano()) // a write blocks
		b.request(idle, "", false)
		b.ct.setState(idle, http.StateIdle)
		b.request(busy, "", false)
		b.now = b.now.Add(stalledAfter)
		b.open("10.0.0.3")
		b.closed(map[*fakeConn]bool{unread: true}, map[*fakeConn]string{unread: "unread", idle: "idle", busy: "busy"})
	})
	t.Run("the address with the most goes first", func(t *testing.T) {
		b := newTrackerBed(t)
		older := b.open("10.0.0.1") // alone at its address, the oldest
		b.now = b.now.Add(time.Millisecond)
		many1, many2 := b.open("10.0.0.2"), b.open("10.0.0.2")
		b.now = b.now.Add(stalledAfter)
		b.open("10.0.0.3")
		b.closed(map[*fakeConn]bool{many1: true}, map[*fakeConn]string{older: "older", many1: "many 1", many2: "many 2"})
	})
}

// The busiest address is found without looking at every address, and
// the tracker's counts stay right as connections come and go.
func TestConnTrackerBuckets(t *testing.T) {
	b := newTrackerBed(t)
	b.ct.s.cfg.MaxConns = 1 << 20
	var conns []*fakeConn
	for i := range 50 {
		conns = append(conns, b.open("10.0.1."+strings.Repeat("1", 1+i%3)))
	}
	if b.ct.most != 17 {
		t.Fatalf("most = %d, want 17 (addresses with 17, 17 and 16)", b.ct.most)
	}
	for _, c := range conns {
		b.ct.setState(c, http.StateClosed)
	}
	if b.ct.most != 0 || len(b.ct.buckets) != 0 || len(b.ct.busy) != 0 {
		t.Fatalf("after every connection closed: most %d, buckets %v, busy %d", b.ct.most, b.ct.buckets, len(b.ct.busy))
	}
}
