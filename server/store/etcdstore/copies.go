package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svcreg/svcreg/internal/retry"
	"github.com/svcreg/svcreg/server/store"
)

// Copies of held heartbeat state at a peer node.
//
// A node answers a heartbeat of a service it holds from memory only once
// another live node, its peer, has a copy of the new state (the deadline
// and tokens, under the heartbeat key's revision): the copy is sent over
// TCP (peerwire.go), batched, sealed with a key derived from the
// registry's secret, and acknowledged before the client gets its token. The
// peer times the service out at that deadline, as the holder does, each
// timeout conditional on the heartbeat key's revision and on the peer's
// own node key being on the lease it took the copy under; and it answers
// hand-over requests for the service when the holder does not. So when
// the holder dies with its clients, its services still time out within
// two reap intervals of their precise deadlines, not at the stored ones
// (up to the heartbeat slack later), and a client that moves to another
// node gets its service handed over within a fraction of a second,
// without waiting for the dead holder's lease.
//
// Safety rests on these rules:
//
//   - a holder answers from memory only after the peer it copies to
//     acknowledged the copy, and only if that peer is still its peer
//     afterwards (no change of peer meanwhile); if the copy fails, it
//     writes the heartbeat to etcd, which moves the key's revision and
//     makes every copy stale;
//   - a holder keeps its peer while the peer's node key is there on the
//     same lease (unless no request ever reached it); it moves to another
//     only once that key is gone, after which no timeout or hand-over of
//     the old peer's can commit (they are conditional on that key's
//     lease);
//   - a peer that starts timing a copy out or handing it over refuses
//     every later copy of that service under the same revision (the
//     holder then writes to etcd, conditional on that revision: one of
//     the two wins), and ignores a copy older than the one it has;
//   - a holder whose memory may be stale reads etcd before it answers:
//     a token it did not hand out may be one minted after its peer
//     handed the service over; and when it leaves a peer, the old peer's
//     fences go with it, so every held service goes to etcd (conditional
//     on the revision it knows) before its next answer from memory;
//   - a failed hand-over from a copy is tried again, never replaced by a
//     timeout: a heartbeat may be waiting for it.
//
// With no other live node (or none this node could ever connect to), the
// holder answers from memory as it did without copies: a service whose
// holder dies with its client then times out at its stored deadline.

// copyTimeout bounds a copy's round trip; a heartbeat waits for it.
const copyTimeout = time.Second

// copyBatch is one request from a holder to its peer (its encoding is in
// peercodec.go).
type copyBatch struct {
	From      string
	FromLease int64
	To        string
	ToLease   int64
	Items     []copyItem
}

// copyItem is the state of one held service.
type copyItem struct {
	Tenant string
	ID     string
	// HBRev is the heartbeat key's mod revision the state is valid at;
	// Stored the deadline stored there (its deadline index entry).
	HBRev  int64
	Stored int64
	State  hbRecord
}

// copyAnswer is the peer's answer: for each item, whether it took it; or
// why it took none.
type copyAnswer struct {
	OK  []bool
	Err string
}

// peerInfo is a live node as its node key says.
type peerInfo struct {
	id    string
	lease int64
	addr  string
}

// nodeValue is the value of a node key.
type nodeValue struct {
	Started string `json:"started"`
	// Peer is where the node takes copies of held heartbeat state.
	Peer string `json:"peer,omitempty"`
	nodeSettings
	// Outages are those the node leaves services to their grace for
	// (outage.go).
	Outages []outageJSON `json:"outages,omitempty"`
}

// nodeSettings are a node's settings that every node must share
// (checkSettings), as its key shows them: NodeTTL, RequestTimeout, and
// HeartbeatSlack ("0s": the default).
type nodeSettings struct {
	NodeTTL        string `json:"node_ttl,omitempty"`
	RequestTimeout string `json:"request_timeout,omitempty"`
	HeartbeatSlack string `json:"heartbeat_slack,omitempty"`
}

// peers is this node's view of the live nodes and its choice of peer.
type peers struct {
	mu     sync.Mutex
	nodes  map[string]peerInfo
	target peerInfo // zero: none
	// acked: the target may have taken a copy (it answered one, or a
	// request to it failed after it was sent); this node then keeps it
	// while its node key lives. One that was never reached may be left
	// for another (unreachable, until then).
	acked       bool
	unreachable map[string]time.Time
	passOver    time.Duration // see passOverFor
	// warned: until when failed copies to the target go unlogged.
	warned time.Time
	// failed: when a copy to the target last failed. For a second after,
	// no copy is sent, rather than each heartbeat waiting up to
	// copyTimeout for a peer that does not answer: a held service is
	// written once, then answered as at a node without a peer (copyTo).
	failed time.Time
	// gen counts the changes of target; ready is the last gen after which
	// every held service was marked to be read again (afterPeerChange).
	gen, ready uint64
}

// copyReq is one copy waiting for its batch.
type copyReq struct {
	item copyItem
	done chan copyResult
}

type copyResult struct {
	ok     bool
	target peerInfo
	err    error
}

// copyEntry is a copy this node keeps for a holder.
type copyEntry struct {
	from      string
	fromLease int64
	lease     int64 // this node's lease it was taken under
	hbRev     int64
	stored    int64
	state     hbRecord
	// fenced: being timed out or handed over, or done; copies under
	// hbRev are refused. pending: fenced by a timeout whose outcome is
	// unknown; the reaper tries it again. pendingRel: fenced by a
	// hand-over (of this request key) whose outcome is unknown; the
	// reaper tries the hand-over again, never a timeout instead.
	fenced, pending bool
	pendingRel      string
}

// copies are the copies this node keeps, by service.
type copies struct {
	mu sync.Mutex
	m  map[hbKey]*copyEntry
}

// startPeer listens for copies and starts the node view and the copy
// senders. It returns the address to advertise; "" if copies are off.
func (s *Store) startPeer() (string, error) {
	s.copies.m = map[hbKey]*copyEntry{}
	s.peers.nodes = map[string]peerInfo{}
	s.peers.unreachable = map[string]time.Time{}
	if s.opts.PeerListen == "" {
		return "", nil
	}
	ln, err := net.Listen("tcp", s.opts.PeerListen)
	if err != nil {
		return "", fmt.Errorf("listen for peer copies on %s: %w", s.opts.PeerListen, err)
	}
	addr := s.opts.PeerAdvertise
	if addr == "" {
		addr = ln.Addr().String()
	}
	s.wg.Go(func() { s.servePeers(ln) })
	s.wg.Go(func() {
		<-s.ctx.Done()
		ln.Close()
	})
	s.copyQueue = newCopyQueue()
	s.wg.Go(s.sendCopies)
	return addr, nil
}

// takeCopies takes a batch of copies from a holder (opened with the
// registry's secret) and returns the answer; b is where the batch is
// decoded, reused from one to the next.
func (s *Store) takeCopies(payload []byte, b *copyBatch) copyAnswer {
	if err := b.decode(payload); err != nil {
		s.metrics.copyRefusals.WithLabelValues("undecodable").Inc()
		return copyAnswer{Err: "undecodable batch (a node of another version?)"}
	}
	lease, alive := s.lease.get()
	if b.To != s.nodeID || b.ToLease != int64(lease) || !alive {
		// Meant for this node on another lease, or this node may be dead
		// to the others: it takes nothing it might not be able to honour.
		s.metrics.copyRefusals.WithLabelValues("lease").Inc()
		return copyAnswer{Err: "addressed to another lease of it (it registered again since), or it is not sure of its lease now (cut off from etcd)"}
	}
	ans := copyAnswer{OK: make([]bool, len(b.Items))}
	s.copies.mu.Lock()
	for i, it := range b.Items {
		ans.OK[i] = s.copies.take(b.From, b.FromLease, int64(lease), it)
	}
	s.copies.mu.Unlock()
	return ans
}

// take keeps a copy, and reports whether the holder may count on it.
// Called with c.mu held.
func (c *copies) take(from string, fromLease, lease int64, it copyItem) bool {
	k := hbKey{it.Tenant, it.ID}
	e := c.m[k]
	switch {
	case e == nil || it.HBRev > e.hbRev:
		c.m[k] = &copyEntry{from: from, fromLease: fromLease, lease: lease, hbRev: it.HBRev, stored: it.Stored, state: it.State}
		return true
	case it.HBRev < e.hbRev || e.fenced:
		return false
	case store.SeqAtOrAfter(it.State.Seq, e.state.Seq):
		e.from, e.fromLease, e.lease, e.stored, e.state = from, fromLease, lease, it.Stored, it.State
		return true
	default:
		return true // an older copy of what it has: nothing to do
	}
}

// copyTo sends e's state next to this node's peer and waits for its
// answer. It reports whether the node may answer from memory (ok): the
// peer took it and is still the peer (copied), or there is no peer to copy
// to, or the peer is failing and no copy was sent at the heartbeat key's
// revision. A failing peer may hold the last copy sent, older than next,
// and hand the service over from it should this node die: so a heartbeat
// is written once (its revision fences that copy off), and after it the
// node goes on as one without a peer, rather than writing every
// heartbeat to etcd for as long as the peer fails (one account's
// heartbeats would set etcd's write rate). Called with e locked.
func (s *Store) copyTo(ctx context.Context, e *hbEntry, next hbRecord) (ok, copied bool) {
	if s.copyQueue == nil {
		return true, false
	}
	p := s.peerState()
	switch {
	case !p.ready:
		return false, false
	case p.target.id == "":
		return true, false
	case p.failing:
		return e.hbRev > e.sentRev, false
	}
	res := s.sendCopy(ctx, e.copyOf(next))
	if res.err != nil || !res.ok || res.target != p.target {
		return false, false
	}
	// The peer did not change meanwhile: a new one has no fence against
	// this node's memory, which may be stale (afterPeerChange).
	ok = s.peerState().gen == p.gen
	return ok, ok
}

// copyHeld sends e's state to the peer after a commit made this node its
// holder, so that the peer knows its deadline before the next heartbeat.
// Its outcome does not matter: the next answer from memory needs a copy.
func (s *Store) copyHeld(e *hbEntry) {
	if s.copyQueue == nil || !e.mine {
		return
	}
	if p := s.peerState(); p.target.id == "" || p.failing || !p.ready {
		return
	}
	s.sendCopy(s.ctx, e.copyOf(e.mem))
}

// copyOf is the copy of state, a state of the service e holds at the
// revision e knows, noted as sent (sentRev). Called with e locked.
func (e *hbEntry) copyOf(state hbRecord) copyItem {
	e.sentRev = e.hbRev
	return copyItem{Tenant: e.k.tenant, ID: e.k.id, HBRev: e.hbRev, Stored: e.hb.Deadline, State: state}
}

// copyQueue holds the copies waiting for the sender, one a node, on one
// connection to the peer, with one batch on its way at a time: the copies
// that arrive meanwhile go together in the next, so each round trip (30–40
// µs of CPU at both ends together on a two-core virtual machine, most of
// it the two writes) carries more of them. Two senders gave smaller
// batches and no lower CPU per heartbeat. Heartbeats append to the queue
// without blocking and wait for their own answer; the sender, woken by the
// bell when the queue stops being empty, takes what has gathered. So a
// heartbeat is woken once, by its answer, and a batch costs the sender one
// wake-up at most.
type copyQueue struct {
	mu      sync.Mutex
	pending []*copyReq
	stopped bool          // the sender has stopped: nothing is queued
	bell    chan struct{} // a token when copies may be pending
	// want, if not 0, is how many pending copies ring enough: the
	// sender is lingering for them (gather).
	want   int
	enough chan struct{}
}

func newCopyQueue() *copyQueue {
	return &copyQueue{bell: make(chan struct{}, 1), enough: make(chan struct{}, 1)}
}

// add queues r, reporting false if the sender has stopped.
func (q *copyQueue) add(r *copyReq) bool {
	q.mu.Lock()
	if q.stopped {
		q.mu.Unlock()
		return false
	}
	q.pending = append(q.pending, r)
	first := len(q.pending) == 1
	enough := q.want > 0 && len(q.pending) >= q.want
	if enough {
		q.want = 0
	}
	q.mu.Unlock()
	if first {
		select {
		case q.bell <- struct{}{}:
		default:
		}
	}
	if enough {
		select {
		case q.enough <- struct{}{}:
		default:
		}
	}
	return true
}

// gather waits until n copies are pending, linger has passed, or done is
// closed.
func (q *copyQueue) gather(n int, linger time.Duration, done <-chan struct{}) {
	select {
	case <-q.enough: // left from an earlier gather that ended otherwise
	default:
	}
	q.mu.Lock()
	if len(q.pending) >= n {
		q.mu.Unlock()
		return
	}
	q.want = n
	q.mu.Unlock()
	t := time.NewTimer(linger)
	select {
	case <-q.enough:
	case <-t.C:
	case <-done:
	}
	t.Stop()
	q.mu.Lock()
	q.want = 0
	q.mu.Unlock()
}

// take moves up to max of the queued copies, oldest first, to batch.
func (q *copyQueue) take(batch []*copyReq, max int) []*copyReq {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := min(len(q.pending), max)
	batch = append(batch, q.pending[:n]...)
	rest := copy(q.pending, q.pending[n:])
	clear(q.pending[rest:])
	q.pending = q.pending[:rest]
	return batch
}

// withdraw takes r out of the queue, reporting false if the sender has
// taken it already (it will be answered).
func (q *copyQueue) withdraw(r *copyReq) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	i := slices.Index(q.pending, r)
	if i < 0 {
		return false
	}
	q.pending = slices.Delete(q.pending, i, i+1)
	return true
}

// stop refuses copies from now on and returns those still queued.
func (q *copyQueue) stop() []*copyReq {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.stopped = true
	left := q.pending
	q.pending = nil
	return left
}

// maxCopyBatch bounds the copies in one request.
const maxCopyBatch = 256

// copyGather is how many copies end the sender's linger (CopyLinger):
// beyond it, a batch's round trip is shared thinly enough.
const copyGather = 16

// errCopiesStopped answers the copies of a store that is closing.
var errCopiesStopped = fmt.Errorf("%w: store closed", store.ErrUnavailable)

// sendCopy queues one copy and waits for its batch's answer. A copy whose
// ctx ends while it is still queued is withdrawn, never sent; one already
// on its way is waited for (a round trip is bounded by copyTimeout). A
// closing store answers at once.
func (s *Store) sendCopy(ctx context.Context, it copyItem) copyResult {
	if s.ctx.Err() != nil {
		return copyResult{err: errCopiesStopped}
	}
	req := copyReqs.Get().(*copyReq)
	req.item = it
	if !s.copyQueue.add(req) {
		putCopyReq(req)
		return copyResult{err: errCopiesStopped}
	}
	select {
	case r := <-req.done:
		putCopyReq(req)
		return r
	case <-ctx.Done():
		if s.copyQueue.withdraw(req) {
			putCopyReq(req)
			return copyResult{err: ctx.Err()}
		}
	case <-s.ctx.Done():
		return copyResult{err: errCopiesStopped} // req may still be answered: not reused
	}
	select {
	case r := <-req.done:
		putCopyReq(req)
		return r
	case <-s.ctx.Done():
		return copyResult{err: errCopiesStopped}
	}
}

// copyReqs are copy requests (and their answer channels) to reuse: one is
// taken for every heartbeat answered from memory. A request goes back only
// once its answer was received, or it was withdrawn unsent, so nothing
// can answer it afterwards.
var copyReqs = sync.Pool{New: func() any { return &copyReq{done: make(chan copyResult, 1)} }}

func putCopyReq(r *copyReq) {
	r.item = copyItem{}
	copyReqs.Put(r)
}

// sendCopies is the sender: it takes the queued copies, up to
// maxCopyBatch at a time, and sends them to the peer in one request. A
// copy that finds it idle waits up to CopyLinger for copyGather copies to
// go with; those that arrive while a batch is on its way go at once after
// it. Every
// copy taken is answered; when the store closes, the sender stops after
// the batch on its way and answers those still queued with
// errCopiesStopped.
func (s *Store) sendCopies() {
	q := s.copyQueue
	defer func() {
		for _, r := range q.stop() {
			r.done <- copyResult{err: errCopiesStopped}
		}
	}()
	batch := make([]*copyReq, 0, maxCopyBatch)
	var pc peerConn
	defer pc.close()
	for {
		select {
		case <-q.bell:
		case <-s.ctx.Done():
			return
		}
		if d := s.opts.CopyLinger; d > 0 {
			// The queue was empty: let others join the first.
			q.gather(copyGather, d, s.ctx.Done())
		}
		for s.ctx.Err() == nil {
			if batch = q.take(batch[:0], maxCopyBatch); len(batch) == 0 {
				break
			}
			target := s.peerState().target
			oks, err := s.postCopies(&pc, target, batch)
			s.metrics.copyBatch.Observe(float64(len(batch)))
			for i, r := range batch {
				if err != nil {
					r.done <- copyResult{err: err, target: target}
				} else {
					r.done <- copyResult{ok: oks[i], target: target}
				}
			}
			clear(batch)
		}
	}
}

// postCopies sends a batch to target.
func (s *Store) postCopies(pc *peerConn, target peerInfo, batch []*copyReq) ([]bool, error) {
	if target.id == "" {
		return nil, errors.New("no peer")
	}
	lease, _ := s.lease.get()
	b := copyBatch{From: s.nodeID, FromLease: int64(lease), To: target.id, ToLease: target.lease, Items: pc.items[:0]}
	for _, r := range batch {
		b.Items = append(b.Items, r.item)
	}
	pc.items, pc.payload = b.Items, b.appendTo(pc.payload[:0])
	defer pc.reuse()
	start := time.Now()
	a, err := s.roundTrip(pc, target, pc.payload)
	s.metrics.copyTime.Observe(time.Since(start).Seconds())
	if err == nil && len(a.OK) != len(batch) {
		err = fmt.Errorf("peer %s answered %d of %d copies", target.id, len(a.OK), len(batch))
	}
	if err != nil {
		s.metrics.copyFailures.Inc()
		s.peerFailed(target, err)
		return nil, err
	}
	s.peerAcked(target)
	return a.OK, nil
}

// peerSnapshot is this node's peer as peerState saw it.
type peerSnapshot struct {
	target peerInfo
	// failing: a copy to it failed within the last second. ready: the
	// held services were marked since it became the peer
	// (afterPeerChange). gen: the change of peer it came with.
	failing, ready bool
	gen            uint64
}

// hasPeer reports whether copies are on and this node has a peer ready to
// take them.
func (s *Store) hasPeer() bool {
	p := s.peerState()
	return s.copyQueue != nil && p.target.id != "" && p.ready
}

// peerState returns this node's peer and its state.
func (s *Store) peerState() peerSnapshot {
	s.peers.mu.Lock()
	defer s.peers.mu.Unlock()
	p := &s.peers
	return peerSnapshot{target: p.target, failing: time.Since(p.failed) < time.Second, ready: p.ready == p.gen, gen: p.gen}
}

func (s *Store) peerAcked(target peerInfo) {
	s.peers.mu.Lock()
	defer s.peers.mu.Unlock()
	if s.peers.target == target {
		s.peers.acked = true
	}
}

// peerFailed notes a failed copy. A peer that never took one is left for
// another for a while; one that did stays this node's peer while it lives.
func (s *Store) peerFailed(target peerInfo, err error) {
	s.peers.mu.Lock()
	defer s.peers.mu.Unlock()
	if s.peers.target != target {
		return
	}
	s.peers.failed = time.Now()
	// Only a peer that was never reached is passed over. A request that
	// failed later (a timeout, a lost answer) may have been taken: that
	// peer could then time out a service this node goes on answering from
	// memory, unless it stays the peer, to which every later copy goes.
	var de *dialError
	if !errors.As(err, &de) {
		s.peers.acked = true
	}
	if s.peers.acked {
		// Said once per peer, then once a minute while it lasts.
		if now := time.Now(); now.After(s.peers.warned) {
			s.log.Warn("copy heartbeat state to peer node; meanwhile writing each held service's next heartbeat to etcd, then answering as a node without a peer", "peer", target.id, "addr", target.addr, "err", err)
			s.peers.warned = now.Add(time.Minute)
		}
		return
	}
	s.log.Warn("cannot reach peer node for heartbeat copies; trying another (check its --etcd-peer-listen and --etcd-peer-advertise)", "peer", target.id, "addr", target.addr, "err", err)
	s.peers.unreachable[target.id] = time.Now().Add(s.peers.passOverFor())
	s.choosePeer()
	// Then it is a candidate again: a node left with no peer chooses
	// anew.
	time.AfterFunc(s.peers.passOverFor(), func() {
		s.peers.mu.Lock()
		defer s.peers.mu.Unlock()
		if s.ctx.Err() == nil {
			s.choosePeer()
		}
	})
}

// passOverFor is how long a peer that could not be reached is passed
// over: 30 s, or passOver if set.
func (p *peers) passOverFor() time.Duration {
	if p.passOver > 0 {
		return p.passOver
	}
	return 30 * time.Second
}

// choosePeer keeps this node's peer while its node key lives on the same
// lease, and otherwise takes the next live node after this one (by id)
// that takes copies, then sends it every held service. Called with
// peers.mu held.
func (s *Store) choosePeer() {
	p := &s.peers
	if t := p.target; t.id != "" {
		if cur, ok := p.nodes[t.id]; ok && cur.lease == t.lease && (p.acked || p.unreachable[t.id].IsZero()) {
			return
		}
	}
	now := time.Now()
	var ids []string
	for id, n := range p.nodes {
		if id != s.nodeID && n.addr != "" && !now.Before(p.unreachable[id]) {
			ids = append(ids, id)
		}
	}
	for id, until := range p.unreachable {
		if !now.Before(until) {
			delete(p.unreachable, id)
		}
	}
	slices.Sort(ids)
	next := peerInfo{}
	if len(ids) > 0 {
		i, _ := slices.BinarySearch(ids, s.nodeID)
		next = p.nodes[ids[i%len(ids)]]
	}
	if next == p.target {
		return
	}
	old := p.target
	p.target, p.acked, p.warned, p.failed = next, false, time.Time{}, time.Time{}
	// Leaving a peer takes its fences with it: the held services are
	// marked before any is answered from memory again. Coming from none
	// (once the last change was done with) needs no marking.
	mark := old.id != "" || p.ready != p.gen
	p.gen++
	if !mark {
		p.ready = p.gen
	}
	s.log.Info("peer for heartbeat copies", "peer", next.id, "addr", next.addr, "was", old.id)
	if s.ctx.Err() == nil {
		gen := p.gen
		s.wg.Go(func() { s.afterPeerChange(gen, mark) })
	}
}

// afterPeerChange readies this node for its new peer (or none). If mark
// (it left a peer), it first marks every held service to go to etcd before
// its next answer from memory, and until they are marked, no heartbeat is
// answered from memory: the old peer may have handed services over from
// its copies while this node did not answer (cut off from etcd, or slow),
// so that this node's memory of them is stale, and the old peer's fence
// against that memory is gone with it. Then the new peer gets a copy of
// each held service, many at once so that they go in batches, until the
// peer changes again.
func (s *Store) afterPeerChange(gen uint64, mark bool) {
	held := s.hb.heldBy("")
	if mark {
		for _, e := range held {
			e.mu.Lock()
			if e.mine {
				e.verify = true
			}
			e.mu.Unlock()
		}
	}
	s.peers.mu.Lock()
	current := s.peers.gen == gen
	if current {
		s.peers.ready = gen
	}
	target := s.peers.target
	s.peers.mu.Unlock()
	if !current || target.id == "" {
		return
	}
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, e := range held {
		if s.peerState().target != target || s.ctx.Err() != nil {
			return
		}
		e.mu.Lock()
		var it copyItem
		ok := !e.dead && e.mine
		if ok {
			it = e.copyOf(e.mem)
		}
		e.mu.Unlock()
		if !ok {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			s.sendCopy(s.ctx, it)
		})
	}
}

// watchNodes keeps the view of live nodes (and so the choice of peer,
// with copies on) until the store closes, and tells this node's outages
// what the keys show (outage.go).
func (s *Store) watchNodes() {
	prefix := s.k.nodes()
	parse := func(kv *mvccpb.KeyValue) (string, nodeValue) {
		var v nodeValue
		if json.Unmarshal(kv.Value, &v) != nil {
			v = nodeValue{} // a node key from before copies: no peer address
		}
		return strings.TrimPrefix(string(kv.Key), prefix), v
	}
	choose := func() {
		if s.copyQueue != nil {
			s.choosePeer()
		}
	}
	// seen is another node's key as a list or an event showed it, for
	// the outages, which are told outside peers.mu (heartbeats take it).
	type seen struct {
		id      string
		outages []outageJSON
		// answer: the node registered since this one last looked; it
		// waits for this node's key to be written again, which shows
		// every outage this node had once it counts on its lease.
		answer  bool
		rev     int64 // the key's ModRevision
		deleted bool
	}
	tell := func(n seen) {
		s.adoptOutages(n.id, n.outages)
		if n.answer {
			s.outages.ack()
			s.kickShow()
		}
	}
	waited := func(ended bool) {
		if ended {
			// Due services left to the others meanwhile are looked at
			// again: gracedDue holds them until the cap.
			s.gracedDue.clear()
			s.log.Debug("every node running when this one joined has written its key since: it times out due services it does not hold")
		}
	}
	s.follow("list nodes", prefix, nil, nil,
		func(kvs []*mvccpb.KeyValue) {
			joinRev := s.outages.joinRevision()
			var all []seen
			written := map[string]int64{}
			s.peers.mu.Lock()
			old := maps.Clone(s.peers.nodes)
			clear(s.peers.nodes)
			for _, kv := range kvs {
				id, v := parse(kv)
				s.peers.nodes[id] = peerInfo{id: id, lease: kv.Lease, addr: v.Peer}
				if id == s.nodeID {
					continue
				}
				// Registered after this node, and not seen yet: before its
				// first list, or while the watch was down.
				n, ok := old[id]
				all = append(all, seen{id: id, outages: v.Outages, answer: (!ok || n.lease != kv.Lease) && kv.CreateRevision > joinRev})
				written[id] = kv.ModRevision
			}
			choose()
			s.peers.mu.Unlock()
			for _, n := range all {
				tell(n)
			}
			waited(s.outages.nodesListed(written, s.now().UnixNano()))
		},
		func(evs []*clientv3.Event) {
			var all []seen
			s.peers.mu.Lock()
			for _, ev := range evs {
				id, v := parse(ev.Kv)
				old, known := s.peers.nodes[id]
				if ev.Type == clientv3.EventTypeDelete {
					delete(s.peers.nodes, id)
					if known && id != s.nodeID {
						s.log.Info("registry node gone (stopped, or its lease expired)", "node", id)
						all = append(all, seen{id: id, rev: ev.Kv.ModRevision, deleted: true})
					}
					continue
				}
				s.peers.nodes[id] = peerInfo{id: id, lease: ev.Kv.Lease, addr: v.Peer}
				if id == s.nodeID {
					continue
				}
				fresh := !known || old.lease != ev.Kv.Lease
				if fresh {
					s.log.Info("registry node running", "node", id, "peer_addr", v.Peer)
				}
				all = append(all, seen{id: id, outages: v.Outages, answer: fresh, rev: ev.Kv.ModRevision})
			}
			choose()
			s.peers.mu.Unlock()
			for _, n := range all {
				tell(n)
				waited(s.outages.nodeWritten(n.id, n.rev, n.deleted, s.now().UnixNano()))
			}
		})
}

// nodeAlive reports whether the view has node id on lease.
func (s *Store) nodeAlive(id string, lease int64) bool {
	s.peers.mu.Lock()
	defer s.peers.mu.Unlock()
	n, ok := s.peers.nodes[id]
	return ok && n.lease == lease
}

// copyDue is a copy whose deadline has passed, or whose timeout is pending.
type copyDue struct {
	k hbKey
	e copyEntry
	// wasPending: a timeout of it sent before this one may still land.
	wasPending bool
}

// reapCopies times out the services of tenant (all if empty) whose copies
// here are past their deadline, fencing each first, and forgets the
// copies no holder can send again (past their stored deadline).
func (s *Store) reapCopies(ctx context.Context, tenant string) error {
	if s.copyQueue == nil {
		return nil
	}
	now := s.now().UnixNano()
	byTenant := map[string][]copyDue{}
	var due, rels []copyDue
	s.copies.mu.Lock()
	for k, e := range s.copies.m {
		if tenant != "" && k.tenant != tenant {
			continue
		}
		switch {
		case e.pendingRel != "":
			rels = append(rels, copyDue{k: k, e: *e})
		case e.fenced && !e.pending:
			if e.stored+int64(time.Minute) < now {
				delete(s.copies.m, k)
			}
		case e.state.Deadline <= now && (e.pending || !s.graced(e.state.Deadline, impliedTimeout(e.state), now, false)):
			due = append(due, copyDue{k: k, e: *e})
		}
	}
	s.copies.mu.Unlock()
	for _, d := range rels {
		s.handOverCopy(ctx, d.k, d.e, d.e.pendingRel)
	}
	// A live holder times its services out itself, within its reap
	// interval: the peer leaves them that long, so that the two do not
	// both write (one would only find the other's timeout).
	for _, d := range due {
		if !d.e.pending && d.e.state.Deadline > now-int64(s.opts.ReapInterval) && s.nodeAlive(d.e.from, d.e.fromLease) {
			continue
		}
		s.copies.mu.Lock()
		e := s.copies.m[d.k]
		// A copy taken since it was found due (a late heartbeat the
		// holder answered once this node took it) waits for the next
		// pass: its deadline may not have passed.
		if e == nil || e.hbRev != d.e.hbRev || e.fenced && !e.pending || e.state != d.e.state {
			s.copies.mu.Unlock()
			continue
		}
		d.wasPending = e.pending
		e.fenced, e.pending = true, true
		d.e = *e
		s.copies.mu.Unlock()
		byTenant[d.k.tenant] = append(byTenant[d.k.tenant], d)
	}
	var firstErr error
	dropped, droppedFrom := 0, ""
	for id, due := range byTenant {
		t, err := s.copiedTenant(ctx, id)
		if err == nil && t == nil {
			s.dropCopies(due)
			dropped, droppedFrom = dropped+len(due), due[0].e.from
			continue
		}
		for err == nil && len(due) > 0 {
			n := min(len(due), s.timeoutsPerTxn())
			err = s.timeOutCopies(ctx, t, due[:n])
			due = due[n:]
		}
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if dropped > 0 {
		s.log.Warn("dropped copies of services of tenants with no account", "copies", dropped, "from", droppedFrom)
	}
	return firstErr
}

// copiedTenant returns the state of the tenant of copies due here, or nil
// if it has no account: nothing of it can be timed out, and a copy (from
// a peer's bug, or one who has the registry's secret) does not create the
// account, as a request of the tenant's would.
func (s *Store) copiedTenant(ctx context.Context, id string) (*tenant, error) {
	if t := s.existingTenant(id); t != nil {
		if _, rev := t.account(); rev != 0 {
			return t, nil
		}
	}
	resp, err := s.read(ctx, "read the account of copied services", clientv3.OpGet(s.k.account(id)))
	if err != nil {
		return nil, err
	}
	kv := first(resp.Responses[0])
	if kv == nil {
		return nil, nil
	}
	acct, err := decodeAccount(id, kv)
	if err != nil {
		return nil, err
	}
	t := s.knownTenant(id)
	t.observe(acct, kv.ModRevision)
	return t, nil
}

// dropCopies forgets due copies of services that cannot exist.
func (s *Store) dropCopies(due []copyDue) {
	s.copies.mu.Lock()
	defer s.copies.mu.Unlock()
	for _, d := range due {
		if e := s.copies.m[d.k]; e != nil && e.hbRev == d.e.hbRev {
			delete(s.copies.m, d.k)
		}
	}
}

// timeOutCopies commits the timeouts of due copies in one transaction,
// each conditional on its heartbeat key being at the copy's revision, on
// this node's key being on the lease the copy was taken under, and on no
// request to the holder to hand the service over: a copy asked for is
// handed over instead (the heartbeat that asked may have come before the
// deadline; the request's watch may deliver it later than this). A copy
// found stale is done with; a failed write leaves them pending.
func (s *Store) timeOutCopies(ctx context.Context, t *tenant, due []copyDue) error {
	exact := make([]exactTimeout, len(due))
	for i, d := range due {
		exact[i] = exactTimeout{id: d.k.id, hbRev: d.e.hbRev, stored: d.e.stored, deadline: d.e.state.Deadline,
			incarnation: d.e.state.Incarnation, nodeLease: d.e.lease, holder: d.e.from}
	}
	graced, asked, err := s.commitExactTimeouts(ctx, t, "time out copied services", "copied deadline", false, true, exact, nil)
	if err == nil {
		var handOver []copyDue
		s.copies.mu.Lock()
		for _, d := range due {
			e := s.copies.m[d.k]
			_, isAsked := asked[d.k.id]
			switch {
			case e == nil || e.hbRev != d.e.hbRev:
			case isAsked:
				// Fenced: no copy under hbRev is taken from here.
				e.pending, e.pendingRel = false, s.k.release(d.e.from, d.k.tenant, d.k.id)
				handOver = append(handOver, copyDue{k: d.k, e: *e})
			case !graced[d.k.id]:
				e.pending = false
			case !d.wasPending:
				// Left to its grace after an outage, and no earlier
				// timeout of it may still land: the copy takes the
				// holder's copies again.
				e.fenced, e.pending = false, false
			}
		}
		s.copies.mu.Unlock()
		for _, d := range handOver {
			s.handOverCopy(ctx, d.k, d.e, d.e.pendingRel)
		}
	}
	return err
}

// watchCopiedReleases answers hand-over requests to other nodes for the
// services this node has copies of, when their holders do not: a holder
// that died hands nothing over, and without this the node asking would
// wait for its lease to expire (up to the node TTL), while this node
// could time the service out at its deadline meanwhile.
func (s *Store) watchCopiedReleases() {
	prefix := s.k.p + "rel/"
	sem := make(chan struct{}, 16)
	handle := func(key []byte) {
		node, _, ok := strings.Cut(strings.TrimPrefix(string(key), prefix), "/")
		if !ok || node == s.nodeID {
			return
		}
		tenant, id, ok := s.k.parseRelease(node, string(key))
		if !ok {
			return
		}
		k := hbKey{tenant, id}
		s.copies.mu.Lock()
		e := s.copies.m[k]
		has := e != nil && e.from == node && !e.fenced
		s.copies.mu.Unlock()
		if has {
			s.wg.Go(func() { s.releaseCopy(k, node, string(key), sem) })
		}
	}
	s.followPuts("list hand-over requests", prefix, handle)
}

// copyReleaseDelay is how long a live holder gets to answer a hand-over
// request itself before this node answers it from its copy.
const copyReleaseDelay = 250 * time.Millisecond

// releaseCopy hands a service back to etcd from this node's copy, as its
// holder would: the exact state, no holder.
func (s *Store) releaseCopy(k hbKey, holder, relKey string, sem chan struct{}) {
	ctx, cancel := context.WithTimeout(s.ctx, copyReleaseDelay+2*s.opts.RequestTimeout)
	defer cancel()
	s.copies.mu.Lock()
	e := s.copies.m[k]
	var c copyEntry
	if e != nil {
		c = *e
	}
	s.copies.mu.Unlock()
	if e == nil || c.from != holder || c.fenced {
		return
	}
	// A live holder answers at once; a dead one never. The peer waits for
	// the holder only if the deadline is not near: it would otherwise time
	// the service out meanwhile, though a client's heartbeat is waiting.
	near := c.state.Deadline < s.now().Add(copyReleaseDelay+time.Second).UnixNano()
	wait := !near && s.nodeAlive(holder, c.fromLease)
	if wait && retry.Sleep(ctx, copyReleaseDelay) != nil {
		return
	}
	// The waits above are many at once (a dead holder's services); the
	// etcd work is a few at a time.
	select {
	case sem <- struct{}{}:
		defer func() { <-sem }()
	case <-ctx.Done():
		return
	}
	if wait {
		resp, err := s.read(ctx, "read a hand-over request", clientv3.OpGet(relKey, clientv3.WithCountOnly()))
		if err != nil || resp.Responses[0].GetResponseRange().Count == 0 {
			return // the holder answered
		}
	}
	s.copies.mu.Lock()
	e = s.copies.m[k]
	if e == nil || e.hbRev != c.hbRev || e.fenced {
		s.copies.mu.Unlock()
		return
	}
	e.fenced = true // from here no copy under hbRev is taken
	c = *e
	s.copies.mu.Unlock()

	s.handOverCopy(ctx, k, c, relKey)
}

// handOverCopy writes a fenced copy's state as its holder's hand-over
// would. If the write fails it may land yet: the copy stays fenced, so
// the holder's next heartbeat of it goes to etcd, on the same condition;
// and the reaper tries the hand-over again (pendingRel), on the same
// condition too: a heartbeat waiting for it must not lose to a timeout.
//
// A request for a heartbeat names the node that asked (askHandOver): as
// the holder does, the peer hands the service to that node, while the
// request is there; else, or if that write finds the request withdrawn,
// with no holder.
func (s *Store) handOverCopy(ctx context.Context, k hbKey, c copyEntry, relKey string) {
	next := c.state
	next.Holder, next.HolderLease, next.Loose = "", 0, false
	fence := clientv3.Compare(clientv3.LeaseValue(s.k.node(s.nodeID)), "=", c.lease)
	// A request that cannot be read is read again with the next pass
	// (pendingRel), rather than the service handed over with no holder.
	to, err := s.askerOf(ctx, relKey)
	var written bool
	if err == nil {
		written, next.Holder, err = s.writeHandOverTo(ctx, "hand over a copied service", k.tenant, k.id, c.stored, c.hbRev, next, relKey, to, fence)
	}
	s.copies.mu.Lock()
	if e := s.copies.m[k]; e != nil && e.hbRev == c.hbRev {
		e.pendingRel = ""
		if err != nil {
			e.pendingRel = relKey
		}
	}
	s.copies.mu.Unlock()
	switch {
	case err != nil:
		s.log.Debug("hand-over from a copy failed; it may still land", "tenant", k.tenant, "id", k.id, "holder", c.from, "err", err)
	case written:
		s.log.Debug("handed a service back from its copy", "tenant", k.tenant, "id", k.id, "holder", c.from,
			"deadline", time.Unix(0, next.Deadline).UTC(), "to", next.Holder)
		s.metrics.handovers.Inc()
	}
}
