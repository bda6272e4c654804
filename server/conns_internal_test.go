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
	addr    net.Addr
	closed  bool
	block   chan struct{} // if not nil, Close tells closing and waits for it
	closing chan struct{}
}

func (c *fakeConn) RemoteAddr() net.Addr { return c.addr }

func (c *fakeConn) Close() error {
	if c.block != nil {
		close(c.closing)
		<-c.block
	}
	c.closed = true
	return nil
}

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

// Which connection a new one past MaxConns takes the place of. Closes
// happen once the tracker lets its lock go, before setState returns.
func TestConnTrackerMakesRoom(t *testing.T) {
	t.Run("waited a second on its client, of an address with several, before an idle one", func(t *testing.T) {
		b := newTrackerBed(t)
		slow1, slow2, idle := b.open("10.0.0.1"), b.open("10.0.0.1"), b.open("10.0.0.2")
		b.request(idle, "", false)
		b.ct.setState(idle, http.StateIdle)
		b.now = b.now.Add(stalledAfter)
		nc := b.open("10.0.0.3")
		b.closed(map[*fakeConn]bool{slow1: true}, map[*fakeConn]string{slow1: "slow 1", slow2: "slow 2", idle: "idle", nc: "new"})
	})
	t.Run("one slow download is not cut while there is an idle connection", func(t *testing.T) {
		b := newTrackerBed(t)
		download, idle, busy := b.open("10.0.0.1"), b.open("10.0.0.2"), b.open("10.0.0.3")
		b.request(download, "", false)
		b.ct.open[download].writing.Store(b.now.UnixNano()) // a write blocks
		b.request(idle, "", false)
		b.ct.setState(idle, http.StateIdle)
		b.request(busy, "", false)
		b.now = b.now.Add(time.Minute)
		nc := b.open("10.0.0.4")
		b.closed(map[*fakeConn]bool{idle: true}, map[*fakeConn]string{download: "download", idle: "idle", busy: "busy", nc: "new"})
	})
	t.Run("an idle connection before young requests on their way; then the oldest of them", func(t *testing.T) {
		b := newTrackerBed(t)
		young1, young2, idle := b.open("10.0.0.1"), b.open("10.0.0.1"), b.open("10.0.0.2")
		b.request(idle, "", false)
		b.ct.setState(idle, http.StateIdle)
		b.now = b.now.Add(stalledAfter / 2)
		nc := b.open("10.0.0.3")
		names := map[*fakeConn]string{young1: "young 1", young2: "young 2", idle: "idle", nc: "new"}
		b.closed(map[*fakeConn]bool{idle: true}, names)
		nc2 := b.open("10.0.0.4")
		names[nc2] = "new 2"
		b.closed(map[*fakeConn]bool{idle: true, young1: true}, names)
	})
	t.Run("a new connection of another address is let in past MaxConns, not for the server's own work", func(t *testing.T) {
		b := newTrackerBed(t)
		var served []*fakeConn
		for _, ip := range []string{"10.0.0.1", "10.0.0.1", "10.0.0.2"} {
			c := b.open(ip)
			b.request(c, "{}", true) // arrived, being served
			served = append(served, c)
		}
		b.now = b.now.Add(time.Hour)
		nc := b.open("10.0.0.3")
		for i, c := range append(served, nc) {
			if c.closed {
				t.Errorf("connection %d closed", i)
			}
		}
	})
	t.Run("a new connection of the busiest address is turned away", func(t *testing.T) {
		b := newTrackerBed(t)
		var served []*fakeConn
		for range 3 {
			c := b.open("10.0.0.1")
			b.request(c, "{}", true)
			served = append(served, c)
		}
		nc := b.open("10.0.0.1")
		if !nc.closed {
			t.Error("the busiest address's new connection past MaxConns was let in")
		}
		for i, c := range served {
			if c.closed {
				t.Errorf("connection %d, being served, closed", i)
			}
		}
	})
	t.Run("a body not read to its end is still on its way", func(t *testing.T) {
		b := newTrackerBed(t)
		whole, half1, half2 := b.open("10.0.0.1"), b.open("10.0.0.1"), b.open("10.0.0.1")
		b.request(whole, `{"x":1}`, true)
		b.request(half1, `{"x":1}`, false)
		b.request(half2, `{"x":1}`, false)
		b.now = b.now.Add(stalledAfter)
		b.open("10.0.0.3")
		b.closed(map[*fakeConn]bool{half1: true}, map[*fakeConn]string{whole: "whole", half1: "half 1", half2: "half 2"})
	})
	t.Run("an answer not taken for a second", func(t *testing.T) {
		b := newTrackerBed(t)
		served, unread, idle := b.open("10.0.0.1"), b.open("10.0.0.1"), b.open("10.0.0.2")
		b.request(served, "", false)
		b.request(unread, "", false)
		b.ct.open[unread].writing.Store(b.now.UnixNano()) // a write blocks
		b.request(idle, "", false)
		b.ct.setState(idle, http.StateIdle)
		b.now = b.now.Add(stalledAfter)
		b.open("10.0.0.3")
		b.closed(map[*fakeConn]bool{unread: true}, map[*fakeConn]string{served: "served", unread: "unread", idle: "idle"})
	})
	t.Run("the address with the most goes first; of equally busy ones, the oldest connection", func(t *testing.T) {
		b := newTrackerBed(t)
		b.ct.s.cfg.MaxConns = 5
		lone := b.open("10.0.0.1") // the oldest, alone at its address
		a1, a2, c1, c2 := b.open("10.0.0.2"), b.open("10.0.0.2"), b.open("10.0.0.3"), b.open("10.0.0.3")
		b.now = b.now.Add(stalledAfter)
		names := map[*fakeConn]string{lone: "lone", a1: "a1", a2: "a2", c1: "c1", c2: "c2"}
		b.open("10.0.0.4")
		b.closed(map[*fakeConn]bool{a1: true}, names)
		b.open("10.0.0.4")
		b.closed(map[*fakeConn]bool{a1: true, c1: true}, names)
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

// A close can wait on its client (a TLS close_notify to a client that does
// not read): the tracker closes after letting its lock go, so that the
// other connections' hooks, the accept loop's among them, do not wait.
func TestConnTrackerClosesOutsideItsLock(t *testing.T) {
	b := newTrackerBed(t)
	stuck := &fakeConn{addr: &net.TCPAddr{IP: net.ParseIP("10.0.0.1"), Port: 1}, block: make(chan struct{}), closing: make(chan struct{})}
	b.ct.add(stuck)
	b.ct.setState(stuck, http.StateNew)
	b.request(stuck, "", false)
	b.ct.setState(stuck, http.StateIdle) // the longest idle
	b.open("10.0.0.2")
	b.open("10.0.0.3")
	evicted := make(chan struct{})
	go func() {
		b.open("10.0.0.4") // past MaxConns: closes the idle one, which blocks
		close(evicted)
	}()
	<-stuck.closing // the close under way
	other := &fakeConn{addr: &net.TCPAddr{IP: net.ParseIP("10.0.0.5"), Port: 1}}
	added := make(chan struct{})
	go func() {
		b.ct.add(other) // takes the tracker's lock
		close(added)
	}()
	select {
	case <-added:
	case <-time.After(10 * time.Second):
		t.Error("another connection's hook waited for a close that waits on its client")
	}
	close(stuck.block)
	<-evicted
	<-added
	if !stuck.closed {
		t.Error("the idle connection was not closed")
	}
}
