package server

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/server/store"
)

// Long-polls (design item 2): GET /events?wait= is held while the answer
// would hold no event newer than the marker, then answered exactly as
// without wait.
//
// A waiting long-poll is parked: its connection is taken over from the
// http.Server (so no goroutine, bufio buffers or background reader stay
// behind) and kept in its tenant's poll set with a timer. One dispatcher
// goroutine per tenant with parked polls wakes on each commit, reads the
// feed once per distinct query, answers the polls that now have events, and
// hands their connections back to the http.Server through Listener, so the
// client's connection stays persistent. Without a Listener (or over HTTP/2)
// a long-poll waits on its own goroutine instead.

// parkedPoll is a long-poll whose connection the server took over.
type parkedPoll struct {
	conn      net.Conn
	keepAlive bool
	tenant    string
	q         store.EventQuery
	txnID     string
	waitHdr   string
	// hrefPrefix and query build next_href.
	hrefPrefix string
	query      query
	timer      *time.Timer
}

// pollSet holds a tenant's parked polls.
type pollSet struct {
	polls map[*parkedPoll]struct{}
	kick  chan struct{} // asks the dispatcher to look at the polls now
}

// pollWriters bounds the goroutines writing answers to parked polls.
const pollWriters = 64

// longPoll answers GET /events with wait.
func (s *Server) longPoll(w http.ResponseWriter, rq *request, q store.EventQuery, wait time.Duration) {
	ctx := rq.r.Context()
	if rq.r.Method != http.MethodGet || !s.addWaiter(rq.tenant) {
		w.Header().Set("X-Registry-Wait", "0s")
		page, err := s.readEvents(ctx, rq.tenant, q)
		s.writeEvents(w, rq, page, err)
		return
	}
	owned := true // this goroutine still owns the waiter count
	defer func() {
		if owned {
			s.removeWaiter(rq.tenant)
		}
	}()
	wait -= time.Duration(rand.Int64N(int64(wait)/16 + 1))
	w.Header().Set("X-Registry-Wait", wait.String())
	deadline := time.Now().Add(wait)
	var timer *time.Timer
	for {
		// Take the channel before reading, so no commit slips between.
		changed, err := s.store.Changed(ctx, rq.tenant)
		if err != nil {
			s.writeEvents(w, rq, store.EventPage{}, err)
			return
		}
		page, err := s.readEvents(ctx, rq.tenant, q)
		if err != nil || hasNewer(page, q.From) || !time.Now().Before(deadline) {
			s.writeEvents(w, rq, page, err)
			return
		}
		if isClosed(changed) {
			continue
		}
		if s.park(w, rq, q, time.Until(deadline), changed) {
			owned = false
			return
		}
		if timer == nil {
			timer = time.NewTimer(time.Until(deadline))
			defer timer.Stop()
			// The http.Server's write timeout is for ordinary requests.
			http.NewResponseController(w).SetWriteDeadline(deadline.Add(30 * time.Second))
		}
		select {
		case <-changed:
			continue
		case <-timer.C:
		case <-ctx.Done():
		case <-s.closing:
		}
		s.writeEvents(w, rq, page, nil)
		return
	}
}

// park takes the connection over and parks the poll. It reports false when
// the connection cannot be taken over.
func (s *Server) park(w http.ResponseWriter, rq *request, q store.EventQuery, wait time.Duration, changed <-chan struct{}) bool {
	s.lnMu.Lock()
	ln := s.ln
	s.lnMu.Unlock()
	if ln == nil || rq.r.ProtoMajor != 1 {
		return false
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false
	}
	if sw, ok := w.(*statusWriter); ok {
		sw.hijacked = true
	}
	conn.SetDeadline(time.Time{})
	if n := brw.Reader.Buffered(); n > 0 {
		// The client pipelined its next request; keep those bytes for the
		// http.Server.
		pending, _ := brw.Reader.Peek(n)
		conn = &prefixConn{Conn: conn, r: io.MultiReader(bytes.NewReader(slices.Clone(pending)), conn)}
	}
	p := &parkedPoll{
		conn:       conn,
		keepAlive:  rq.r.ProtoAtLeast(1, 1) && !rq.r.Close,
		tenant:     rq.tenant,
		q:          q,
		txnID:      rq.txnID,
		waitHdr:    w.Header().Get("X-Registry-Wait"),
		hrefPrefix: rq.hrefPrefix(),
		query:      rq.query,
	}
	s.pollsMu.Lock()
	s.parked++
	ps := s.polls[p.tenant]
	if ps == nil {
		ps = &pollSet{polls: map[*parkedPoll]struct{}{}, kick: make(chan struct{}, 1)}
		s.polls[p.tenant] = ps
		go s.dispatch(p.tenant, ps)
	}
	ps.polls[p] = struct{}{}
	p.timer = time.AfterFunc(wait, func() { s.expire(p) })
	s.pollsMu.Unlock()
	if isClosed(changed) {
		// A commit landed between the read and the parking.
		select {
		case ps.kick <- struct{}{}:
		default:
		}
	}
	return true
}

// take removes p from its poll set; only the caller that gets true
// answers it.
func (s *Server) take(p *parkedPoll) bool {
	s.pollsMu.Lock()
	defer s.pollsMu.Unlock()
	ps := s.polls[p.tenant]
	if ps == nil {
		return false
	}
	if _, ok := ps.polls[p]; !ok {
		return false
	}
	delete(ps.polls, p)
	return true
}

// expire answers p when its wait is over.
func (s *Server) expire(p *parkedPoll) {
	if !s.take(p) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	page, err := s.readEvents(ctx, p.tenant, p.q)
	s.answer(p, page, err, nil)
}

// dispatch wakes the tenant's parked polls on every commit until none is
// left, or answers them all when the server drains.
func (s *Server) dispatch(tenant string, ps *pollSet) {
	ctx := context.Background()
	changed := s.changed(ctx, tenant)
	for {
		select {
		case <-changed:
		case <-ps.kick:
		case <-s.closing:
		}
		// Take the next channel before reading: a commit after this point
		// closes it, one before is seen by the read.
		changed = s.changed(ctx, tenant)
		s.wake(ctx, tenant, ps, isClosed(s.closing))
		s.pollsMu.Lock()
		if len(ps.polls) == 0 {
			delete(s.polls, tenant)
			s.pollsMu.Unlock()
			return
		}
		s.pollsMu.Unlock()
	}
}

// changed is store.Changed, retried until it answers: a parked poll's timer
// answers it meanwhile.
func (s *Server) changed(ctx context.Context, tenant string) <-chan struct{} {
	for backoff := 50 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		ch, err := s.store.Changed(ctx, tenant)
		if err == nil {
			return ch
		}
		s.log.Warn("long-poll dispatcher: watch the feed", "tenant", tenant, "err", err)
		select {
		case <-time.After(backoff/2 + time.Duration(rand.Int64N(int64(backoff)/2))):
		case <-s.closing:
			closed := make(chan struct{})
			close(closed)
			return closed
		}
	}
}

// pollKey groups parked polls that ask the same query.
type pollKey struct {
	from  timeuuid.UUID
	limit int
	types string // the query's type filter, joined
}

// wake reads the feed once per distinct query of the tenant's parked polls
// and answers those that have news (all of them when all is set).
func (s *Server) wake(ctx context.Context, tenant string, ps *pollSet, all bool) {
	s.pollsMu.Lock()
	groups := map[pollKey][]*parkedPoll{}
	for p := range ps.polls {
		k := pollKey{from: p.q.From, limit: p.q.Limit, types: typesKey(p.q.Types)}
		groups[k] = append(groups[k], p)
	}
	s.pollsMu.Unlock()
	if len(groups) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rerr := s.store.Rectify(ctx, tenant)
	for k, polls := range groups {
		var page store.EventPage
		err := rerr
		if err == nil {
			page, err = s.store.Events(ctx, tenant, polls[0].q)
		}
		if err == nil && !all && !hasNewer(page, k.from) {
			continue
		}
		var shared []byte
		for _, p := range polls {
			if s.take(p) {
				p.timer.Stop()
				s.answer(p, page, err, &shared)
			}
		}
	}
}

// answer writes p's answer on a bounded pool of writers. When shared is not
// nil and the answer has no next page, the body is the same for every poll
// of the group and is built once.
func (s *Server) answer(p *parkedPoll, page store.EventPage, err error, shared *[]byte) {
	s.removeWaiter(p.tenant)
	status := http.StatusOK
	var body []byte
	switch {
	case err != nil:
		f := s.faultFor(p.txnID, err)
		status, body = f.Status, faultJSON(f, p.txnID)
	case shared != nil && page.Next.IsZero():
		if *shared == nil {
			*shared = eventsJSON(page, p.q.Limit, p.hrefPrefix, p.query)
		}
		body = *shared
	default:
		body = eventsJSON(page, p.q.Limit, p.hrefPrefix, p.query)
	}
	s.pollWriters <- struct{}{}
	go func() {
		defer func() { <-s.pollWriters }()
		s.writeParked(p, status, body)
	}()
}

// writeParked writes an HTTP/1.1 answer on a parked poll's connection and
// hands the connection back to the http.Server.
func (s *Server) writeParked(p *parkedPoll, status int, body []byte) {
	defer func() {
		s.pollsMu.Lock()
		s.parked--
		s.pollsMu.Unlock()
	}()
	b := make([]byte, 0, 256+len(body))
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(status)...)
	b = append(b, "\r\nContent-Type: application/json; charset=UTF-8\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\nX-Response-Id: "...)
	b = append(b, p.txnID...)
	b = append(b, "\r\nX-Registry-Wait: "...)
	b = append(b, p.waitHdr...)
	b = append(b, "\r\nDate: "...)
	b = time.Now().UTC().AppendFormat(b, http.TimeFormat)
	if !p.keepAlive {
		b = append(b, "\r\nConnection: close"...)
	}
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	p.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	_, err := p.conn.Write(b)
	s.metrics.requests.WithLabelValues("events.list", strconv.Itoa(status)).Inc()
	if err != nil || !p.keepAlive {
		p.conn.Close()
		return
	}
	p.conn.SetDeadline(time.Time{})
	s.lnMu.Lock()
	ln := s.ln
	s.lnMu.Unlock()
	ln.handBack(p.conn)
}

// hasNewer reports whether the feed holds an event other than the marker
// event itself: in the page, or past it.
func hasNewer(page store.EventPage, marker timeuuid.UUID) bool {
	if !page.Next.IsZero() {
		return true
	}
	for _, ev := range page.Values {
		if ev.ID != marker {
			return true
		}
	}
	return false
}

// typesKey tells type filters apart: nil (every type) from the original
// five, and each from a single type.
func typesKey(types []registry.EventType) string {
	if types == nil {
		return "*"
	}
	var b strings.Builder
	for _, t := range types {
		b.WriteString(string(t))
		b.WriteByte(',')
	}
	return b.String()
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func (s *Server) addWaiter(tenant string) bool {
	if isClosed(s.closing) {
		return false
	}
	s.waitersMu.Lock()
	defer s.waitersMu.Unlock()
	if s.waiters[tenant] >= s.cfg.MaxWaitersPerTenant {
		return false
	}
	s.waiters[tenant]++
	s.metrics.waiting.Inc()
	return true
}

func (s *Server) removeWaiter(tenant string) {
	s.waitersMu.Lock()
	defer s.waitersMu.Unlock()
	if s.waiters[tenant]--; s.waiters[tenant] == 0 {
		delete(s.waiters, tenant)
	}
	s.metrics.waiting.Dec()
}

// drainParked waits until every parked poll has been answered, or ctx is
// done.
func (s *Server) drainParked(ctx context.Context) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		s.pollsMu.Lock()
		n := s.parked
		s.pollsMu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
