package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"iter"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/svcreg/svcreg/internal/retry"
	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/server/store"
)

// poller owns the waiting long-polls: it counts them against the
// per-tenant and global caps, and parks those it can. A parked poll's
// connection is taken over from the http.Server (so no goroutine, bufio
// buffers or background reader stay behind) and kept in its tenant's poll
// set with a timer; the connection watcher frees it as soon as its client
// hangs up. One dispatcher goroutine per tenant with parked polls wakes on
// each commit, reads the feed once per distinct query, answers the polls
// that now have events with the handlers' own response code, and hands
// their connections back to the http.Server through the listener, so the
// client's connection stays persistent.
type poller struct {
	s *Server

	mu      sync.Mutex
	ln      *listener
	sets    map[string]*pollSet // parked polls, by tenant
	parked  atomic.Int64        // parked polls not yet answered
	kept    atomic.Int64        // answered connections kept until their next request
	keepFor atomic.Int64        // how long they are kept (a time.Duration); 0: not at all
	waiting waiterCounts        // waiting polls (parked or not), by tenant
	total   int                 // waiting polls of all tenants
	yields  map[string]int      // polls admitted onYield that have not yielded yet, by tenant
	watch   *connWatcher        // nil until the first park, or if unavailable
	noWatch bool                // the watcher could not be made

	writers   chan struct{}             // bounds the goroutines finishing slow writes
	writingMu sync.Mutex                // guards writing, apart from mu: taken twice per slow write
	writing   map[string]*tenantWriters // the writers of each tenant
}

// tenantWriters bounds one tenant's goroutines finishing slow writes.
type tenantWriters struct {
	slots  chan struct{}
	users  int // finish calls holding or waiting for a slot (under poller.writingMu)
	timers int // those of wait timers (fromTimer)
	// writes are the polls whose answers its writers are writing, with
	// when each began (under poller.writingMu); one cut (see cutWrite)
	// is no longer among them.
	writes map[*parkedPoll]time.Time
}

// parkedPoll is a long-poll whose connection the poller took over. It
// keeps only what writing the answer needs (memory per waiting poll
// matters): the request's transaction id, tenant, token (checked again
// before the answer), route path, query, base URL, and the X-Registry-Wait
// header the handler set.
type parkedPoll struct {
	conn      net.Conn
	keepAlive bool
	overTLS   bool
	kept      atomic.Int32 // notKept, keeping or isKept (see keep)
	idle      *connInfo    // while kept: its record among the tenant's idle connections
	host      string
	scheme    string // of its answer's URLs (request.scheme)
	txnID     string
	tenant    string
	token     string // checked again before the answer (stillValid)
	routePath string
	query     query
	wait      string // X-Registry-Wait
	q         store.EventQuery
	timer     *time.Timer
	// fd and gen identify the poll's registration with the watcher.
	fd  int32
	gen int32
}

// newParkedPoll keeps what answering rq needs, as copies: a string of the
// request (a parameter, the Host) keeps the whole request line or header
// block it was cut from.
func newParkedPoll(conn net.Conn, w http.ResponseWriter, rq *request, q store.EventQuery) *parkedPoll {
	query := make(query, len(rq.query))
	for i, p := range rq.query {
		query[i] = queryPair{strings.Clone(p.key), strings.Clone(p.value)}
	}
	p := &parkedPoll{
		conn:      conn,
		keepAlive: rq.r.ProtoAtLeast(1, 1) && !rq.r.Close,
		overTLS:   rq.r.TLS != nil,
		host:      strings.Clone(rq.r.Host),
		scheme:    rq.scheme(),
		txnID:     rq.txnID,
		tenant:    strings.Clone(rq.tenant),
		token:     strings.Clone(rq.token),
		routePath: strings.Clone(rq.routePath),
		query:     query,
		wait:      w.Header().Get("X-Registry-Wait"),
		q:         q,
	}
	return p
}

// request is the poll's request as far as writing its answer needs.
func (p *parkedPoll) request() *request {
	r := &http.Request{Host: p.host}
	return &request{r: r, txnID: p.txnID, tenant: p.tenant, token: p.token, routePath: p.routePath, query: p.query, parkedScheme: p.scheme}
}

// pollSet holds a tenant's parked polls, grouped by query: a wake-up
// reads the feed once per group, and takes a group that has news out of
// the set as a whole.
type pollSet struct {
	groups map[pollKey]*pollGroup
	n      int           // parked polls in the groups
	kick   chan struct{} // asks the dispatcher to look at the polls now
}

// pollGroup is the parked polls of a tenant that ask the same query.
type pollGroup struct {
	q     store.EventQuery
	polls map[*parkedPoll]struct{}
	// scanned, once a read of q found nothing new, is where news for the
	// group would start: events are appended after the feed's head, so
	// none before it can turn up later. Its reads go on there (the
	// query's Quiet): a poll waiting past events it does not ask for does
	// not read them again. Only the tenant's dispatcher sets it, holding
	// poller.mu; a timer reads it holding poller.mu.
	scanned timeuuid.UUID
}

func keyOf(q store.EventQuery) pollKey {
	return pollKey{from: q.From, limit: q.Limit, types: typesKey(q.Types), marked: q.CheckExpired}
}

// pollWriters bounds the goroutines finishing answers that did not fit in
// a connection's send buffer at once (every answer over TLS), each holding
// its answer's bytes (up to a page, 1 MiB) for up to 30 s; a tenant's
// take at most pollWritersPerTenant of them. A client that does not read
// its answers so holds its own tenant's share and no more: the answers of
// the others go on being written. When the tenants whose clients do not
// read hold every writer between them, a tenant holding fewer waits for
// one no longer than pollWriteCut: the oldest write of a tenant holding
// the most, once it has taken that long, is cut (its connection closed).
//
// Past pollWritersQueued of a tenant's timers' answers waiting for its
// writers, a further one is dropped (see finish).
const (
	pollWriters          = 256
	pollWritersPerTenant = 16
	pollWritersQueued    = 64
	pollWriteCut         = time.Second
)

func newPoller(s *Server) *poller {
	return &poller{
		s:       s,
		sets:    map[string]*pollSet{},
		waiting: newWaiterCounts(),
		yields:  map[string]int{},
		writers: make(chan struct{}, pollWriters),
		writing: map[string]*tenantWriters{},
	}
}

func (pl *poller) setListener(l *listener) {
	pl.mu.Lock()
	pl.ln = l
	pl.mu.Unlock()
}

// admission is how addWaiter let a long-poll in.
type admission int

const (
	refused  admission = iota // it answers at once
	admitted                  // it may wait
	// onYield: past the cap on all tenants' waiting polls, it may wait
	// if, once its read found nothing new (it is about to wait), a
	// parked poll of a tenant holding more gives it its slot (yield).
	onYield
)

// addWaiter counts a new waiting long-poll for tenant; refused when the
// server is draining or a cap is reached, and the poll must answer at
// once.
//
// Past the cap on all tenants' waiting polls, a tenant holding two or
// more fewer than the tenant holding the most (one with parked polls)
// takes a slot of that tenant: once the poll is about to wait, one of
// that tenant's parked polls is answered, as if its wait had ended, and
// its client asks again (and, its tenant holding the most, is answered
// at once). So a few tenants at their own cap cannot leave every other
// tenant polling: the slots are shared out among the tenants that want
// them. A poll whose first read has news takes no slot (one whose first
// read found nothing takes it then, even if a commit then brings it news
// before it parks). At most maxYields polls of a tenant are admitted so
// at once (reads behind its own read gate must not hold more), each
// counted in the total, which goes past the cap by up to that many a
// tenant while their reads run.
func (pl *poller) addWaiter(tenant string) admission {
	if isClosed(pl.s.closing) {
		return refused
	}
	pl.mu.Lock()
	defer pl.mu.Unlock()
	adm := admitted
	switch {
	case pl.waiting.of(tenant) >= pl.s.cfg.MaxWaitersPerTenant:
		pl.s.metrics.refused.WithLabelValues("tenant").Inc()
		return refused
	case pl.total >= pl.s.cfg.MaxWaiters:
		if !pl.mayYieldLocked(tenant) {
			pl.s.metrics.refused.WithLabelValues("total").Inc()
			return refused
		}
		pl.yields[tenant]++
		adm = onYield
	}
	pl.waiting.add(tenant, 1)
	pl.total++
	pl.s.metrics.waiting.Inc()
	return adm
}

// maxYields bounds a tenant's polls admitted onYield whose reads run.
const maxYields = 2

// mayYieldLocked reports whether a new poll of tenant, past the total
// cap, may be admitted onYield: the tenant has fewer than maxYields so
// admitted, and another holds two or more polls more, one of them parked.
func (pl *poller) mayYieldLocked(tenant string) bool {
	if pl.yields[tenant] >= maxYields {
		return false
	}
	_, ok := pl.victimLocked(tenant, 2)
	return ok
}

// victim is a parked poll, with its set and group, as takeLocked takes it.
type victim struct {
	ps  *pollSet
	key pollKey
	g   *pollGroup
	p   *parkedPoll
}

// victimLocked returns a parked poll of a tenant holding the most waiting
// polls, if that is lead or more than tenant holds; false if there is
// none. Only the tenants tied at the most are looked at (up to
// maxVictimLooks): one whose waiting polls are not parked (HTTP/2, or all
// still in their first read) gives none.
func (pl *poller) victimLocked(tenant string, lead int) (victim, bool) {
	if pl.waiting.top < pl.waiting.of(tenant)+lead {
		return victim{}, false
	}
	for top := range pl.waiting.most(maxVictimLooks) {
		if ps := pl.sets[top]; ps != nil {
			for key, g := range ps.groups {
				for p := range g.polls {
					return victim{ps, key, g, p}, true
				}
			}
		}
	}
	return victim{}, false
}

// maxVictimLooks bounds the tenants victimLocked looks at.
const maxVictimLooks = 8

// yield settles an onYield admission of a poll of tenant (which its
// count includes) that is about to wait: if the total is still past the
// cap, a parked poll of a tenant holding more than tenant gives it its
// slot, and is answered; false when there is none any longer, and the
// poll must answer at once (its caller gives its count back).
func (pl *poller) yield(tenant string) bool {
	pl.mu.Lock()
	pl.unyieldLocked(tenant)
	if pl.total <= pl.s.cfg.MaxWaiters {
		pl.mu.Unlock()
		return true // others left meanwhile: room enough
	}
	v, ok := pl.victimLocked(tenant, 1)
	if !ok {
		pl.mu.Unlock()
		pl.s.metrics.refused.WithLabelValues("total").Inc()
		return false
	}
	p := v.p
	scanned := pl.takeLocked(v.ps, v.key, v.g, p)
	w := pl.watch
	pl.mu.Unlock()
	pl.s.metrics.yielded.Inc()
	go func() {
		pl.release([]*parkedPoll{p}, w)
		pl.answerTaken(p, scanned)
	}()
	return true
}

// removeWaiter gives back a waiting poll's count; onYield says it was
// admitted so and did not yield.
func (pl *poller) removeWaiter(tenant string, onYield bool) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if onYield {
		pl.unyieldLocked(tenant)
	}
	pl.removeWaiterLocked(tenant)
}

// unyieldLocked ends one of tenant's onYield admissions.
func (pl *poller) unyieldLocked(tenant string) {
	if pl.yields[tenant]--; pl.yields[tenant] <= 0 {
		delete(pl.yields, tenant)
	}
}

func (pl *poller) removeWaiterLocked(tenant string) { pl.removeWaitersLocked(tenant, 1) }

// removeWaitersLocked counts n of tenant's waiting polls as answered.
func (pl *poller) removeWaitersLocked(tenant string, n int) {
	pl.waiting.add(tenant, -n)
	pl.total -= n
	pl.s.metrics.waiting.Sub(float64(n))
}

// parkedCount is how many connections the poller holds: those of parked
// polls, and answered ones it keeps until their next request.
func (pl *poller) parkedCount() int { return int(pl.parked.Load() + pl.kept.Load()) }

// setKeep sets how long an answered connection is kept, waiting for its
// client's next request, before it is closed; 0 hands every answered
// connection back at once. Serve sets it to what the http.Server allows a
// new connection for its first request's headers.
func (pl *poller) setKeep(d time.Duration) { pl.keepFor.Store(int64(d)) }

// park takes the connection over and parks the poll, which keeps its
// waiter count; q.Quiet is where the read that found nothing new for it
// ended (just past the feed's head then). It reports false when the
// connection cannot be taken over.
func (pl *poller) park(w http.ResponseWriter, rq *request, q store.EventQuery, wait time.Duration, changed <-chan struct{}) bool {
	pl.mu.Lock()
	ln := pl.ln
	pl.mu.Unlock()
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
	n := brw.Reader.Buffered()
	if n > 0 {
		// The client pipelined its next request; keep those bytes for the
		// http.Server. The watcher will not see them (they left the
		// kernel's buffer), so the poll is answered at once below, as it
		// is when they come later.
		pending, _ := brw.Reader.Peek(n)
		conn = &prefixConn{Conn: conn, r: io.MultiReader(bytes.NewReader(slices.Clone(pending)), conn)}
	}
	p := newParkedPoll(conn, w, rq, q)
	key := keyOf(q)
	watch := pl.watcher()
	pl.mu.Lock()
	pl.parked.Add(1)
	ps := pl.sets[rq.tenant]
	if ps == nil {
		ps = &pollSet{groups: map[pollKey]*pollGroup{}, kick: make(chan struct{}, 1)}
		pl.sets[rq.tenant] = ps
		go pl.dispatch(rq.tenant, ps)
	}
	g := ps.groups[key]
	if g == nil {
		// The read that found nothing for the poll ran to the head, where
		// its Quiet is.
		g = &pollGroup{q: q, polls: map[*parkedPoll]struct{}{}, scanned: q.Quiet}
		ps.groups[key] = g
	}
	g.polls[p] = struct{}{}
	ps.n++
	p.timer = time.AfterFunc(wait, func() { pl.expire(p) })
	if watch != nil {
		watch.add(p)
	}
	pl.mu.Unlock()
	if n > 0 {
		go pl.answerNow(p, true)
		return true
	}
	if isClosed(changed) {
		// A commit landed between the read and the parking.
		select {
		case ps.kick <- struct{}{}:
		default:
		}
	}
	return true
}

// currentWatch returns the connection watcher as it is now (nil if none
// runs), without starting it.
func (pl *poller) currentWatch() *connWatcher {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return pl.watch
}

// watcher returns the connection watcher, started on first use; nil where
// there is none.
func (pl *poller) watcher() *connWatcher {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.watch == nil && !pl.noWatch {
		w, err := newConnWatcher(pl.hangup)
		if err != nil {
			pl.s.log.Warn("long-polls: cannot watch parked connections; a poll whose client left is freed when its wait ends", "err", err)
			pl.noWatch = true
			return nil
		}
		pl.watch = w
	}
	return pl.watch
}

// take removes p from its poll set and its waiter count, and stops its
// timer and its watch; only the caller that gets true answers it, and
// scanned is where its group's news would start.
func (pl *poller) take(p *parkedPoll) (scanned timeuuid.UUID, ok bool) {
	key := keyOf(p.q)
	pl.mu.Lock()
	ps := pl.sets[p.tenant]
	var g *pollGroup
	if ps != nil {
		g = ps.groups[key]
	}
	if g == nil {
		pl.mu.Unlock()
		return scanned, false
	}
	if _, ok := g.polls[p]; !ok {
		pl.mu.Unlock()
		return scanned, false
	}
	scanned = pl.takeLocked(ps, key, g, p)
	w := pl.watch
	pl.mu.Unlock()
	pl.release([]*parkedPoll{p}, w)
	return scanned, true
}

// takeLocked removes p, of group g (at key in ps), from the set and its
// waiter count, and returns where the group's news would start.
func (pl *poller) takeLocked(ps *pollSet, key pollKey, g *pollGroup, p *parkedPoll) (scanned timeuuid.UUID) {
	scanned = g.scanned
	delete(g.polls, p)
	if len(g.polls) == 0 {
		delete(ps.groups, key)
	}
	ps.n--
	pl.removeWaitersLocked(p.tenant, 1)
	return scanned
}

// takeGroup removes the group of polls g from its poll set and its
// polls from the waiter count, if g is still in the set; only the caller
// answers them, once it released them.
func (pl *poller) takeGroup(tenant string, ps *pollSet, key pollKey, g *pollGroup) []*parkedPoll {
	pl.mu.Lock()
	if ps.groups[key] != g {
		pl.mu.Unlock()
		return nil
	}
	delete(ps.groups, key)
	ps.n -= len(g.polls)
	pl.removeWaitersLocked(tenant, len(g.polls))
	pl.mu.Unlock()
	// The group is out of the set: nobody else finds its polls.
	polls := make([]*parkedPoll, 0, len(g.polls))
	for p := range g.polls {
		polls = append(polls, p)
	}
	return polls
}

// release stops the timers of taken polls and their registration with the
// watcher w (if any).
func (pl *poller) release(polls []*parkedPoll, w *connWatcher) {
	for _, p := range polls {
		p.timer.Stop()
	}
	if w != nil {
		w.remove(polls...)
	}
}

// hangup frees p, whose client closed the connection (hungUp), or answers
// it at once, its client having sent something while it waited (see
// connWatcher); or, if p's connection is kept (see keep), hands it back to
// the http.Server, which reads its next request or sees its end.
func (pl *poller) hangup(p *parkedPoll, hungUp bool) {
	if pl.unkeep(p) {
		p.timer.Stop()
		pl.handBack([]*parkedPoll{p})
		return
	}
	if !hungUp {
		// Not on the watcher's goroutine: the answer reads the store.
		go pl.answerNow(p, true)
		return
	}
	if _, ok := pl.take(p); !ok {
		return
	}
	pl.s.metrics.gone.Inc()
	pl.parked.Add(-1)
	p.conn.Close()
}

// expire answers p when its wait is over, or closes p's connection when
// it was kept for as long as it may be.
func (pl *poller) expire(p *parkedPoll) {
	if pl.unkeep(p) {
		pl.closeKept(p)
		return
	}
	pl.answerNow(p, false)
}

// answerNow answers p with what the feed holds for it now, unless it was
// taken already; cut says its wait is cut short (its client sent bytes).
func (pl *poller) answerNow(p *parkedPoll, cut bool) {
	scanned, ok := pl.take(p)
	if !ok {
		return
	}
	if cut {
		pl.s.metrics.pollsCut.Inc()
	}
	pl.answerTaken(p, scanned)
}

// answerTaken answers p, taken out of its set: scanned is where its
// group's news would start.
func (pl *poller) answerTaken(p *parkedPoll, scanned timeuuid.UUID) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q := p.q
	q.Quiet = latest(q.Quiet, scanned) // the poll's own reads may have gone further
	page, err := pl.s.store.Events(ctx, p.tenant, q)
	pl.handBack(pl.answerAll(ctx, []*parkedPoll{p}, page, err, true))
}

// dispatch wakes the tenant's parked polls on every commit until none is
// left, or answers them all when the server drains.
func (pl *poller) dispatch(tenant string, ps *pollSet) {
	ctx := context.Background()
	bo := retry.Backoff{Min: 50 * time.Millisecond, Max: 5 * time.Second}
	for {
		// Take the channel before reading: a commit after this point closes
		// it, one before is seen by the read. The first read also sees a
		// commit that landed after the first poll parked and before this
		// dispatcher started.
		changed := pl.changed(ctx, tenant)
		failed := pl.wake(ctx, tenant, ps, isClosed(pl.s.closing))
		pl.mu.Lock()
		if ps.n == 0 {
			delete(pl.sets, tenant)
			pl.mu.Unlock()
			return
		}
		pl.mu.Unlock()
		var again *time.Timer
		var againC <-chan time.Time
		if failed {
			// The polls stay parked (their timers answer them if the
			// store stays unavailable); read again after a backoff.
			again = time.NewTimer(bo.Next())
			againC = again.C
		} else {
			bo.Reset()
		}
		select {
		case <-changed:
		case <-ps.kick:
		case <-pl.s.closing:
		case <-againC:
		}
		if again != nil {
			again.Stop()
		}
	}
}

// changed is store.Changed, retried until it answers: a parked poll's timer
// answers it meanwhile.
func (pl *poller) changed(ctx context.Context, tenant string) <-chan struct{} {
	for backoff := 50 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		ch, err := pl.s.store.Changed(ctx, tenant)
		if err == nil {
			return ch
		}
		if more, ok := pl.s.failLog.allow(); ok {
			pl.s.log.Warn("long-poll dispatcher: watch the feed", "tenant", tenant, "err", err, more)
		}
		select {
		case <-time.After(backoff/2 + time.Duration(rand.Int64N(int64(backoff)/2))):
		case <-pl.s.closing:
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
	// marked: the poll gave a marker (CheckExpired). One without may
	// start at the same place (an empty young account's marker is its
	// creation), but is never answered 410.
	marked bool
}

// wake answers the groups of the tenant's parked polls that have news
// (all of them when all is set). The groups read before are checked
// against one read of the feed from the oldest place such a group would
// find news at (only what was appended since: a page or a few after a
// burst, checkShared), so that a commit costs one read however many groups
// wait, and however far back their markers are; a group that has news, or
// that was not read before, reads its own page.
// The answered connections go back to the http.Server once every answer is
// written, so that serving them does not delay the answers.
func (pl *poller) wake(ctx context.Context, tenant string, ps *pollSet, all bool) (failed bool) {
	pl.mu.Lock()
	groups := make([]keyedGroup, 0, len(ps.groups))
	for k, g := range ps.groups {
		groups = append(groups, keyedGroup{k, g})
	}
	pl.mu.Unlock()
	if len(groups) == 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// quiet: the groups the shared reads found nothing new for.
	quiet := map[*pollGroup]bool{}
	if !all {
		pl.checkShared(ctx, tenant, groups, quiet)
	}
	var back []*parkedPoll
	var readErr error // of the first group whose read failed
	readsFailed := 0
	for _, g := range groups {
		if quiet[g.g] {
			continue
		}
		// A poll that joins the group meanwhile asked the same query, so
		// that page answers it too.
		q := g.g.q
		q.Quiet = g.g.scanned
		page, err := pl.s.store.Events(ctx, tenant, q)
		if err != nil && !all && !errors.Is(err, store.ErrMarkerExpired) {
			// A store that failed a read (an etcd member lost, say) ends
			// no long-poll early: the polls wait on, and the dispatcher
			// reads again.
			if readsFailed++; readErr == nil {
				readErr = err
			}
			failed = true
			continue
		}
		if err == nil && !all && !hasNewer(page, g.key.from) {
			// The page ran to the head: nothing before it is news.
			pl.setScanned(g.g, latest(g.g.scanned, later(g.key.from, page.Head)))
			continue
		}
		back = append(back, pl.answerAll(ctx, pl.takeGroup(tenant, ps, g.key, g.g), page, err, false)...)
	}
	// One line a wake-up, however many groups (an account parks polls of
	// as many queries as it may park polls), and those lines bounded as
	// failed requests' are: the dispatcher tries again after a backoff
	// for as long as the store fails.
	if readsFailed > 0 {
		if more, ok := pl.s.failLog.allow(); ok {
			pl.s.log.Warn("long-poll dispatcher: read the feed; the long-polls wait on", "tenant", tenant, "groups", readsFailed, "err", readErr, more)
		}
	}
	pl.handBack(back)
	return failed
}

// checkShared reads the feed once from the earliest place a group read
// before would find news at, and on page by page while groups are left
// that it found nothing for (a burst of commits between two wake-ups),
// up to the head; each group it finds nothing new for goes in quiet, with
// its scanned moved on. A group it finds news for, or that was not read
// before, or that a failed read leaves unsure, reads its own page.
func (pl *poller) checkShared(ctx context.Context, tenant string, groups []keyedGroup, quiet map[*pollGroup]bool) {
	var pending []keyedGroup
	var from timeuuid.UUID
	for _, g := range groups {
		if s := g.g.scanned; !s.IsZero() {
			pending = append(pending, g)
			if from.IsZero() || timeuuid.Compare(s, from) < 0 {
				from = s
			}
		}
	}
	for pages := 0; len(pending) > 0 && pages < maxSharedPages; pages++ {
		page, err := pl.s.store.Events(ctx, tenant, store.EventQuery{From: from, Limit: maxLimit, MaxBytes: maxEventsPage})
		if err != nil {
			return // each group its own read, which says so
		}
		left := pending[:0]
		for _, g := range pending {
			switch news, known := g.newsIn(page); {
			case news:
			case known: // the page ran to the head
				pl.setScanned(g.g, later(g.g.scanned, page.Head))
				quiet[g.g] = true
			default: // nothing before the page's end is news
				pl.setScanned(g.g, latest(g.g.scanned, page.Next))
				left = append(left, g)
			}
		}
		if timeuuid.Compare(page.Next, from) <= 0 {
			return // a page that does not move on: each group its own read
		}
		pending, from = left, page.Next
	}
}

// maxSharedPages bounds the shared reads of a wake-up: past a burst that
// long, the groups left read their own pages.
const maxSharedPages = 16

// setScanned moves g's scanned to at; only the tenant's dispatcher calls it.
func (pl *poller) setScanned(g *pollGroup, at timeuuid.UUID) {
	pl.mu.Lock()
	g.scanned = at
	pl.mu.Unlock()
}

// latest is the later of two feed positions.
func latest(a, b timeuuid.UUID) timeuuid.UUID {
	if timeuuid.Compare(b, a) > 0 {
		return b
	}
	return a
}

// keyedGroup is a group of parked polls with its key.
type keyedGroup struct {
	key pollKey
	g   *pollGroup
}

// newsIn reports whether page, read from at or before the group's
// scanned, holds an event the group would answer with; known is false
// when it does not, but the page was cut before the feed's head.
func (g keyedGroup) newsIn(page store.EventPage) (news, known bool) {
	for _, ev := range page.Values {
		if timeuuid.Compare(ev.ID, g.g.scanned) >= 0 && ev.ID != g.key.from && store.Matches(g.g.q.Types, ev.Type) {
			return true, true
		}
	}
	return false, page.Next.IsZero()
}

// later is where news starts for a query from from after a read that saw
// the feed up to head (zero: no event yet): just after head, unless from
// is later.
func later(from, head timeuuid.UUID) timeuuid.UUID {
	if head.IsZero() {
		return from
	}
	return latest(from, head.Next())
}

// answerChunk is how many answers one goroutine writes when a wake-up
// answers many polls: a fan-out to thousands of polls is spread over the
// processors, and a small one stays on the dispatcher.
const answerChunk = 512

// answerAll answers polls of one query with page (or err), releasing
// those still registered, and returns the polls whose connections go back
// to the http.Server. An answer without a next page has the same body for
// every poll: it is built once (twice if some clients keep their
// connection and some do not), and each poll's answer is those bytes with
// its own X-Registry-Wait and X-Response-Id.
//
// fromTimer says the caller is a poll's wait timer, on a goroutine of its
// own, rather than the tenant's dispatcher (see finish).
func (pl *poller) answerAll(ctx context.Context, polls []*parkedPoll, page store.EventPage, err error, fromTimer bool) []*parkedPoll {
	if len(polls) == 0 {
		return nil
	}
	if isClosed(pl.s.closing) {
		// Draining: each answer says Connection: close and its connection
		// is closed once written. Handed back, it would wait for a next
		// request that never comes, and http.Server.Shutdown waits 5 s
		// for a connection that has not sent one before it closes it.
		for _, p := range polls {
			p.keepAlive = false
		}
	}
	w := pl.currentWatch()
	a := answerBatch{page: page, err: err, date: time.Now().UTC().Format(http.TimeFormat), watch: w, fromTimer: fromTimer}
	if err == nil {
		// A fault tells the account nothing: its tokens are not read
		// from a store that has just failed a read.
		a.refused = pl.s.refusedTokens(ctx, polls)
	}
	if err == nil && page.Next.IsZero() {
		body := eventsJSON(page, polls[0].q.Limit, "", nil) // no next_href
		a.shared = map[bool]*rawResponse{}
		for _, p := range polls {
			if a.shared[p.keepAlive] == nil {
				rw := a.response(p)
				writeRawJSON(rw, http.StatusOK, body)
				a.shared[p.keepAlive] = rw
			}
		}
	}
	n := min(runtime.GOMAXPROCS(0), (len(polls)+answerChunk-1)/answerChunk)
	backs := make([][]*parkedPoll, n)
	answer := func(i int, chunk []*parkedPoll) {
		pl.release(chunk, w)
		var buf []byte
		var answered []*parkedPoll
		ok := 0
		for _, p := range chunk {
			if pl.answer(p, &a, &buf, &answered) == http.StatusOK {
				ok++
			}
		}
		// Only once its share of the answers is written: keeping a
		// connection is a system call too.
		backs[i] = pl.settle(answered, w)
		pl.s.metrics.requests.WithLabelValues("events.list", "200").Add(float64(ok))
	}
	if n <= 1 {
		answer(0, polls)
		return backs[0]
	}
	var wg sync.WaitGroup
	for i := range n {
		chunk := polls[i*len(polls)/n : (i+1)*len(polls)/n]
		wg.Go(func() { answer(i, chunk) })
	}
	wg.Wait()
	return slices.Concat(backs...)
}

// tokenOf is a poll's token, for its tenant.
type tokenOf struct{ token, tenant string }

// refusedTokens checks the tokens of polls again before they are answered
// (stillValid): a token may have been revoked, or have expired, while its
// polls waited, and the account's events since are not for it. Each
// token once: those checked in the last tokenRecheck at once, the others
// (a store read each) up to 32 at a time, so that thousands of clients
// waking together with tokens of their own wait for their reads side by
// side, within ctx: the wake-up's, whose 30 s its reads of the feed and
// of every group's tokens share (a store that does not answer holds the
// tenant's dispatcher that long, not 30 s for every group or every 32
// tokens). It returns the fault of each token refused.
func (s *Server) refusedTokens(ctx context.Context, polls []*parkedPoll) map[tokenOf]error {
	var (
		refused map[tokenOf]error
		mu      sync.Mutex
		wg      sync.WaitGroup
		seen    = map[tokenOf]bool{}
		slots   = make(chan struct{}, 32)
	)
	refuse := func(t tokenOf, err error) {
		mu.Lock()
		defer mu.Unlock()
		if refused == nil {
			refused = map[tokenOf]error{}
		}
		refused[t] = err
	}
	for _, p := range polls {
		t := tokenOf{p.token, p.tenant}
		if seen[t] {
			continue
		}
		seen[t] = true
		if valid, sure := s.auth.validNow(sha256.Sum256([]byte(t.token)), t.token, t.tenant); sure {
			if !valid {
				refuse(t, tokenRefused())
			}
			continue
		}
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			if err := s.stillValid(ctx, p.request()); err != nil {
				refuse(t, err)
			}
		})
	}
	wg.Wait()
	return refused
}

// answerBatch is what the answers of one wake-up share.
type answerBatch struct {
	page      store.EventPage
	err       error
	date      string
	shared    map[bool]*rawResponse // by keep-alive, when the body is the same for every poll
	watch     *connWatcher          // or nil
	fromTimer bool                  // see answerAll
	refused   map[tokenOf]error     // the polls' tokens no longer valid (refusedTokens)
}

// response is the writer of p's answer, with the headers serveAPI and
// longPoll set before the poll parked.
func (a *answerBatch) response(p *parkedPoll) *rawResponse {
	h := http.Header{"X-Response-Id": {p.txnID}, "X-Registry-Wait": {p.wait}, "Date": {a.date}}
	return &rawResponse{header: h, keepAlive: p.keepAlive}
}

// answer writes p's answer, the batch's shared answer with p's own
// X-Registry-Wait and X-Response-Id or else one built with the handlers'
// code (writeEvents, or writeFault), and returns its status; buf is scratch
// space for the bytes. A poll whose connection stays open is appended to
// answered, for settle; an answer that does not fit in the connection's
// send buffer at once is finished on a goroutine of its own.
func (pl *poller) answer(p *parkedPoll, a *answerBatch, buf *[]byte, answered *[]*parkedPoll) int {
	var b []byte
	rw, err := a.shared[p.keepAlive], a.err
	if refused := a.refused[tokenOf{p.token, p.tenant}]; refused != nil {
		rw, err = nil, refused // its own answer: the fault
	}
	if rw != nil {
		*buf = rw.answerFor((*buf)[:0], p.wait, p.txnID)
		b = *buf
	} else {
		rw = a.response(p)
		if err != nil {
			pl.s.writeFault(rw, p.request(), err)
		} else {
			writeEvents(rw, p.request(), p.q.Limit, a.page)
		}
		if rw.status != http.StatusOK {
			pl.s.metrics.requests.WithLabelValues("events.list", strconv.Itoa(rw.status)).Inc()
		}
		b = rw.buf
	}
	rest, ok, err := writeWatched(p, b)
	if !ok {
		rest, err = writeNow(p.conn, b)
	}
	switch {
	case err != nil:
		pl.written(p, nil)
	case len(rest) == 0:
		pl.written(p, answered)
	default:
		pl.finish(p, slices.Clone(rest), a.fromTimer)
	}
	return rw.status
}

// finish writes the rest of p's answer on a goroutine of its own, and hands
// the connection back. It waits for a writer of p's tenant first, so that
// a tenant whose clients do not read makes only its own answers wait.
//
// A poll's wait timer (fromTimer) calls it on a goroutine of its own, which
// holds the answer's bytes and the connection while it waits: past
// pollWritersQueued of those waiting for the tenant's writers (counting
// those writing, as if they held every writer), the answer is dropped and
// its connection closed (the client polls again). A
// dispatcher waits itself, on each of the goroutines it answers on, and is
// never dropped.
func (pl *poller) finish(p *parkedPoll, rest []byte, fromTimer bool) {
	pl.writingMu.Lock()
	tw := pl.writing[p.tenant]
	if tw == nil {
		tw = &tenantWriters{slots: make(chan struct{}, pollWritersPerTenant), writes: map[*parkedPoll]time.Time{}}
		pl.writing[p.tenant] = tw
	}
	if fromTimer && tw.timers >= pollWritersPerTenant+pollWritersQueued {
		pl.writingMu.Unlock()
		pl.s.metrics.dropped.Inc()
		pl.written(p, nil)
		return
	}
	tw.users++
	if fromTimer {
		tw.timers++
	}
	pl.writingMu.Unlock()
	tw.slots <- struct{}{}
	pl.takeWriter(tw)
	go func() {
		defer func() {
			<-pl.writers
			<-tw.slots
			pl.writingMu.Lock()
			if fromTimer {
				tw.timers--
			}
			if tw.users--; tw.users == 0 {
				delete(pl.writing, p.tenant)
			}
			pl.writingMu.Unlock()
		}()
		pl.writingMu.Lock()
		tw.writes[p] = time.Now()
		p.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		pl.writingMu.Unlock()
		_, err := p.conn.Write(rest)
		// Out of writes first: a cut after the deadline is cleared would
		// leave the connection's next answer a deadline in the past.
		pl.writingMu.Lock()
		delete(tw.writes, p)
		pl.writingMu.Unlock()
		p.conn.SetWriteDeadline(time.Time{})
		w := pl.currentWatch()
		var answered []*parkedPoll
		if err == nil {
			pl.written(p, &answered)
		} else {
			pl.written(p, nil)
		}
		pl.handBack(pl.settle(answered, w))
	}()
}

// takeWriter takes one of the writers for a write of tenant writers tw.
// While none is free, it cuts the oldest write of a tenant holding more
// writers than tw (see cutWrite) once that write has taken pollWriteCut,
// and takes the writer it frees (or any other freed meanwhile).
func (pl *poller) takeWriter(tw *tenantWriters) {
	for {
		select {
		case pl.writers <- struct{}{}:
			return
		default:
		}
		t := time.NewTimer(pl.cutWrite(tw))
		select {
		case pl.writers <- struct{}{}:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// cutWrite cuts the oldest write of the tenant holding the most writers,
// if that is more than tw holds and the write has taken pollWriteCut: it
// fails at once, and its connection is closed. It returns how long to
// wait for a writer before looking again.
func (pl *poller) cutWrite(tw *tenantWriters) time.Duration {
	pl.writingMu.Lock()
	defer pl.writingMu.Unlock()
	var top *tenantWriters
	for _, o := range pl.writing {
		if len(o.writes) > len(tw.writes) && (top == nil || len(o.writes) > len(top.writes)) {
			top = o
		}
	}
	if top == nil {
		return pollWriteCut // the writers are shared fairly: wait for one
	}
	var oldest *parkedPoll
	var since time.Time
	for p, at := range top.writes {
		if oldest == nil || at.Before(since) {
			oldest, since = p, at
		}
	}
	if left := pollWriteCut - time.Since(since); left > 0 {
		return left
	}
	delete(top.writes, oldest)
	oldest.conn.SetWriteDeadline(time.Now())
	pl.s.metrics.dropped.Inc()
	return 10 * time.Millisecond
}

// written finishes a parked poll whose answer was written: it goes to
// answered, for settle, or its connection is closed when answered is nil
// or the client asked for it.
func (pl *poller) written(p *parkedPoll, answered *[]*parkedPoll) {
	if answered != nil && p.keepAlive {
		*answered = append(*answered, p)
		return
	}
	p.conn.Close()
	pl.parked.Add(-1)
}

// settle keeps the connections of answered polls until their next request
// (see keep), with the watcher w, and returns those it cannot keep, to be
// handed back. While the server drains it closes them instead, as drain
// closes the kept ones and the http.Server's Shutdown its idle ones: one
// handed back after drain has looked would wait for a next request that
// Shutdown does not see coming.
func (pl *poller) settle(answered []*parkedPoll, w *connWatcher) []*parkedPoll {
	var back []*parkedPoll
	for _, p := range answered {
		switch {
		case pl.keep(p, w):
		case isClosed(pl.s.closing):
			p.conn.Close()
		default:
			back = append(back, p)
		}
		pl.parked.Add(-1)
	}
	return back
}

// keep holds p's answered connection, with the watcher w, until its
// client sends the next request or hangs up (then hands it back to the
// http.Server), or closes it once it has waited keepFor. Handing 10,000
// connections back at once, right after a fan-out, starts 10,000 of the
// http.Server's connection goroutines, each with its buffers, and most
// then wait for a request with nothing to do; a kept connection costs its
// parked poll's record only. It reports false, and keeps nothing, when p
// cannot be kept: no watcher, TLS (whose reader may hold bytes already),
// pipelined bytes already read, or a draining server.
//
// While it is keeping p, nothing else takes the connection: the poll's
// wait timer, if it fired as the poll was answered, and a hang-up or next
// request the watcher reports meanwhile, wait for it (unkeep), then take
// the kept connection (the timer closes it: an idle keep-alive connection
// the client opens again); the connection tracker lists it, and may evict
// it, only once it is kept.
func (pl *poller) keep(p *parkedPoll, w *connWatcher) bool {
	d := time.Duration(pl.keepFor.Load())
	if d <= 0 || w == nil || p.gen == 0 || p.overTLS || isClosed(pl.s.closing) {
		return false
	}
	if _, ok := p.conn.(*prefixConn); ok {
		return false
	}
	// Among the tenant's idle connections once kept: its caps, and
	// MaxConns, may close it (evicted).
	p.idle = newKeptInfo(p.conn, p.tenant, func() { pl.evicted(p) })
	p.kept.Store(keeping)
	if !w.keep(p) {
		p.kept.Store(notKept)
		return false
	}
	pl.kept.Add(1)
	p.timer.Reset(d)
	p.kept.Store(isKept)
	pl.s.conns.listKept(p.idle, func() bool { return p.kept.Load() == isKept })
	return true
}

// The states of a parked poll's connection after its answer.
const (
	notKept int32 = iota
	keeping       // keep is registering it
	isKept
)

// unkeep takes p's kept connection; only the caller that gets true hands
// it back or closes it. One that keep is still registering is waited for.
func (pl *poller) unkeep(p *parkedPoll) bool {
	for {
		switch p.kept.Load() {
		case keeping:
			runtime.Gosched()
			continue
		case isKept:
			if !p.kept.CompareAndSwap(isKept, notKept) {
				continue
			}
			pl.kept.Add(-1)
			pl.s.conns.unkept(p.idle)
			return true
		}
		return false
	}
}

// evicted closes p's kept connection, which the connection tracker chose
// to close (its tenant or the server has too many idle) and took off its
// lists; called once the tracker has let its lock go.
func (pl *poller) evicted(p *parkedPoll) {
	if !p.kept.CompareAndSwap(isKept, notKept) {
		return
	}
	pl.kept.Add(-1)
	pl.closeKept(p)
}

// closeKept closes the connection of p, whose keeping the caller ended:
// its timer, its place with the connection watcher, the connection.
func (pl *poller) closeKept(p *parkedPoll) {
	p.timer.Stop()
	if w := pl.currentWatch(); w != nil {
		w.remove(p)
	}
	closeNow(p.conn)
}

// handBack returns the connections of answered polls to the http.Server,
// each as an idle connection of its poll's tenant until its next request.
func (pl *poller) handBack(polls []*parkedPoll) {
	if len(polls) == 0 {
		return
	}
	pl.mu.Lock()
	ln := pl.ln
	pl.mu.Unlock()
	conns := make([]net.Conn, len(polls))
	for i, p := range polls {
		conns[i] = p.conn
	}
	pl.s.conns.handedBack(polls)
	if !ln.handBack(conns...) {
		pl.s.conns.dropBack(conns)
	}
}

// drain waits until every parked poll has been answered, or ctx is done,
// then stops the connection watcher.
func (pl *poller) drain(ctx context.Context) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for pl.parked.Load() > 0 {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
	pl.mu.Lock()
	w := pl.watch
	pl.watch, pl.noWatch = nil, true
	pl.mu.Unlock()
	if w != nil {
		// Kept connections are idle between requests: close them, as the
		// http.Server's Shutdown closes its idle ones.
		for _, p := range w.keptPolls() {
			if pl.unkeep(p) {
				pl.closeKept(p) // the watcher is gone: only the timer and the connection
			}
		}
		w.close()
	}
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

// waiterCounts counts each tenant's waiting polls, and keeps the tenants
// by count, so that those holding the most are found without a look at
// every tenant.
type waiterCounts struct {
	n       map[string]int
	byCount map[int]map[string]struct{}
	top     int // the most any tenant holds; 0 when none waits
}

func newWaiterCounts() waiterCounts {
	return waiterCounts{n: map[string]int{}, byCount: map[int]map[string]struct{}{}}
}

func (w *waiterCounts) of(tenant string) int { return w.n[tenant] }

// add adds d (which may be negative) to tenant's count.
func (w *waiterCounts) add(tenant string, d int) {
	old := w.n[tenant]
	now := max(old+d, 0)
	if old > 0 {
		// An empty set of tenants stays, for the next to reach its
		// count: no allocation a poll.
		delete(w.byCount[old], tenant)
	}
	if now == 0 {
		delete(w.n, tenant)
	} else {
		w.n[tenant] = now
		b := w.byCount[now]
		if b == nil {
			b = map[string]struct{}{}
			w.byCount[now] = b
		}
		b[tenant] = struct{}{}
	}
	// The top goes down only as far as the tenant that held it went.
	w.top = max(w.top, now)
	for w.top > 0 && len(w.byCount[w.top]) == 0 {
		w.top--
	}
}

// most yields up to k of the tenants that hold the most waiting polls.
func (w *waiterCounts) most(k int) iter.Seq[string] {
	return func(yield func(string) bool) {
		n := 0
		for t := range w.byCount[w.top] {
			if n == k || !yield(t) {
				return
			}
			n++
		}
	}
}
