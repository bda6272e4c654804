package etcdstore

import (
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svcreg/svcreg/internal/retry"
)

// An etcd outage (no quorum, or this node cut off from every member) is,
// to the clients of this node, a registry that is down: a heartbeat that
// needs etcd answers 503, and once this node no longer counts on its lease
// (three quarters of the TTL after the last renewal it asked for), so does
// every other. Deadlines pass meanwhile while the clients retry. When etcd
// is back, every reaper would time those services out before their
// clients' retries got through, and the load balancers built from the
// registry would drop live backends.
//
// So, as after a restart of every node (design item 10), a service whose
// deadline passed during an outage of this node's is not timed out by this
// node until its full timeout has passed again since the outage ended; a
// live client heartbeats in that time. A node that could reach etcd
// throughout times such a service out as before: when only one node was
// cut off, the clients it failed went to the others (a load balancer, or
// several URLs), and a service that none of them heard from is dead.
// Timeouts stay conditional transactions, so every timeout is still
// committed once; after an outage of the whole registry, a service whose
// client died during it times out its full timeout after the outage.
// A shorter outage, which this node rides out on its lease, is a blip
// if its reaper noticed it (blip.go), and gives the same grace.
//
// A node that starts after an outage did not see it, and would time those
// services out at once. So each node shows the outages it leaves services
// to their grace for in its node key, and a node takes from the others'
// keys every outage that began before it joined (adopt). A node that was
// running shows an outage right after the renewal that ended it (they
// renew every third of the TTL, and retry at least every half), and
// writes its key again whenever another node registers, once it counts on
// its lease. Until each node that was running when it joined has written
// its key since, for a node TTL and a request timeout at most, a node
// that joined a running registry leaves the due services it does not
// hold to them: they time out the services of no outage within their
// reap interval, as ever.

// outages are the spans of time in which this node did not count on its
// lease, kept until their grace is over.
type outages struct {
	mu sync.Mutex
	// lastOK is when (the store's clock, Unix ns) this node asked for the
	// last lease renewal or registration that succeeded; 0 before the
	// first.
	lastOK int64
	spans  []outageSpan
	// gen counts the changes to spans; shown is the one the node key
	// shows.
	gen, shown int
	// joined is when this node first registered (the store's clock, Unix
	// ns): another node's outage that began before it is one this node
	// could not see.
	joined int64
	// blind is until when (Unix ns) this node, which joined a running
	// registry, leaves the due services it does not hold to the others;
	// 0 if it did not, or once each node that was running then wrote its
	// key since (waiting).
	blind int64
	// joinRev is the etcd revision of this node's first registration.
	// waiting are, from the first list of node keys after it (nil
	// before), the other nodes whose keys have not been written since:
	// each node writes its key again when another registers (ack), with
	// the outages it saw, so once none is left this node knows them all.
	joinRev int64
	waiting map[string]bool

	// The reaper's sight of etcd (see blips): reapOK is when (the store's
	// clock, Unix ns) the last reaper pass began that ended seeing etcd, 0
	// before the first; reapFailing that an etcd call of the reaper's
	// failed and none has succeeded since; reapInFlight when (monotonic) the
	// reaper sent its etcd call in flight, zero if none. blips are the
	// spans the reaper could not see etcd for, kept until their grace is
	// over; the node key does not show them.
	reapOK       int64
	reapFailing  bool
	reapInFlight time.Time
	blips        []outageSpan
}

// outageSpan is one outage: from the last renewal asked before it to the
// first that succeeded after it (Unix ns).
type outageSpan struct{ start, end int64 }

// maxGrace is the longest grace an outage gives: the longest heartbeat
// timeout (spec §7.4, 3 to 120 s).
const maxGrace = 120 * time.Second

// reached records that a renewal (or registration) asked for at askedAt
// succeeded at now (both by the store's clock), and returns the outage it
// ended: cutOff says the node no longer counted on its lease (see
// nodeLease.get: by both clocks, so a suspended machine's pause counts).
// ok is false if there was none.
func (o *outages) reached(askedAt, now time.Time, cutOff bool) (span outageSpan, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.spans = inGrace(o.spans, now.UnixNano())
	if cutOff && o.lastOK != 0 {
		span, ok = outageSpan{o.lastOK, now.UnixNano()}, true
		o.spans = append(o.spans, span)
		o.gen++
	}
	o.lastOK = max(o.lastOK, askedAt.UnixNano())
	return span, ok
}

// inGrace returns spans without those whose longest grace is over at now,
// in place.
func inGrace(spans []outageSpan, now int64) []outageSpan {
	return slices.DeleteFunc(spans, func(s outageSpan) bool { return now >= s.end+int64(maxGrace) })
}

// graced reports whether a service whose deadline (Unix ns) has passed at
// now, and whose heartbeat timeout is timeout, is not to be timed out yet,
// and until when: its deadline passed after the last renewal before an
// outage (this node's, or one it adopted), or after the start of the last
// reaper pass before a blip, whose grace (the timeout from the outage's
// or blip's end) runs until after now, or after the last renewal before
// the outage going on (cutOff: this node does not count on its lease
// now), or after the start of the last reaper pass before the blip going
// on (until is then 0, not known yet), or this node has just joined a
// running registry and does not hold the service (held: this node's
// memory has its deadline from a heartbeat it answered).
func (o *outages) graced(deadline int64, timeout time.Duration, now int64, cutOff, held bool) (until int64, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if cutOff && o.lastOK != 0 && deadline > o.lastOK || o.reaperBlind() && deadline > o.reapBase() {
		return 0, true
	}
	for _, spans := range [][]outageSpan{o.spans, o.blips} {
		for _, s := range spans {
			if end := s.end + int64(timeout); deadline > s.start && now < end {
				until = max(until, end)
			}
		}
	}
	if !held && now < o.blind {
		until = max(until, o.blind)
	}
	return until, until != 0
}

// join records that this node first registered at etcd revision rev,
// having asked at joined; if it joined a running registry, it leaves the
// due services it does not hold to the others until waitUntil at most
// (see waiting), else waitUntil is 0.
func (o *outages) join(joined, rev, waitUntil int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.joined != 0 {
		return
	}
	o.joined, o.joinRev, o.blind = joined, rev, waitUntil
}

// joinRevision is joinRev.
func (o *outages) joinRevision() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.joinRev
}

// nodesListed takes, at now, a list of the node keys (id to the revision
// each was last written at; this node's own left out): the first after
// this node joined names the nodes it waits for, each later one drops
// those written since or gone. It reports whether the wait ended with it
// (not if it had ended already, at its cap).
func (o *outages) nodesListed(written map[string]int64, now int64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if now >= o.blind {
		return false
	}
	if o.waiting == nil {
		o.waiting = map[string]bool{}
		for id, rev := range written {
			if rev <= o.joinRev {
				o.waiting[id] = true
			}
		}
	}
	for id := range o.waiting {
		if rev, ok := written[id]; !ok || rev > o.joinRev {
			delete(o.waiting, id)
		}
	}
	return o.endWait()
}

// nodeWritten records that node id's key was written at etcd revision
// rev, or deleted, seen at now, and reports whether the wait ended with it.
func (o *outages) nodeWritten(id string, rev int64, deleted bool, now int64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if now >= o.blind || !o.waiting[id] || !deleted && rev <= o.joinRev {
		return false
	}
	delete(o.waiting, id)
	return o.endWait()
}

func (o *outages) endWait() bool {
	if len(o.waiting) > 0 {
		return false
	}
	o.blind = 0
	return true
}

// ack makes the node key due to be written again (showOutages), so that
// a node that just registered knows this node's outages are in it.
func (o *outages) ack() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.gen++
}

// adopt takes, of another node's outages, the part before this node
// joined of each that began before it, whose grace may not be over at now,
// and returns those it did not have.
func (o *outages) adopt(spans []outageSpan, now int64) (added []outageSpan) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.joined == 0 {
		return nil
	}
	for _, s := range spans {
		s.end = min(s.end, o.joined)
		if s.start >= s.end || now >= s.end+int64(maxGrace) || slices.Contains(o.spans, s) {
			continue
		}
		o.spans = append(o.spans, s)
		added = append(added, s)
	}
	if len(added) > 0 {
		o.gen++
	}
	return added
}

// going returns, while this node does not count on its lease, the outage
// going on, up to now.
func (o *outages) going(now int64) (outageSpan, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.lastOK == 0 || now <= o.lastOK {
		return outageSpan{}, false
	}
	return outageSpan{o.lastOK, now}, true
}

// toShow returns the outages the node key is to show, their generation,
// and whether it does not show them yet.
func (o *outages) toShow() (spans []outageSpan, gen int, unshown bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.spans), o.gen, o.gen != o.shown
}

// showing records that the node key shows the outages of generation gen.
func (o *outages) showing(gen int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.shown = max(o.shown, gen)
}

// over reports whether no outage's grace can be left at now, and none is
// going on.
func (o *outages) over(now int64, cutOff bool) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if cutOff && o.lastOK != 0 || now < o.blind || o.reaperBlind() {
		return false
	}
	for _, spans := range [][]outageSpan{o.spans, o.blips} {
		for _, s := range spans {
			if now < s.end+int64(maxGrace) {
				return false
			}
		}
	}
	return true
}

// outageJSON is an outage as a node key shows it, by the node's clock.
type outageJSON struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

func (s outageSpan) json() outageJSON {
	return outageJSON{time.Unix(0, s.start).UTC(), time.Unix(0, s.end).UTC()}
}

// adoptOutages adopts the outages that node's key shows (see outages.adopt),
// and logs those it did not have.
func (s *Store) adoptOutages(node string, shown []outageJSON) {
	if len(shown) == 0 {
		return
	}
	spans := make([]outageSpan, 0, len(shown))
	for _, o := range shown {
		spans = append(spans, outageSpan{o.From.UnixNano(), o.To.UnixNano()})
	}
	for _, sp := range s.outages.adopt(spans, s.now().UnixNano()) {
		s.log.Warn("another node was without etcd before this node joined; services whose deadline passed meanwhile get their full timeout again before this node times them out",
			"node", node, "outage", time.Duration(sp.end-sp.start).Round(time.Millisecond), "since", time.Unix(0, sp.start).UTC())
	}
}

// kickShow wakes showOutages: after a renewal or a registration
// (renewed), and to answer a node that registered.
func (s *Store) kickShow() {
	select {
	case s.showKick <- struct{}{}:
	default:
	}
}

// showOutages writes this node's key again, on its lease, whenever it does
// not show every outage this node leaves services to their grace for, so
// that a node that joins later adopts them; it runs until the store
// closes. It is woken after each renewal and registration (kickShow), and
// writes apart from them, so that a slow write never holds up a renewal;
// the write is hedged, as a renewal is sent to several members. One that
// fails is tried again after a short backoff while the lease is counted
// on; one that finds the key on another lease, or gone, waits for the
// registration that follows.
func (s *Store) showOutages() {
	pause := retry.Backoff{Min: 50 * time.Millisecond, Max: max(s.opts.NodeTTL/4, 100*time.Millisecond)}
	var again <-chan time.Time
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.showKick:
		case <-again:
		}
		again = nil
		id, alive := s.lease.get()
		if !alive {
			continue
		}
		if err := s.showOutagesOn(id); err != nil {
			if s.ctx.Err() == nil {
				s.log.Debug("show outages in the node key", "err", err)
			}
			again = time.After(pause.Next())
			continue
		}
		pause.Reset()
	}
}

// showOutagesOn writes this node's key on lease id, if it does not show
// every outage yet. The write is conditioned on the key's being as this
// node last wrote it (keyRev), so that a send of an earlier write that
// etcd commits late (a hedge's other send, a send to a member that
// stopped answering) cannot land over a later one. When the key was
// written since (such a write, or one whose answer was lost), it writes
// again over it, even if it holds the same value: that write may be from
// before the registration this one answers.
func (s *Store) showOutagesOn(id clientv3.LeaseID) error {
	_, gen, unshown := s.outages.toShow()
	if !unshown {
		return nil
	}
	value, err := json.Marshal(s.nodeValue())
	if err != nil {
		return err
	}
	key := s.k.node(s.nodeID)
	for range 3 {
		resp, err := s.txnWithin(s.ctx, s.opts.RequestTimeout, hedged, "show outages in the node key",
			[]clientv3.Cmp{
				clientv3.Compare(clientv3.LeaseValue(key), "=", int64(id)),
				clientv3.Compare(clientv3.ModRevision(key), "=", s.keyRev.Load()),
			},
			[]clientv3.Op{clientv3.OpPut(key, string(value), clientv3.WithLease(id))},
			[]clientv3.Op{clientv3.OpGet(key)})
		if err != nil {
			return err
		}
		if resp.Succeeded {
			storeLater(&s.keyRev, resp.Header.GetRevision())
			s.outages.showing(gen)
			return nil
		}
		kv := first(resp.Responses[0])
		if kv == nil || kv.Lease != int64(id) {
			return nil // gone, or on another lease: the registration that follows writes it
		}
		storeLater(&s.keyRev, kv.ModRevision)
	}
	return errors.New("the node key was written again and again since this node last wrote it")
}

// maybeGraced reports whether a service due at deadline may be left to
// its grace whatever its timeout: before the service's record is read.
// held: this node holds it.
func (s *Store) maybeGraced(deadline, now int64, held bool) bool {
	_, alive := s.lease.get()
	_, ok := s.outages.graced(deadline, maxGrace, now, !alive, held)
	return ok
}

// graced reports whether this node leaves a due service, its heartbeat
// timeout given in seconds, to its grace after an outage (see outages).
// held: its deadline is this node's memory of a heartbeat it answered.
func (s *Store) graced(deadline int64, timeoutSeconds int, now int64, held bool) bool {
	_, ok := s.gracedUntil(deadline, timeoutSeconds, now, held)
	return ok
}

// gracedUntil is graced, with when the grace ends (0 while the outage goes
// on).
func (s *Store) gracedUntil(deadline int64, timeoutSeconds int, now int64, held bool) (int64, bool) {
	_, alive := s.lease.get()
	return s.outages.graced(deadline, graceOf(timeoutSeconds), now, !alive, held)
}

// gracedDue are the deadline index keys of due services left to their
// grace, with when it ends (Unix ns): the reaper and the rectifying reads
// pass over them without reading them again, and without asking their
// holders to hand them over, until then.
type gracedDue struct {
	mu    sync.Mutex
	m     map[string]int64
	swept int // len(m) after the last sweep
}

func (g *gracedDue) add(key string, until int64, now int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil {
		g.m = map[string]int64{}
	}
	g.m[key] = until
	if len(g.m) > 2*g.swept+64 {
		for k, u := range g.m {
			if u <= now {
				delete(g.m, k)
			}
		}
		g.swept = len(g.m)
	}
}

// clear forgets every key: once no outage's grace can be left, those of
// services that heartbeat or timed out since are not looked up again.
func (g *gracedDue) clear() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.m, g.swept = nil, 0
}

// has reports whether key is left to its grace at now.
func (g *gracedDue) has(key string, now int64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	until, ok := g.m[key]
	if ok && until <= now {
		delete(g.m, key)
		return false
	}
	return ok
}

// graceOf is the grace of a service whose heartbeat timeout is seconds: the
// timeout, within the range the API takes.
func graceOf(seconds int) time.Duration {
	return min(max(time.Duration(seconds)*time.Second, 3*time.Second), maxGrace)
}

// impliedTimeout is the heartbeat timeout a heartbeat state carries: its
// deadline less when it was last seen (a copy has no service record), in
// seconds; the longest if it was never seen.
func impliedTimeout(hb hbRecord) int {
	if hb.LastSeen == 0 {
		return int(maxGrace / time.Second)
	}
	return int((time.Duration(hb.Deadline-hb.LastSeen*int64(time.Millisecond)) + time.Second/2) / time.Second)
}

// renewed records a renewal or registration of lease id, asked for at
// asked (monotonic) and askedAt (the store's clock), that etcd granted for
// ttl seconds: the outage it ended, if the node no longer counted on its
// lease (logged), first, then the lease (in that order, a reaper never
// finds the lease counted on while the outage is not yet recorded); then
// it wakes showOutages.
func (s *Store) renewed(id clientv3.LeaseID, asked, askedAt time.Time, ttl int64) {
	_, alive := s.lease.get()
	if span, ok := s.outages.reached(askedAt, s.now(), !alive); ok {
		s.metrics.outages.Inc()
		s.log.Warn("etcd answers again after an outage; services whose deadline passed meanwhile get their full timeout again before this node times them out",
			"outage", time.Duration(span.end-span.start).Round(time.Millisecond),
			"since", time.Unix(0, span.start).UTC())
	}
	s.lease.set(id, asked, ttl)
	s.kickShow()
}
