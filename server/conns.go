package server

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/svcreg/svcreg/internal/clientaddr"
)

// connTracker bounds the client connections the http.Server holds between
// requests, so that one tenant cannot hold the descriptors of all: idle
// keep-alive connections are capped globally and per tenant (the tenant of
// the connection's last authenticated request), an idle connection that
// never authenticated is closed after a short timeout, and a new connection
// past MaxConns closes the longest-idle one to make room. Over the cap, the
// longest-idle connection goes first. It sees connections through the
// http.Server's ConnContext and ConnState hooks (see Server.Serve).
//
// A connection still reading its request (its headers, or its body) is
// not idle, but it is not work the server took on either: past MaxConns
// with no idle connection to close, or when one has been reading for
// longer than slowReading, a new connection takes the place of a reading
// one, the oldest of the client address (clientaddr.Key) with the most.
// So connections that send their requests slowly, however many one
// address opens, cannot take every descriptor: they close each other
// first, and a client whose requests arrive at once still gets in.
//
// The connections the poller keeps after answering their long-polls (see
// poller.keep) are idle connections of their tenant too, on the same
// lists: evicting one has the poller close it. And a connection the poller
// hands back to the http.Server starts as an idle connection of its
// tenant, until its next request.
type connTracker struct {
	s *Server

	mu        sync.Mutex
	installed bool                   // its hooks see the http.Server's connections
	open      map[net.Conn]*connInfo // held by the http.Server
	idle      connList               // idle, longest idle first
	byTenant  map[string]*connList   // idle, by tenant; "" for unauthenticated
	back      map[net.Conn]string    // handed back by the poller, not yet seen again: their tenants
	reading   map[string]*connList   // reading their request, by client address, oldest first
	seq       uint64                 // of the connections that started reading
}

// slowReading is how long a request may take to arrive (headers and body)
// before its connection is closed, in preference to an idle one, for a
// new connection past MaxConns.
const slowReading = time.Second

// connInfo is the tracker's record of a connection.
type connInfo struct {
	conn   net.Conn
	tenant string // of its last authenticated request
	idle   bool
	back   bool        // handed back by the poller: idle from StateNew
	evict  func()      // closes a connection the poller keeps; nil for the http.Server's
	timer  *time.Timer // closes it if it stays idle unauthenticated
	all    connLinks   // in connTracker.idle
	own    connLinks   // in its tenant's list

	addr     string    // the client's address, as clientaddr.Key has it
	reading  bool      // its request has not all arrived
	readFrom time.Time // since when
	seq      uint64    // the order it started reading in
	rd       connLinks // in connTracker.reading[addr]
}

type connLinks struct{ prev, next *connInfo }

// connList is a list of idle connections through one of their links.
type connList struct {
	head, tail *connInfo
	n          int
	links      func(*connInfo) *connLinks
}

func allLinks(c *connInfo) *connLinks  { return &c.all }
func ownLinks(c *connInfo) *connLinks  { return &c.own }
func readLinks(c *connInfo) *connLinks { return &c.rd }

func (l *connList) push(c *connInfo) {
	lk := l.links(c)
	lk.prev, lk.next = l.tail, nil
	if l.tail != nil {
		l.links(l.tail).next = c
	} else {
		l.head = c
	}
	l.tail = c
	l.n++
}

func (l *connList) remove(c *connInfo) {
	lk := l.links(c)
	if lk.prev != nil {
		l.links(lk.prev).next = lk.next
	} else {
		l.head = lk.next
	}
	if lk.next != nil {
		l.links(lk.next).prev = lk.prev
	} else {
		l.tail = lk.prev
	}
	lk.prev, lk.next = nil, nil
	l.n--
}

func newConnTracker(s *Server) *connTracker {
	return &connTracker{
		s:        s,
		open:     map[net.Conn]*connInfo{},
		idle:     connList{links: allLinks},
		byTenant: map[string]*connList{},
		back:     map[net.Conn]string{},
		reading:  map[string]*connList{},
	}
}

// install sets hs's connection hooks, keeping any it has.
func (ct *connTracker) install(hs *http.Server) {
	ct.mu.Lock()
	ct.installed = true
	ct.mu.Unlock()
	connContext, connState := hs.ConnContext, hs.ConnState
	hs.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if connContext != nil {
			ctx = connContext(ctx, c)
		}
		return withConn(ctx, ct.add(c))
	}
	hs.ConnState = func(c net.Conn, state http.ConnState) {
		ct.setState(c, state)
		if connState != nil {
			connState(c, state)
		}
	}
}

func (ct *connTracker) add(c net.Conn) *connInfo {
	ci := &connInfo{conn: c, addr: clientaddr.Key(c.RemoteAddr().String())}
	ct.mu.Lock()
	if tenant, ok := ct.back[c]; ok {
		delete(ct.back, c)
		ci.tenant, ci.back = tenant, true
	}
	ct.open[c] = ci
	ct.s.metrics.connsOpen.Set(float64(len(ct.open)))
	ct.mu.Unlock()
	return ci
}

func (ct *connTracker) setState(c net.Conn, state http.ConnState) {
	parked := 0
	if state == http.StateNew {
		parked = ct.s.poller.parkedCount()
	}
	ct.mu.Lock()
	defer ct.mu.Unlock()
	ci := ct.open[c]
	if ci == nil {
		return
	}
	switch state {
	case http.StateNew:
		if ci.back {
			// Waiting for its next request, as a kept one does; it was
			// counted among the parked.
			ct.setIdle(ci)
			return
		}
		ct.startReading(ci)
		if len(ct.open)+parked > ct.s.cfg.MaxConns {
			ct.makeRoom()
		}
	case http.StateActive:
		// Its headers are in; its body, if any, may still be on its
		// way (requestRead tells). A first request has been reading
		// since StateNew.
		ct.unidle(ci)
		ct.startReading(ci)
	case http.StateIdle:
		ct.doneReading(ci)
		ct.setIdle(ci)
	case http.StateHijacked, http.StateClosed:
		ct.doneReading(ci)
		ct.unidle(ci)
		delete(ct.open, c)
		ct.s.metrics.connsOpen.Set(float64(len(ct.open)))
	}
}

// makeRoom closes a connection for a new one past MaxConns: one whose
// request has been arriving for longer than slowReading, else the longest
// idle, else one still reading (the new one itself, if it is the only
// one).
func (ct *connTracker) makeRoom() {
	v := ct.readingVictim()
	switch {
	case v != nil && time.Since(v.readFrom) >= slowReading:
		ct.cut(v)
	case ct.idle.head != nil:
		ct.evict(ct.idle.head, "conns")
	case v != nil:
		ct.cut(v)
	}
}

// readingVictim is the reading connection a new one would replace: the
// oldest of the address with the most, of equally many the one reading
// longest; nil if none reads.
func (ct *connTracker) readingVictim() *connInfo {
	var v *connInfo
	most := 0
	for _, l := range ct.reading {
		if l.n > most || l.n == most && l.head.seq < v.seq {
			v, most = l.head, l.n
		}
	}
	return v
}

// cut closes a connection that is still reading its request.
func (ct *connTracker) cut(ci *connInfo) {
	ct.doneReading(ci)
	ct.s.metrics.connsClosed.WithLabelValues("reading").Inc()
	ci.conn.Close()
}

// startReading puts ci on its address's reading list.
func (ct *connTracker) startReading(ci *connInfo) {
	if ci.reading {
		return
	}
	ci.reading, ci.readFrom = true, time.Now()
	ct.seq++
	ci.seq = ct.seq
	l := ct.reading[ci.addr]
	if l == nil {
		l = &connList{links: readLinks}
		ct.reading[ci.addr] = l
	}
	l.push(ci)
}

// doneReading takes ci off its address's reading list.
func (ct *connTracker) doneReading(ci *connInfo) {
	if !ci.reading {
		return
	}
	ci.reading = false
	l := ct.reading[ci.addr]
	l.remove(ci)
	if l.n == 0 {
		delete(ct.reading, ci.addr)
	}
}

// requestRead records that the request on ctx's connection has arrived:
// at once for a request without a body, else when its body has been read
// to its end (r.Body is wrapped to tell).
func (ct *connTracker) requestRead(r *http.Request) {
	ci := connOf(r.Context())
	if ci == nil {
		return
	}
	if r.Body == nil || r.Body == http.NoBody {
		ct.mu.Lock()
		ct.doneReading(ci)
		ct.mu.Unlock()
		return
	}
	r.Body = &bodyWatch{ReadCloser: r.Body, ct: ct, ci: ci}
}

// bodyWatch is a request body that tells the tracker when it was read to
// its end.
type bodyWatch struct {
	io.ReadCloser
	ct   *connTracker
	ci   *connInfo
	done bool
}

func (b *bodyWatch) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		b.ct.mu.Lock()
		b.ct.doneReading(b.ci)
		b.ct.mu.Unlock()
	}
	return n, err
}

// setIdle puts ci on the idle lists and applies the caps.
func (ct *connTracker) setIdle(ci *connInfo) {
	if ci.idle {
		return
	}
	ci.idle = true
	ct.idle.push(ci)
	own := ct.byTenant[ci.tenant]
	if own == nil {
		own = &connList{links: ownLinks}
		ct.byTenant[ci.tenant] = own
	}
	own.push(ci)
	ct.s.metrics.connsIdle.Inc()
	if ci.tenant == "" {
		ci.timer = time.AfterFunc(ct.s.cfg.UnauthIdleTimeout, func() {
			ct.mu.Lock()
			defer ct.mu.Unlock()
			if ci.idle && ci.tenant == "" {
				ct.evict(ci, "unauthenticated")
			}
		})
	} else if own.n > ct.s.cfg.MaxIdleConnsPerTenant {
		ct.evict(own.head, "tenant")
	}
	if ct.idle.n > ct.s.cfg.MaxIdleConns {
		ct.evict(ct.idle.head, "idle")
	}
}

// unidle takes ci off the idle lists.
func (ct *connTracker) unidle(ci *connInfo) {
	if !ci.idle {
		return
	}
	ci.idle = false
	if ci.timer != nil {
		ci.timer.Stop()
		ci.timer = nil
	}
	ct.idle.remove(ci)
	own := ct.byTenant[ci.tenant]
	own.remove(ci)
	if own.n == 0 {
		delete(ct.byTenant, ci.tenant)
	}
	ct.s.metrics.connsIdle.Dec()
}

// evict closes an idle connection; the http.Server then forgets it, or the
// poller, for one it keeps.
func (ct *connTracker) evict(ci *connInfo, reason string) {
	ct.unidle(ci)
	ct.s.metrics.connsClosed.WithLabelValues(reason).Inc()
	if ci.evict != nil {
		ci.evict()
		return
	}
	ci.conn.Close()
}

// newKeptInfo is the record of a connection the poller keeps for tenant;
// evict closes it (called with the tracker's lock held: it must not call
// the tracker).
func newKeptInfo(c net.Conn, tenant string, evict func()) *connInfo {
	return &connInfo{conn: c, tenant: tenant, evict: evict}
}

// listKept puts a connection the poller keeps on the idle lists, idle from
// now, and applies the caps; unless stillKept reports that the poller let
// it go meanwhile (its unkept then came first, or comes after this).
func (ct *connTracker) listKept(ci *connInfo, stillKept func() bool) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	if stillKept() {
		ct.setIdle(ci)
	}
}

// unkept forgets a kept connection the poller no longer keeps.
func (ct *connTracker) unkept(ci *connInfo) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	ct.unidle(ci)
}

// handedBack records the tenants of the connections of polls the poller
// hands back to the http.Server, for add: one lock for a fan-out's.
func (ct *connTracker) handedBack(polls []*parkedPoll) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	if !ct.installed {
		return
	}
	for _, p := range polls {
		ct.back[p.conn] = p.tenant
	}
}

// dropBack forgets connections handed back that the http.Server will not
// see (its listener closed).
func (ct *connTracker) dropBack(conns []net.Conn) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	for _, c := range conns {
		delete(ct.back, c)
	}
}

// authenticated records the tenant of a request on its connection.
func (ct *connTracker) authenticated(ctx context.Context, tenant string) {
	ci := connOf(ctx)
	if ci == nil {
		return
	}
	ct.mu.Lock()
	ci.tenant = tenant
	ct.mu.Unlock()
}
