package server

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
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
}

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
}

type connLinks struct{ prev, next *connInfo }

// connList is a list of idle connections through one of their links.
type connList struct {
	head, tail *connInfo
	n          int
	links      func(*connInfo) *connLinks
}

func allLinks(c *connInfo) *connLinks { return &c.all }
func ownLinks(c *connInfo) *connLinks { return &c.own }

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
		if len(ct.open)+parked > ct.s.cfg.MaxConns && ct.idle.head != nil {
			ct.evict(ct.idle.head, "conns")
		}
	case http.StateActive:
		ct.unidle(ci)
	case http.StateIdle:
		ct.setIdle(ci)
	case http.StateHijacked, http.StateClosed:
		ct.unidle(ci)
		delete(ct.open, c)
		ct.s.metrics.connsOpen.Set(float64(len(ct.open)))
	}
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
