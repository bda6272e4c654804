package server

import (
	"context"
	"fmt"
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

// answer has c's handler write its answer; blocked says the write does
// not return (the client does not read).
func (b *trackerBed) answer(c *fakeConn, blocked bool) {
	ci := b.ct.open[c]
	b.ct.startAnswer(ci, b.now)
	if blocked {
		ci.writing.Store(b.now.UnixNano())
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
	t.Run("the longest idle before one stalled a few seconds", func(t *testing.T) {
		b := newTrackerBed(t)
		slow, idle, busy := b.open("10.0.0.1"), b.open("10.0.0.2"), b.open("10.0.0.3")
		b.request(idle, "", false)
		b.ct.setState(idle, http.StateIdle)
		b.request(busy, "{}", true)
		b.now = b.now.Add(clearlyStalledAfter - time.Millisecond)
		nc := b.open("10.0.0.4")
		b.closed(map[*fakeConn]bool{idle: true}, map[*fakeConn]string{slow: "slow", idle: "idle", busy: "busy", nc: "new"})
	})
	t.Run("one clearly stalled before the longest idle", func(t *testing.T) {
		b := newTrackerBed(t)
		slow, unread, idle := b.open("10.0.0.1"), b.open("10.0.0.2"), b.open("10.0.0.3")
		b.request(unread, "", false)
		b.answer(unread, true)
		b.request(idle, "", false)
		b.ct.setState(idle, http.StateIdle)
		b.now = b.now.Add(clearlyStalledAfter)
		names := map[*fakeConn]string{slow: "slow", unread: "unread", idle: "idle"}
		b.open("10.0.0.4")
		b.closed(map[*fakeConn]bool{slow: true}, names)
		b.open("10.0.0.4")
		b.closed(map[*fakeConn]bool{slow: true, unread: true}, names)
	})
	t.Run("then the one that waited on its client the longest, a second or more", func(t *testing.T) {
		b := newTrackerBed(t)
		slow1 := b.open("10.0.0.1")
		b.now = b.now.Add(time.Millisecond)
		slow2, busy := b.open("10.0.0.2"), b.open("10.0.0.3")
		b.request(busy, "{}", true)
		b.now = b.now.Add(stalledAfter)
		nc := b.open("10.0.0.4")
		b.closed(map[*fakeConn]bool{slow1: true}, map[*fakeConn]string{slow1: "slow 1", slow2: "slow 2", busy: "busy", nc: "new"})
	})
	t.Run("an answer not taken for a second before a request just arriving", func(t *testing.T) {
		b := newTrackerBed(t)
		unread, served := b.open("10.0.0.1"), b.open("10.0.0.2")
		b.request(unread, "", false)
		b.answer(unread, true) // a write blocks
		b.request(served, "", false)
		b.now = b.now.Add(stalledAfter - time.Millisecond)
		young := b.open("10.0.0.3")
		b.now = b.now.Add(time.Millisecond)
		nc := b.open("10.0.0.4")
		b.closed(map[*fakeConn]bool{unread: true}, map[*fakeConn]string{unread: "unread", served: "served", young: "young", nc: "new"})
	})
	t.Run("an answer written without blocking is not waited on", func(t *testing.T) {
		b := newTrackerBed(t)
		streaming, served := b.open("10.0.0.1"), b.open("10.0.0.2")
		b.request(streaming, "", false)
		b.answer(streaming, false)
		b.request(served, "", false)
		b.now = b.now.Add(time.Minute)
		young := b.open("10.0.0.3")
		nc := b.open("10.0.0.4")
		b.closed(map[*fakeConn]bool{young: true}, map[*fakeConn]string{streaming: "streaming", served: "served", young: "young", nc: "new"})
	})
	t.Run("with none stalled, the request arriving the longest, not the new one", func(t *testing.T) {
		b := newTrackerBed(t)
		young1 := b.open("10.0.0.1")
		b.now = b.now.Add(time.Millisecond)
		young2, busy := b.open("10.0.0.1"), b.open("10.0.0.2")
		b.request(busy, "", false)
		nc := b.open("10.0.0.1")
		b.closed(map[*fakeConn]bool{young1: true}, map[*fakeConn]string{young1: "young 1", young2: "young 2", busy: "busy", nc: "new"})
	})
	t.Run("never for the server's own work, nor the new one itself: it is let in", func(t *testing.T) {
		b := newTrackerBed(t)
		var served []*fakeConn
		for range 3 {
			c := b.open("10.0.0.1")  // as behind a proxy: one address
			b.request(c, "{}", true) // arrived, being served
			served = append(served, c)
		}
		b.now = b.now.Add(time.Hour)
		nc := b.open("10.0.0.1")
		for i, c := range append(served, nc) {
			if c.closed {
				t.Errorf("connection %d closed", i)
			}
		}
	})
	t.Run("a body not read to its end is still arriving", func(t *testing.T) {
		b := newTrackerBed(t)
		whole, half, other := b.open("10.0.0.1"), b.open("10.0.0.1"), b.open("10.0.0.2")
		b.request(whole, `{"x":1}`, true)
		b.request(half, `{"x":1}`, false)
		b.request(other, "", false)
		b.now = b.now.Add(stalledAfter)
		b.open("10.0.0.3")
		b.closed(map[*fakeConn]bool{half: true}, map[*fakeConn]string{whole: "whole", half: "half", other: "other"})
	})
}

// The waiting list follows each connection's request and answer, and is
// empty once every connection is idle or gone.
func TestConnTrackerWaitingList(t *testing.T) {
	b := newTrackerBed(t)
	b.ct.s.cfg.MaxConns = 1 << 20
	var conns []*fakeConn
	for range 10 {
		conns = append(conns, b.open("10.0.1.1"))
	}
	if n := b.ct.waiting.n; n != 10 {
		t.Fatalf("%d waiting after 10 accepts, want 10", n)
	}
	for i, c := range conns {
		b.request(c, "", false) // arrived: the server's work
		if i%2 == 0 {
			b.answer(c, true)
		}
	}
	if n := b.ct.waiting.n; n != 5 {
		t.Fatalf("%d waiting with 5 answers being written, want 5", n)
	}
	for i, c := range conns {
		if i%3 == 0 {
			b.ct.setState(c, http.StateIdle)
		} else {
			b.ct.setState(c, http.StateClosed)
		}
	}
	if n := b.ct.waiting.n; n != 0 || b.ct.waiting.head != nil {
		t.Fatalf("%d waiting (head %v) with every connection idle or closed", n, b.ct.waiting.head)
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

// A connection closed for a new one stays off the waiting list, even if
// its handler writes after; one hijacked (a parked long-poll) too; and an
// answer written before the request's body was read to its end keeps its
// connection on the list once the body is in.
func TestConnTrackerWaitingEdges(t *testing.T) {
	t.Run("cut", func(t *testing.T) {
		b := newTrackerBed(t)
		slow := b.open("10.0.0.1")
		b.open("10.0.0.2")
		b.open("10.0.0.3")
		b.now = b.now.Add(clearlyStalledAfter)
		b.open("10.0.0.4")
		if !slow.closed {
			t.Fatal("the stalled connection was not cut")
		}
		b.ct.startAnswer(b.ct.open[slow], b.now) // its handler writes after all
		if ci := b.ct.open[slow]; ci.waits {
			t.Error("a connection cut is back on the waiting list")
		}
	})
	t.Run("hijacked", func(t *testing.T) {
		b := newTrackerBed(t)
		c := b.open("10.0.0.1")
		b.request(c, "", false)
		ci := b.ct.open[c]
		b.ct.setState(c, http.StateHijacked)
		b.ct.startAnswer(ci, b.now)
		if b.ct.waiting.n != 0 {
			t.Errorf("%d waiting after the only connection was hijacked", b.ct.waiting.n)
		}
	})
	t.Run("answer before the body's end", func(t *testing.T) {
		b := newTrackerBed(t)
		c := b.open("10.0.0.1")
		b.request(c, `{"x":1}`, false)
		ci := b.ct.open[c]
		b.ct.startAnswer(ci, b.now) // writes before reading its body
		b.ct.mu.Lock()
		ci.reading = false // the body's end
		b.ct.sync(ci)
		b.ct.mu.Unlock()
		if !ci.waits {
			t.Error("an answer under way, written before the body's end, is off the waiting list")
		}
	})
}

// chunkRecorder is a ResponseWriter that records the size of each write
// and the connection's writing time then.
type chunkRecorder struct {
	http.ResponseWriter
	ci     *connInfo
	sizes  []int
	stamps []int64
}

func (r *chunkRecorder) Write(b []byte) (int, error) {
	r.sizes = append(r.sizes, len(b))
	r.stamps = append(r.stamps, r.ci.writing.Load())
	return len(b), nil
}

// A large answer goes out in pieces, each timed from its own start: a
// client that takes it steadily, however slowly, is not one that does not
// read it.
func TestLargeAnswerTimedByPiece(t *testing.T) {
	b := newTrackerBed(t)
	c := b.open("10.0.0.1")
	b.request(c, "", false)
	ci := b.ct.open[c]
	rec := &chunkRecorder{ResponseWriter: httptest.NewRecorder(), ci: ci}
	sw := &statusWriter{ResponseWriter: rec, ct: b.ct, ci: ci}
	n, err := sw.Write(make([]byte, 200<<10))
	if err != nil || n != 200<<10 {
		t.Fatalf("Write: %d, %v", n, err)
	}
	if len(rec.sizes) != 4 || rec.sizes[0] != writeChunk || rec.sizes[3] != 200<<10-3*writeChunk {
		t.Errorf("a 200 kB answer written as %v; want pieces of %d", rec.sizes, writeChunk)
	}
	for i, ts := range rec.stamps {
		if ts == 0 {
			t.Errorf("piece %d written with no writing time", i)
		}
	}
	if ci.writing.Load() != 0 || !ci.waits {
		t.Errorf("after the write: writing %d, waiting %v; want 0, and the answer still waited on", ci.writing.Load(), ci.waits)
	}
}

// Connections whose clients take their answers slowly but steadily go to
// the tail of the waiting list as their writes return, so that a stalled
// connection behind more of them than makeRoom looks at is still found
// and closed for a new connection.
func TestSteadyDownloadsDoNotHideAStalledOne(t *testing.T) {
	b := newTrackerBed(t)
	b.ct.s.cfg.MaxConns = victimConns + 1
	var steady []*fakeConn
	for range victimConns {
		c := b.open("10.0.0.1")
		b.request(c, "", false)
		b.answer(c, true)
		steady = append(steady, c)
	}
	stalled := b.open("10.0.0.2")
	b.request(stalled, "", false)
	b.answer(stalled, true)
	for range 10 { // ten seconds of downloads: a piece a second each
		b.now = b.now.Add(time.Second)
		for _, c := range steady {
			ci := b.ct.open[c]
			b.ct.progressed(ci, b.now)
			ci.writing.Store(b.now.UnixNano()) // the next piece's write
		}
	}
	nc := b.open("10.0.0.3")
	names := map[*fakeConn]string{stalled: "stalled", nc: "new"}
	for i, c := range steady {
		names[c] = fmt.Sprintf("steady %d", i)
	}
	b.closed(map[*fakeConn]bool{stalled: true}, names)
}

// An answer written in several writes, a second or more apart, moves its
// connection to the tail of the waiting list as they return; writes
// closer together do not take the tracker's lock again.
func TestAnswerWritesMoveTheConnectionBack(t *testing.T) {
	b := newTrackerBed(t)
	b.ct.s.cfg.MaxConns = 1 << 20
	slow, other := b.open("10.0.0.1"), b.open("10.0.0.2")
	b.request(slow, "", false)
	b.request(other, "", false)
	ci := b.ct.open[slow]
	sw := &statusWriter{ResponseWriter: httptest.NewRecorder(), ct: b.ct, ci: ci}
	sw.Write([]byte("first"))
	b.answer(other, true)
	if b.ct.waiting.head != ci {
		t.Fatalf("the first answer started is not at the head of the waiting list")
	}
	sw.Write([]byte("soon after"))
	if b.ct.waiting.head != ci {
		t.Errorf("a write right after the first moved its connection back")
	}
	sw.moved = sw.moved.Add(-stalledAfter) // as if the first was a second ago
	sw.Write([]byte("a second later"))
	if b.ct.waiting.head != b.ct.open[other] || b.ct.waiting.tail != ci {
		t.Errorf("a write a second after the first left its connection where it was")
	}
	if !ci.waits || b.ct.waiting.n != 2 {
		t.Errorf("after the writes: waiting %v, %d on the list; want the answer still waited on, 2", ci.waits, b.ct.waiting.n)
	}
}
