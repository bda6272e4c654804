package server

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// connTracker bounds the client connections the http.Server holds between
// requests, so that one tenant cannot hold the descriptors of all: idle
// keep-alive connections are capped globally and per tenant (the tenant of
// the connection's last authenticated request), an idle connection that
// never authenticated is closed after a short timeout, and a new connection
// past MaxConns closes another to make room (below). Over an idle cap, the
// longest-idle connection goes first. It sees connections through the
// http.Server's ConnContext and ConnState hooks (see Server.Serve).
//
// A connection waits on its client while its request (headers, or body)
// has not all arrived, and from the first write of its answer until it is
// idle again; not while the server works on its request. Past MaxConns, a
// new connection (makeRoom) takes the place of the connection that has
// waited on its client the longest (for an answer, since a write of it
// last returned, give or take stalledAfter), if it has been stalled for
// clearlyStalledAfter (its request still arriving, a write of its answer
// blocked, or its finished answer not flushed); else of the longest-idle
// connection; else of the longest waiting, if stalled for stalledAfter;
// else of the one whose request has been arriving the longest; else it is
// let in, over MaxConns, into the descriptors kept in reserve. So clients
// that send their requests slowly or do not read their answers, however
// many connections they open, cannot take every descriptor, nor close the
// idle connections of clients that work for long, and a new connection is
// never turned away for the server's own work (behind a proxy, every
// client is one address). Closes run after the lock is let go (unlock).
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
	waiting   connList               // waiting on their client, longest waiting first
	now       func() time.Time       // nil: time.Now
	closes    []func()               // to run once the lock is let go (unlock)
}

// stalledAfter is how long a connection may wait on its client (for its
// request to arrive, or its answer to be taken) before a new connection
// past MaxConns takes its place in preference to one whose request is
// just arriving; clearlyStalledAfter, before an idle one (a keep-alive
// connection of a client that works), yet after a slow link's download
// has had its time.
const (
	stalledAfter        = time.Second
	clearlyStalledAfter = 5 * time.Second
)

// victimConns bounds the search for a connection to close: the longest
// waiting ones, under the tracker's lock.
const victimConns = 64

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

	reading   bool      // its request has not all arrived
	answering bool      // its answer is being written
	waits     bool      // reading or answering: on connTracker.waiting
	gone      bool      // cut for a new connection, hijacked or closed: off the waiting list for good
	since     time.Time // on connTracker.waiting since
	wl        connLinks // in connTracker.waiting
	// writing is when a write to the client began that has not returned,
	// or the handler returned and its answer is not flushed yet (Unix
	// ns); 0 if neither.
	writing atomic.Int64
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
func waitLinks(c *connInfo) *connLinks { return &c.wl }

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
		waiting:  connList{links: waitLinks},
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
	ci := &connInfo{conn: c}
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
	ci := ct.open[c]
	if ci == nil {
		ct.mu.Unlock()
		return
	}
	defer ct.unlock()
	switch state {
	case http.StateNew:
		if ci.back {
			// Waiting for its next request, as a kept one does; it was
			// counted among the parked.
			ct.setIdle(ci)
			return
		}
		ci.reading = true
		ct.sync(ci)
		if len(ct.open)+parked > ct.s.cfg.MaxConns {
			ct.makeRoom(ci)
		}
	case http.StateActive:
		// Its headers are in; its body, if any, may still be on its
		// way (requestRead tells). A first request has been reading
		// since StateNew.
		ct.unidle(ci)
		ci.reading = true
		ct.sync(ci)
	case http.StateIdle:
		ct.done(ci)
		ct.setIdle(ci)
	case http.StateHijacked, http.StateClosed:
		ci.gone = true // a connection handed back gets a record of its own
		ct.done(ci)
		ct.unidle(ci)
		delete(ct.open, c)
		ct.s.metrics.connsOpen.Set(float64(len(ct.open)))
	}
}

func (ct *connTracker) clock() time.Time {
	if ct.now != nil {
		return ct.now()
	}
	return time.Now()
}

// unlock lets the tracker's lock go, then closes the connections chosen
// to close meanwhile: a close can wait on its client (a TLS close_notify,
// for up to 5 s when the client does not read), and must not hold up the
// other connections' hooks, the accept loop's among them.
func (ct *connTracker) unlock() {
	closes := ct.closes
	ct.closes = nil
	ct.mu.Unlock()
	for _, close := range closes {
		close()
	}
}

// closeNow closes c without a TLS close_notify, which would wait for room
// in a send buffer that a client not reading keeps full.
func closeNow(c net.Conn) { netConn(c).Close() }

// makeRoom closes a connection for the new connection nc past MaxConns,
// or none to let nc in over MaxConns (see connTracker).
func (ct *connTracker) makeRoom(nc *connInfo) {
	now := ct.clock()
	stalled := func(after time.Duration) func(*connInfo) bool {
		return func(ci *connInfo) bool {
			if ci.reading {
				return now.Sub(ci.since) >= after
			}
			w := ci.writing.Load()
			return w != 0 && now.UnixNano()-w >= int64(after)
		}
	}
	if v := ct.longestWaiting(nc, stalled(clearlyStalledAfter)); v != nil {
		ct.cut(v)
		return
	}
	if ct.idle.head != nil {
		ct.evict(ct.idle.head, "conns")
		return
	}
	if v := ct.longestWaiting(nc, stalled(stalledAfter)); v != nil {
		ct.cut(v)
		return
	}
	if v := ct.longestWaiting(nc, func(ci *connInfo) bool { return ci.reading }); v != nil {
		ct.cut(v)
	}
}

// longestWaiting is the connection but nc that has waited on its client
// the longest of those that are, among the victimConns that have waited
// the longest; nil if none is.
func (ct *connTracker) longestWaiting(nc *connInfo, is func(*connInfo) bool) *connInfo {
	i := 0
	for ci := ct.waiting.head; ci != nil && i < victimConns; ci, i = ci.wl.next, i+1 {
		if ci != nc && is(ci) {
			return ci
		}
	}
	return nil
}

// cut takes a connection that waits on its client off the tracker's lists
// and closes it once the lock is let go.
func (ct *connTracker) cut(ci *connInfo) {
	ci.gone = true
	ct.done(ci)
	ct.s.metrics.connsClosed.WithLabelValues("client").Inc()
	ct.closes = append(ct.closes, func() { closeNow(ci.conn) })
}

// sync puts ci on the waiting list, or takes it off, as its request or
// its answer say.
func (ct *connTracker) sync(ci *connInfo) { ct.syncAt(ci, time.Time{}) }

// syncAt is sync with the time now, when the caller has read it (zero:
// the tracker reads its clock if it must).
func (ct *connTracker) syncAt(ci *connInfo, at time.Time) {
	switch w := (ci.reading || ci.answering) && !ci.gone; {
	case w && !ci.waits:
		if at.IsZero() {
			at = ct.clock()
		}
		ci.waits, ci.since = true, at
		ct.waiting.push(ci)
	case !w && ci.waits:
		ci.waits = false
		ct.waiting.remove(ci)
	}
}

// progressed records that a write of the answer on ci's connection
// returned at at: the client takes it. The connection goes to the tail of
// the waiting list, so that connections whose clients take their answers,
// however slowly, do not stay at its head, where makeRoom looks (at
// victimConns of them), and hide the stalled ones behind them. Its
// writes are timed by writing, not since; a connection whose request is
// still arriving stays where it is.
func (ct *connTracker) progressed(ci *connInfo, at time.Time) {
	ct.mu.Lock()
	if ci.waits && !ci.reading {
		ct.waiting.remove(ci)
		ci.since = at
		ct.waiting.push(ci)
	}
	ct.mu.Unlock()
}

// done ends what ci's request and answer were doing: it is idle, or gone.
func (ct *connTracker) done(ci *connInfo) {
	ci.reading, ci.answering = false, false
	ci.writing.Store(0)
	ct.sync(ci)
}

// startAnswer records that the answer on ci's connection is being
// written, from its first write (or the handler's return) until the
// connection is idle: the client must take it.
func (ct *connTracker) startAnswer(ci *connInfo, at time.Time) {
	ct.mu.Lock()
	if !ci.answering && !ci.gone {
		ci.answering = true
		ct.syncAt(ci, at)
	}
	ct.mu.Unlock()
}

// requestRead records that the request r has arrived: at once for a
// request without a body, else when its body has been read to its end
// (r.Body is wrapped to tell). It returns the record of r's connection,
// or nil.
func (ct *connTracker) requestRead(r *http.Request) *connInfo {
	ci := connOf(r.Context())
	if ci == nil {
		return nil
	}
	if r.Body == nil || r.Body == http.NoBody {
		ct.mu.Lock()
		ci.reading = false
		ct.sync(ci)
		ct.mu.Unlock()
		return ci
	}
	r.Body = &bodyWatch{ReadCloser: r.Body, ct: ct, ci: ci}
	return ci
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
		b.ci.reading = false
		b.ct.sync(b.ci)
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
			defer ct.unlock()
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

// evict closes an idle connection once the lock is let go (unlock); the
// http.Server then forgets it, or the poller, for one it keeps.
func (ct *connTracker) evict(ci *connInfo, reason string) {
	ct.unidle(ci)
	ct.s.metrics.connsClosed.WithLabelValues(reason).Inc()
	if ci.evict != nil {
		ct.closes = append(ct.closes, ci.evict)
		return
	}
	ct.closes = append(ct.closes, func() { closeNow(ci.conn) })
}

// newKeptInfo is the record of a connection the poller keeps for tenant;
// evict closes it (called after the tracker has let its lock go, with the
// connection off its lists).
func newKeptInfo(c net.Conn, tenant string, evict func()) *connInfo {
	return &connInfo{conn: c, tenant: tenant, evict: evict}
}

// listKept puts a connection the poller keeps on the idle lists, idle from
// now, and applies the caps; unless stillKept reports that the poller let
// it go meanwhile (its unkept then came first, or comes after this).
func (ct *connTracker) listKept(ci *connInfo, stillKept func() bool) {
	ct.mu.Lock()
	defer ct.unlock()
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
