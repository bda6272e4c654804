package etcdstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/time/rate"

	"github.com/svcreg/svcreg/internal/retry"
	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/server/store"
)

// Heartbeats are answered from memory by the node that holds the service.
//
// A node that commits a heartbeat to etcd becomes the service's holder:
// the heartbeat key names it (and its node key's lease), and stores a
// deadline well past the one the token carries (the slack). The holder's
// next heartbeats of the service touch only its memory, as long as
//
//   - the new deadline is within the stored one: every token any node
//     handed out carries a deadline at or before the stored deadline, so
//     a service whose stored deadline passed is surely due, and any node
//     may time it out then without asking anyone;
//   - its lease is surely alive (nodeLease): no other node takes over a
//     service whose holder's lease is alive.
//
// The holder times its services out itself at the deadline in its memory
// (rectify.go), conditional on the heartbeat key being as it wrote it.
// Another node that gets a heartbeat, a delete or a timeout change for a
// held service asks the holder to hand it back (a key under P rel/<node>/
// that the holder watches); the holder writes its exact state, without a
// holder and with the precise deadline, and forgets it. If the holder's
// lease is gone, the holder died: the other node goes on from the stored
// state, accepting any token minted for the service after the stored one
// (the MAC tells; design item 10's rule), so no heartbeat the dead node
// answered is lost, and the service times out at the stored deadline at
// the latest — or, with copies on (copies.go), at the precise deadline,
// timed out or handed over by the holder's peer, which has a copy of every
// deadline the holder answered from memory.
//
// Writes are group-committed: each node queues them, gathers a batch (what
// arrives within HeartbeatLinger of its first, then until a committer is
// free, up to HeartbeatBatch), and commits it in one transaction: a
// nested transaction per heartbeat, conditional on the mod revisions of
// the service record (a deleted, re-created or updated service is never
// written from a stale cache) and of the heartbeat key (another node or a
// timeout came first). A heartbeat whose condition fails gets the keys'
// current values back in the same answer and is decided again.

// hbState is the node's heartbeat cache and commit queue.
type hbState struct {
	mu      sync.Mutex
	entries map[hbKey]*hbEntry
	// holding are the entries this node holds, by tenant and id.
	holding map[string]map[string]*hbEntry
	// lost are the entries with a lost commit, and its exact deadline
	// (ns): the reaper reads their records back once it has passed.
	lost map[*hbEntry]int64
	// queue is unbuffered: a heartbeat is handed to a committer, which
	// then always answers it, or not queued at all.
	queue chan *hbReq
}

type hbKey struct{ tenant, id string }

// hbEntry is the cached heartbeat state of one service. mu is held for the
// whole of a heartbeat, so one service has one heartbeat in flight per node
// and a batch never holds the same keys twice.
type hbEntry struct {
	mu     sync.Mutex
	h      *hbState
	k      hbKey
	dead   bool // dropped from the cache; look it up again
	loaded bool
	// exists: the service record was there at the last read.
	exists bool
	svcRev int64
	hbRev  int64
	rec    store.ServiceRecord
	hb     hbRecord // as stored at hbRev
	// mine: this node holds the service, and mem is its heartbeat state
	// (the precise deadline, the outstanding token), which is the truth
	// while the heartbeat key is still at hbRev. Otherwise mem is hb.
	mine bool
	mem  hbRecord
	// verify: a write about the service failed, and may have committed;
	// mem is the truth only if the heartbeat key is still at hbRev, so
	// the next heartbeat reads it before answering from memory.
	verify bool
	// mayLand, if not 0, is the heartbeat key's revision that the
	// condition of a write of this node's was on, a write that failed and
	// may yet commit (etcd can commit a proposal after its caller timed
	// out). Until the key is seen past that revision, by a write of this
	// node's or a read, the node answers no heartbeat from memory: a
	// memory answer does not move the key, so the write could still land
	// and overwrite a deadline handed out since with an older one.
	mayLand int64
	// sentRev is the heartbeat key's revision at the last copy of the
	// service this node sent to a peer (any peer): while the key is past
	// it, no peer holds a copy it could hand the service over from, and a
	// node whose peer fails may answer from memory as one without a peer
	// does (answerable).
	sentRev int64
	// view is what reads and the reaper see of mem while mine.
	view atomic.Pointer[heldView]
	// lost is this node's last commit of a heartbeat that made it the
	// holder and whose answer it did not get: it may have landed. Kept
	// across forget, until read back (landed) or overtaken. Set with
	// setLost, which keeps hbState.lost.
	lost *lostCommit

	used time.Time // guarded by hbState.mu
}

// lostCommit is a heartbeat commit whose answer was lost: the record it
// wrote (stored, naming this node as holder) and the exact state the node
// would have held (mem). Without it, a record read back that names this
// node would be handed over loosely, and the service time out at the
// stored deadline, the slack late, though no node died.
type lostCommit struct{ stored, mem hbRecord }

// heldView is a held service's state for readers that do not lock it.
type heldView struct {
	incarnation uint64
	deadline    int64 // ns
	lastSeen    int64 // ms
}

func (h *hbState) init() {
	h.entries = map[hbKey]*hbEntry{}
	h.holding = map[string]map[string]*hbEntry{}
	h.lost = map[*hbEntry]int64{}
	h.queue = make(chan *hbReq)
}

// lock returns the service's cache entry, locked.
func (h *hbState) lock(tenant, id string, now time.Time) *hbEntry {
	for {
		h.mu.Lock()
		k := hbKey{tenant, id}
		e := h.entries[k]
		if e == nil {
			e = &hbEntry{h: h, k: k}
			h.entries[k] = e
		}
		e.used = now
		h.mu.Unlock()
		e.mu.Lock()
		if !e.dead {
			return e
		}
		e.mu.Unlock()
	}
}

// drop forgets e, locked, as sweep does.
func (h *hbState) drop(e *hbEntry) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.entries[e.k] == e {
		delete(h.entries, e.k)
	}
	e.dead = true
}

// held returns the state of a service this node holds, or nil.
func (h *hbState) held(tenant, id string) *heldView {
	h.mu.Lock()
	e := h.entries[hbKey{tenant, id}]
	h.mu.Unlock()
	if e == nil {
		return nil
	}
	return e.view.Load()
}

// sweep drops entries not used for ten minutes, longer than any heartbeat
// interval (spec: at most 120 s), unless this node holds them or may yet
// read a lost commit of theirs back: until its stored deadline, past which
// any node times the service out (and with the reaper off, nothing reads
// it back).
func (h *hbState) sweep(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, e := range h.entries {
		if now.Sub(e.used) < 10*time.Minute || !e.mu.TryLock() {
			continue
		}
		if e.mine || e.lost != nil && now.UnixNano() < e.lost.stored.Deadline {
			e.mu.Unlock()
			continue
		}
		if e.lost != nil {
			delete(h.lost, e) // setLost would take h.mu, held here
			e.lost = nil
		}
		e.dead = true
		delete(h.entries, k)
		e.mu.Unlock()
	}
}

// setFrom refreshes the entry from the service and heartbeat keys. The
// entry stays this node's if nobody wrote the heartbeat key since. A
// service key read without its value (readState) is the record the entry
// has: a revision's value never changes.
func (e *hbEntry) setFrom(svc, hb *mvccpb.KeyValue) error {
	keep := e.mine && e.loaded && svc != nil && hb != nil && hb.ModRevision == e.hbRev
	had, hadRev := e.rec, e.svcRev
	e.loaded, e.exists, e.verify = true, svc != nil, false
	if hb == nil || hb.ModRevision != e.mayLand {
		e.mayLand = 0 // the write's condition can no longer hold
	}
	e.svcRev = 0
	e.rec = store.ServiceRecord{}
	if !keep {
		e.hbRev, e.hb = 0, hbRecord{}
	}
	if svc == nil {
		e.setMem(hbRecord{}, false)
		return nil
	}
	rec, h, err := had, hbRecord{}, error(nil)
	if hadRev == 0 || svc.ModRevision != hadRev {
		rec, _, err = decodeService(svc, nil)
	}
	if err == nil && hb != nil {
		h, err = decodeHeartbeat(hb)
	}
	if err != nil {
		e.loaded = false
		e.setMem(hbRecord{}, false)
		return err
	}
	e.rec, e.svcRev = rec, svc.ModRevision
	if keep {
		return nil
	}
	e.hb = h
	if hb != nil {
		e.hbRev = hb.ModRevision
	}
	e.setMem(h, false)
	return nil
}

// load refreshes the entry from the service and heartbeat keys (setFrom),
// and takes the service back if the record is the one of this node's
// commit whose answer was lost (see lostCommit).
func (s *Store) load(e *hbEntry, svc, hb *mvccpb.KeyValue) error {
	err := e.setFrom(svc, hb)
	if err != nil || !e.exists {
		e.setLost(nil)
		return err
	}
	mem, ok := s.landed(e, e.hb)
	switch {
	case ok && !e.mine:
		e.setMem(mem, true)
	case !ok:
		// Not landed (yet): if it lands later, after this node may have
		// answered from memory again, its record is handled loosely.
		e.setLost(nil)
	}
	return nil
}

// landed reports whether hb is the record of e's lost commit, written with
// this node as holder on its current lease, and returns the exact state to
// hold it with.
func (s *Store) landed(e *hbEntry, hb hbRecord) (hbRecord, bool) {
	l := e.lost
	if l == nil || hb.Cur != l.stored.Cur || hb.Holder != s.nodeID || hb.HolderLease != l.stored.HolderLease {
		return hbRecord{}, false
	}
	if lease, _ := s.lease.get(); int64(lease) != l.stored.HolderLease {
		return hbRecord{}, false
	}
	e.setLost(nil)
	return l.mem, true
}

// setLost sets (nil: clears) the entry's lost commit, and its place in
// hbState.lost.
func (e *hbEntry) setLost(l *lostCommit) {
	if e.lost == nil && l == nil {
		return
	}
	e.lost = l
	if e.h == nil {
		return
	}
	e.h.mu.Lock()
	defer e.h.mu.Unlock()
	if l == nil {
		delete(e.h.lost, e)
	} else {
		e.h.lost[e] = l.mem.Deadline
	}
}

// lostDue returns the entries whose lost commit's deadline has passed.
func (h *hbState) lostDue(now int64) []*hbEntry {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*hbEntry
	for e, deadline := range h.lost {
		if deadline <= now {
			out = append(out, e)
		}
	}
	return out
}

// readBackLost reads back the records of lost commits whose deadline has
// passed, so that one that landed is held again (landed) and timed out by
// reapHeld at its exact deadline, when no retry or hand-over read it
// before. An entry busy with a heartbeat is left for the next round.
func (s *Store) readBackLost(ctx context.Context) error {
	now := s.now().UnixNano()
	for _, e := range s.hb.lostDue(now) {
		if !e.mu.TryLock() {
			continue
		}
		if e.dead || e.lost == nil || e.lost.mem.Deadline > now {
			e.mu.Unlock()
			continue
		}
		svc, hb, err := s.readState(ctx, "read back a heartbeat whose answer was lost", e)
		if err == nil {
			err = s.load(e, svc, hb)
		}
		e.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// readState reads e's service and heartbeat keys at one revision. The
// service key comes without its value if it is still at the revision e
// has the record of (setFrom takes that record): the heartbeat key is a
// few hundred bytes, a service record up to the API's limits, and most
// reads find it unchanged. Called with e locked.
func (s *Store) readState(ctx context.Context, what string, e *hbEntry) (svc, hb *mvccpb.KeyValue, err error) {
	svcKey, hbKey := s.k.service(e.k.tenant, e.k.id), s.k.heartbeat(e.k.tenant, e.k.id)
	full := []clientv3.Op{clientv3.OpGet(svcKey), clientv3.OpGet(hbKey)}
	var resp *clientv3.TxnResponse
	if e.svcRev == 0 {
		resp, err = s.read(ctx, what, full...)
	} else {
		resp, err = s.txnWithin(ctx, s.opts.RequestTimeout, hedged, what,
			[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(svcKey), "=", e.svcRev)},
			[]clientv3.Op{clientv3.OpGet(svcKey, clientv3.WithKeysOnly()), clientv3.OpGet(hbKey)}, full)
	}
	if err != nil {
		return nil, nil, err
	}
	return first(resp.Responses[0]), first(resp.Responses[1]), nil
}

// setMem sets the entry's memory state and whether this node holds it.
func (e *hbEntry) setMem(m hbRecord, mine bool) {
	was := e.mine
	e.mem, e.mine = m, mine
	if mine {
		e.view.Store(&heldView{incarnation: m.Incarnation, deadline: m.Deadline, lastSeen: m.LastSeen})
	} else {
		e.view.Store(nil)
	}
	if was == mine || e.h == nil {
		return
	}
	e.h.mu.Lock()
	defer e.h.mu.Unlock()
	byID := e.h.holding[e.k.tenant]
	switch {
	case mine && byID == nil:
		e.h.holding[e.k.tenant] = map[string]*hbEntry{e.k.id: e}
	case mine:
		byID[e.k.id] = e
	default:
		delete(byID, e.k.id)
		if len(byID) == 0 {
			delete(e.h.holding, e.k.tenant)
		}
	}
}

// forget drops what the entry knows; the next use reads etcd.
func (e *hbEntry) forget() {
	e.loaded = false
	e.setMem(hbRecord{}, false)
}

// unsure is forget after an etcd call that failed (and may have
// committed), except that what this node holds stays, to be verified.
func (e *hbEntry) unsure() {
	e.verify = true
	if !e.mine {
		e.forget()
	}
}

// failedWrite is unsure after a write conditioned on the heartbeat key
// being at hbRev failed: it may still land (mayLand).
func (e *hbEntry) failedWrite() {
	e.mayLand = e.hbRev
	e.unsure()
}

// Heartbeat implements store.Store: spec §7.7 steps 3–6, the service
// checked before the token, tokens bound to their service (and incarnation),
// and an idempotent retry (design item 6), across nodes.
func (s *Store) Heartbeat(ctx context.Context, tenantID, id, token string) (string, error) {
	tok, err := timeuuid.Parse(token)
	valid := err == nil && token == tok.String() // tokens are issued lower-case; lookup is exact
	e := s.hb.lock(tenantID, id, s.now())
	defer e.mu.Unlock()
	fresh := false
	reload := func() error {
		svc, hb, err := s.readState(ctx, "read heartbeat state", e)
		if err != nil {
			e.unsure()
			return err
		}
		fresh = true
		return s.load(e, svc, hb)
	}
	if !e.loaded {
		if err := reload(); err != nil {
			return "", err
		}
	}
	notFound := &store.NotFoundError{Kind: store.KindHeartbeatMarker, Key: token}
	for range 20 {
		if !e.exists && !fresh {
			// Read before this heartbeat (a lost commit read back after
			// the service was deleted): it may have been created again
			// since.
			if err := reload(); err != nil {
				return "", err
			}
			continue
		}
		if !e.exists {
			e.loaded = false
			if !e.mine && e.lost == nil && e.mayLand == 0 {
				// Nothing to keep: heartbeats for ids that never
				// existed leave no entry behind.
				s.hb.drop(e)
			}
			return "", &store.NotFoundError{Kind: store.KindService, Key: id}
		}
		if e.mine {
			lease, alive := s.lease.get()
			held := alive && e.hb.HolderLease == int64(lease) && !e.verify && e.mayLand == 0
			// On a fresh read, while the service is Ahead, a token
			// minted for it with a number at or past the current one's
			// goes on as the current one does: one handed out before the
			// service was taken loosely from a holder that died (the
			// client's newest, when the token taken then was an older
			// one sent again late) must not be refused for it, which
			// would tell the client its service is gone. The highest
			// number goes on; the current one, used, ends the rule.
			seq, ahead := e.mem.Seq, false
			if valid && fresh && e.mem.Ahead && token != e.mem.Cur && token != e.mem.Prev {
				seq, ahead = s.mintedFrom(tenantID, id, e, tok, e.mem.Seq)
			}
			switch {
			case valid && (token == e.mem.Cur || ahead):
				next := s.nextBeat(tenantID, id, e, token, seq)
				next.Ahead = ahead
				if held && s.answerable(ctx, e, next) && s.leaseStill(lease) {
					e.setMem(next, true)
					s.metrics.inMemory.Inc()
					return next.Cur, nil
				}
				if !held || mustWrite(e, next) {
					// Written, and not copied yet (answerable copies
					// only what may be answered from memory): the peer
					// learns of it first. It gives a live holder only a
					// reap interval past the deadline it knows before
					// it times the service out, and the write may wait
					// on etcd longer (an election, a member that
					// stopped answering). A copy at a revision the key
					// has left commits nothing at the peer.
					s.copyTo(ctx, e, next)
				}
				ok, err := s.commitHeartbeat(tenantID, id, e, next)
				if err != nil {
					return "", err
				}
				if ok {
					return next.Cur, nil
				}
				fresh = true // the condition failed; e holds the keys' values now
				continue
			case !held && !fresh:
				// This node may have lost the service: ask etcd.
				if err := reload(); err != nil {
					return "", err
				}
				continue
			case valid && token == e.mem.Prev:
				// From memory only once the peer takes its copy
				// (copyTo), as for Cur: the peer may have handed the
				// service over from its copy (this node cut off from
				// etcd, or slow), and another node deleted it or went on
				// since; the peer tells, and if not, etcd. (Not
				// answerable: Prev's state is stored, so its slack rule
				// does not apply.)
				if !fresh {
					if ok, _ := s.copyTo(ctx, e, e.mem); !ok || !s.leaseStill(lease) {
						if err := reload(); err != nil {
							return "", err
						}
						continue
					}
				}
				return e.mem.Cur, nil
			case valid && !fresh:
				// A token this node did not hand out may be a newer one
				// (of this incarnation or a later one): the holder's peer
				// hands the service over from its copy when this node
				// does not answer (cut off from etcd, or slow), and
				// another node goes on from there. Only etcd can tell.
				if err := reload(); err != nil {
					return "", err
				}
				continue
			default:
				return "", notFound
			}
		}
		if !fresh {
			if err := reload(); err != nil {
				return "", err
			}
			continue
		}
		// Every token taken below is the stored one, the one before it,
		// or one minted for this incarnation (its MAC): refuse any other
		// before asking etcd more, so that a flood of made-up tokens
		// costs a read of the small heartbeat key each and no more.
		known := valid && (token == e.hb.Cur || token == e.hb.Prev)
		if valid && !known {
			_, known = s.mintedFor(tenantID, id, e, tok)
		}
		if !known {
			return "", notFound
		}
		if h := e.hb.Holder; h != "" && h != s.nodeID {
			alive, err := s.holderAlive(ctx, e.hb)
			if err != nil {
				return "", err
			}
			if alive {
				// A move writes etcd: only for a token minted for this
				// service (above; the holder tells after the move
				// whether it is the newest), and paid for from the
				// tenant's budget.
				if err := s.spendMove(tenantID); err != nil {
					return "", err
				}
				if err := s.handOver(ctx, tenantID, id, e.hb, true); err != nil {
					return "", err
				}
				if err := reload(); err != nil {
					return "", err
				}
				continue
			}
		}
		// Decided on a fresh read of a service no live node holds.
		var next hbRecord
		switch {
		case valid && token == e.hb.Cur:
			next = s.nextBeat(tenantID, id, e, token, e.hb.Seq)
			// Taken from a holder that is gone: the tokens it minted
			// after Cur may still be ahead (the client's newest, when
			// this one came late).
			next.Ahead = e.hb.Loose || e.hb.Holder != ""
		case valid && e.hb.Prev != "" && token == e.hb.Prev:
			return e.hb.Cur, nil
		case valid && (e.hb.Loose || e.hb.Holder != ""):
			// The holder is gone (or is this node, which lost its memory
			// of the service): tokens it minted after Cur may be out.
			seq, ok := s.mintedSince(tenantID, id, e, tok)
			if !ok {
				return "", notFound
			}
			next = s.nextBeat(tenantID, id, e, token, seq)
			next.Ahead = true
		case valid && e.hb.Ahead:
			// One minted at or past Cur's number before a loose move
			// (see the holder's case above).
			seq, ok := s.mintedFrom(tenantID, id, e, tok, e.hb.Seq)
			if !ok {
				return "", notFound
			}
			next = s.nextBeat(tenantID, id, e, token, seq)
			next.Ahead = true
		default:
			return "", notFound
		}
		ok, err := s.commitHeartbeat(tenantID, id, e, next)
		if err != nil {
			return "", err
		}
		if ok {
			return next.Cur, nil
		}
	}
	return "", fmt.Errorf("%w: heartbeat of %s kept conflicting", store.ErrUnavailable, id)
}

// mintedSince returns the sequence number of tok if it is a token of the
// service's incarnation minted after the stored one, as a holder answering
// from memory mints them. Called with e locked.
func (s *Store) mintedSince(tenantID, id string, e *hbEntry, tok timeuuid.UUID) (uint32, bool) {
	return s.mintedFrom(tenantID, id, e, tok, store.NextSeq(e.hb.Seq))
}

// mintedFrom returns the sequence number of tok if it is a token of the
// service's incarnation with a number at or after from. Called with e
// locked.
func (s *Store) mintedFrom(tenantID, id string, e *hbEntry, tok timeuuid.UUID, from uint32) (uint32, bool) {
	seq, ok := s.mintedFor(tenantID, id, e, tok)
	return seq, ok && store.SeqAtOrAfter(seq, from)
}

// mintedFor returns the sequence number of tok if it is a token minted for
// the service's incarnation, at any sequence number. Called with e locked.
func (s *Store) mintedFor(tenantID, id string, e *hbEntry, tok timeuuid.UUID) (uint32, bool) {
	return s.minter.Check(store.TokenKey{Tenant: tenantID, ID: id, Incarnation: e.rec.Incarnation}, tok)
}

// spendMove takes one move of a service to this node from the tenant's
// budget (Options.MoveRate), or says how long until one is allowed.
func (s *Store) spendMove(tenantID string) error {
	if s.opts.MoveRate < 0 {
		return nil
	}
	t := s.knownTenant(tenantID)
	t.mu.Lock()
	now, live := s.now(), t.acct.Services
	limit := rate.Limit(max(s.opts.MoveRate, float64(live)/MoveEvery))
	burst := max(s.opts.MoveBurst, live)
	if t.moves == nil {
		t.moves = rate.NewLimiter(limit, burst)
	}
	if t.moves.Limit() != limit {
		t.moves.SetLimitAt(now, limit)
	}
	if t.moves.Burst() != burst {
		t.moves.SetBurstAt(now, burst)
	}
	ok := t.moves.AllowN(now, 1)
	missing := 1 - t.moves.TokensAt(now)
	t.mu.Unlock()
	if ok {
		return nil
	}
	s.metrics.movesRefused.Inc()
	return &store.RateLimitError{
		Wait:  time.Duration(missing / float64(limit) * float64(time.Second)),
		Limit: fmt.Sprintf("Limit of %g heartbeats per second that move a service from another server node, in bursts of up to %d, has been reached", float64(limit), burst),
	}
}

// nextBeat is the heartbeat state after a heartbeat with token, whose
// sequence number is seq, now.
func (s *Store) nextBeat(tenantID, id string, e *hbEntry, token string, seq uint32) hbRecord {
	now := s.now()
	next := hbRecord{Incarnation: e.rec.Incarnation, Seq: store.NextSeq(seq), Prev: token, LastSeen: now.UnixMilli()}
	deadline := now.Add(time.Duration(e.rec.HeartbeatTimeout) * time.Second)
	next.Deadline = deadline.UnixNano()
	next.Cur = s.minter.Mint(store.TokenKey{Tenant: tenantID, ID: id, Incarnation: e.rec.Incarnation}, next.Seq, deadline).String()
	return next
}

// slack is how far past a written heartbeat's deadline the stored one is.
func (s *Store) slack(timeout int) time.Duration {
	if s.opts.HeartbeatSlack > 0 {
		return s.opts.HeartbeatSlack
	}
	return DefaultHeartbeatSlack(s.opts, timeout)
}

// mustWrite reports whether the heartbeat state next of a service this
// node holds must be written, not answered from memory: its deadline is
// past the stored one, or its sequence number so far past the stored one
// that another node would no longer take its token as newer should this
// node die. Called with e locked.
func mustWrite(e *hbEntry, next hbRecord) bool {
	return next.Deadline > e.hb.Deadline || store.SeqSince(next.Seq, e.hb.Seq) >= store.SeqWindow/2
}

// answerable reports whether this node, holding e, may answer the
// heartbeat whose state is next from memory: its deadline is within the
// stored one, and a peer took its copy. Without a peer's copy (no peer, or
// one failing that holds no copy at the key's revision), only while
// the stored deadline is MinHeartbeatSlack past it: should this node die,
// a heartbeat of the service that reaches another node in time waits for
// this node's lease to expire, then makes its etcd calls, and nothing but
// the stored deadline keeps the reapers from timing the service out
// meanwhile. Called with e locked.
func (s *Store) answerable(ctx context.Context, e *hbEntry, next hbRecord) bool {
	if mustWrite(e, next) {
		return false
	}
	ok, copied := s.copyTo(ctx, e, next)
	return ok && (copied || next.Deadline+int64(MinHeartbeatSlack(s.opts)) <= e.hb.Deadline)
}

// DefaultHeartbeatSlack is the slack of a service whose heartbeat timeout
// is timeout seconds when opts.HeartbeatSlack is 0: twice the timeout, at
// least MinDefaultHeartbeatSlack and MinHeartbeatSlack(opts).
func DefaultHeartbeatSlack(opts Options, timeout int) time.Duration {
	return max(MinDefaultHeartbeatSlack, MinHeartbeatSlack(opts), 2*time.Duration(timeout)*time.Second)
}

// holderAlive reports whether the node holding a service per hb is alive:
// its node key is there on the same lease.
func (s *Store) holderAlive(ctx context.Context, hb hbRecord) (bool, error) {
	resp, err := s.read(ctx, "read holder", clientv3.OpGet(s.k.node(hb.Holder)))
	if err != nil {
		return false, err
	}
	kv := first(resp.Responses[0])
	return kv != nil && kv.Lease == hb.HolderLease, nil
}

// handOver asks the live node holding a service per hb to hand it back to
// etcd (to this node, if take: see askHandOver), and waits until it did,
// the service is gone, or the node died.
func (s *Store) handOver(ctx context.Context, tenantID, id string, hb hbRecord, take bool) error {
	// A holder that died hands nothing over: its lease ends at most its
	// TTL after its last keep-alive, and etcd notices within a moment
	// more. Waiting that long answers the heartbeat instead of a 503. The
	// wait is this node's TTL; if the holder's lease is still there then
	// (a node given a longer TTL, or a live holder that does not hand
	// over), it is lengthened once by what etcd says that lease has left,
	// up to the longest TTL a node may have.
	start := time.Now()
	until, lengthened := start.Add(s.opts.NodeTTL+s.opts.RequestTimeout), false
	ctx, cancel := context.WithDeadline(ctx, start.Add(max(s.opts.NodeTTL, MaxNodeTTL)+s.opts.RequestTimeout))
	defer cancel()
	if err := s.askHandOver(ctx, tenantID, id, hb, take); err != nil {
		return err
	}
	rel := s.k.release(hb.Holder, tenantID, id)
	defer func() {
		dctx, dcancel := context.WithTimeout(context.Background(), s.opts.RequestTimeout)
		defer dcancel()
		s.again(dctx, "withdraw a hand-over request", nil, clientv3.OpDelete(rel))
	}()
	for delay := 2 * time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		if time.Now().After(until) {
			if lengthened {
				return fmt.Errorf("%w: node %s did not hand over service %s, and its lease did not expire", store.ErrUnavailable, hb.Holder, id)
			}
			left, err := s.leaseLeft(ctx, hb.HolderLease)
			if err != nil {
				return fmt.Errorf("%w: node %s did not hand over service %s: %w", store.ErrUnavailable, hb.Holder, id, err)
			}
			until, lengthened = time.Now().Add(max(left, time.Second)), true // gone: its key goes with it
		}
		if err := retry.Sleep(ctx, delay); err != nil {
			return fmt.Errorf("%w: node %s did not hand over service %s: %w", store.ErrUnavailable, hb.Holder, id, err)
		}
		resp, err := s.read(ctx, "wait for a hand-over", clientv3.OpGet(s.k.heartbeat(tenantID, id)), clientv3.OpGet(s.k.node(hb.Holder)))
		if err != nil {
			return err
		}
		hkv, nkv := first(resp.Responses[0]), first(resp.Responses[1])
		if hkv == nil || nkv == nil || nkv.Lease != hb.HolderLease {
			return nil
		}
		var cur hbRecord
		if err := json.Unmarshal(hkv.Value, &cur); err != nil {
			return fmt.Errorf("heartbeat state of %s: %w", id, err)
		}
		if cur.Holder != hb.Holder || cur.HolderLease != hb.HolderLease {
			return nil
		}
	}
}

// leaseLeft is how long lease has left, as etcd tells it (whole seconds,
// rounded up, and a second for etcd to revoke it), or 0 if it is gone or
// expired.
func (s *Store) leaseLeft(ctx context.Context, lease int64) (time.Duration, error) {
	ttl, err := s.timeToLive(ctx, clientv3.LeaseID(lease))
	if err != nil {
		return 0, err
	}
	if ttl.TTL < 0 {
		return 0, nil
	}
	return time.Duration(ttl.TTL+2) * time.Second, nil
}

// askHandOver asks the node holding a service per hb to hand it back.
// The request goes with this node's lease, and the holder deletes it.
// With take (a heartbeat here waits for the service), its value is this
// node's id: the holder hands the service to this node (asker), so that
// no other node's reaper times it out between the hand-over and this
// node's commit of the heartbeat, which may have come before the
// deadline the hand-over gives.
func (s *Store) askHandOver(ctx context.Context, tenantID, id string, hb hbRecord, take bool) error {
	var opts []clientv3.OpOption
	lease, alive := s.lease.get()
	if alive {
		opts = append(opts, clientv3.WithLease(lease))
	}
	value := ""
	if take && alive {
		value = s.nodeID
	}
	return s.again(ctx, "ask for a hand-over", nil, clientv3.OpPut(s.k.release(hb.Holder, tenantID, id), value, opts...))
}

// asker is the node a hand-over request asks to have a service handed
// to, and the lease its request is on; zero: to no node.
type asker struct {
	node  string
	lease int64
}

// askerOf reads the hand-over request rel: the node it asks the service
// for (see askHandOver), or none.
func (s *Store) askerOf(ctx context.Context, rel string) (asker, error) {
	resp, err := s.read(ctx, "read a hand-over request", clientv3.OpGet(rel))
	if err != nil {
		return asker{}, err
	}
	return askerIn(first(resp.Responses[0])), nil
}

// askerIn is the asker a hand-over request kv names (nil: none).
func askerIn(kv *mvccpb.KeyValue) asker {
	if kv == nil || len(kv.Value) == 0 || kv.Lease == 0 {
		return asker{}
	}
	return asker{node: string(kv.Value), lease: kv.Lease}
}

// releaseAsked hands over a service another node asked for: to that
// node, if its request names it.
func (s *Store) releaseAsked(ctx context.Context, tenantID, id string) error {
	to, err := s.askerOf(ctx, s.k.release(s.nodeID, tenantID, id))
	if err != nil {
		return err
	}
	return s.release(ctx, tenantID, id, to)
}

// release hands a service this node holds back to etcd: its exact state,
// the precise deadline, no holder, or, to a node (a heartbeat there waits
// for it: askHandOver), that node as holder, on the lease of its request.
// If this node lost its memory of a service the record says it holds, it
// hands it back loosely, or exactly if the record is that of its commit
// whose answer was lost (landed), to the node that asked in the same way.
// Either way the hand-over request, if any, is deleted.
func (s *Store) release(ctx context.Context, tenantID, id string, to asker) error {
	e := s.hb.lock(tenantID, id, s.now())
	defer e.mu.Unlock()
	rel, hbKey := s.k.release(s.nodeID, tenantID, id), s.k.heartbeat(tenantID, id)
	if e.loaded && e.mine {
		next := e.mem
		next.Holder, next.HolderLease, next.Loose = "", 0, false
		var extra []clientv3.Cmp
		if to.node != "" {
			// Only while the request is there: a heartbeat that gave
			// up withdrew it, and the service stays held here.
			next.Holder, next.HolderLease = to.node, to.lease
			extra = append(extra, clientv3.Compare(clientv3.LeaseValue(rel), "=", to.lease))
		}
		written, rev, err := s.writeHandOver(ctx, "hand over a service", tenantID, id, e.hb.Deadline, e.hbRev, next, rel, extra...)
		if err != nil {
			s.log.Debug("hand-over write failed; it may still land", "tenant", tenantID, "id", id,
				"deadline", time.Unix(0, next.Deadline).UTC(), "err", err)
			e.failedWrite()
			return err
		}
		if written {
			s.log.Debug("handed a service back", "tenant", tenantID, "id", id, "deadline", time.Unix(0, next.Deadline).UTC(), "to", next.Holder)
			e.hb, e.hbRev, e.mayLand = next, rev, 0
			e.setMem(next, false)
			s.metrics.handovers.Inc()
			return nil
		}
		if len(extra) > 0 {
			resp, err := s.read(ctx, "read heartbeat state", clientv3.OpGet(hbKey))
			if err != nil {
				return err
			}
			if kv := first(resp.Responses[0]); kv != nil && kv.ModRevision == e.hbRev {
				return nil // the request was withdrawn: still held here
			}
		}
	}
	e.forget()
	resp, err := s.read(ctx, "read heartbeat state", clientv3.OpGet(hbKey))
	if err != nil {
		return err
	}
	if kv := first(resp.Responses[0]); kv != nil {
		var hb hbRecord
		if err := json.Unmarshal(kv.Value, &hb); err != nil {
			return fmt.Errorf("heartbeat state of %s: %w", id, err)
		}
		if hb.Holder == s.nodeID {
			// The record of a commit whose answer was lost gives the
			// exact state; any other, loosely.
			next, exact := s.landed(e, hb)
			if !exact {
				next = hb
			}
			next.Loose = !exact
			// To the node whose heartbeat asked, as above: handed back
			// with no holder, the service could time out before that
			// heartbeat commits.
			written, holder, err := s.writeHandOverTo(ctx, "hand over a service", tenantID, id, hb.Deadline, kv.ModRevision, next, rel, to)
			next.Holder = holder
			s.log.Debug("hand back a service this node had no memory of", "tenant", tenantID, "id", id,
				"deadline", time.Unix(0, next.Deadline).UTC(), "exact", exact, "to", next.Holder,
				"written", written, "err", err)
			return err
		}
	}
	return s.again(ctx, "delete a hand-over request", nil, clientv3.OpDelete(rel))
}

// writeHandOverTo writes next as writeHandOver does, handed over to the
// node whose heartbeat asked (to; on the lease of its request rel, while
// the request is there), or with no holder if to names none or that write
// finds the request withdrawn; extra conditions hold for either write. It
// reports whether it wrote, and the holder it wrote.
func (s *Store) writeHandOverTo(ctx context.Context, what, tenantID, id string, stored, rev int64, next hbRecord, rel string, to asker, extra ...clientv3.Cmp) (bool, string, error) {
	next.Holder, next.HolderLease = "", 0
	if to.node != "" {
		next.Holder, next.HolderLease = to.node, to.lease
		written, _, err := s.writeHandOver(ctx, what, tenantID, id, stored, rev, next, rel,
			append(slices.Clip(extra), clientv3.Compare(clientv3.LeaseValue(rel), "=", to.lease))...)
		if err != nil || written {
			return written, next.Holder, err
		}
		next.Holder, next.HolderLease = "", 0
	}
	written, _, err := s.writeHandOver(ctx, what, tenantID, id, stored, rev, next, rel, extra...)
	return written, "", err
}

// writeHandOver writes next, a service's state handed over (no holder, or
// the node whose heartbeat asked for it), over its heartbeat key if that is still at rev (and the extra conditions hold),
// moves its deadline index entry from stored, and deletes the hand-over
// request relKey: a holder's hand-over (release) or its peer's on its
// behalf (handOverCopy). It reports whether it wrote, and the revision it
// wrote at. The write is hedged: of its sends, at most one commits (they
// are conditional on rev), and one whose condition failed reads the key,
// so that it finds a value another of its sends wrote.
func (s *Store) writeHandOver(ctx context.Context, what, tenantID, id string, stored, rev int64, next hbRecord, relKey string, extra ...clientv3.Cmp) (bool, int64, error) {
	raw, err := json.Marshal(next)
	if err != nil {
		return false, 0, err
	}
	hbKey := s.k.heartbeat(tenantID, id)
	ops := append([]clientv3.Op{clientv3.OpPut(hbKey, string(raw)), clientv3.OpDelete(relKey)}, s.k.moveDue(stored, next.Deadline, tenantID, id)...)
	cmps := append([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(hbKey), "=", rev)}, extra...)
	resp, sends, err := s.txnSends(ctx, s.opts.RequestTimeout, hedged, what, cmps, ops, []clientv3.Op{clientv3.OpGet(hbKey)})
	switch {
	case err != nil:
		return false, 0, err
	case resp.Succeeded:
		return true, resp.Header.Revision, nil
	}
	// Sent more than once, the same value written after rev is this
	// write's, by another send. (The holder and its peer may hand over
	// the same state at once; either's write leaves what the other's
	// would have.)
	if kv := first(resp.Responses[0]); sends > 1 && kv != nil && kv.ModRevision > rev && string(kv.Value) == string(raw) {
		return true, kv.ModRevision, nil
	}
	return false, 0, nil
}

// releaseAll hands back every service this node holds (a graceful stop),
// handBackConcurrency at a time, until ctx ends; it returns how many went
// back and how many did not.
func (s *Store) releaseAll(ctx context.Context) (back, left int, err error) {
	held := s.hb.heldBy("")
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs error
	)
	sem := make(chan struct{}, handBackConcurrency)
	for i, e := range held {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return back, len(held) - back, errors.Join(errs, fmt.Errorf("%d services not tried: %w", len(held)-i, ctx.Err()))
		}
		wg.Go(func() {
			defer func() { <-sem }()
			err := s.release(ctx, e.k.tenant, e.k.id, asker{})
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				back++
			} else if errs == nil {
				errs = err // the first says why; the count says how many
			}
		})
	}
	wg.Wait()
	return back, len(held) - back, errs
}

// handBackConcurrency is how many hand-backs a stopping node has on their
// way at once: each is an etcd transaction (a raft commit), and etcd
// commits concurrent ones together, so a node holding tens of thousands of
// services hands them back in seconds rather than one commit after another.
const handBackConcurrency = 64

// handBackBudget is how long a stopping node spends handing its services
// back: twice the request timeout.
func (s *Store) handBackBudget() time.Duration {
	if s.handBackTime > 0 {
		return s.handBackTime
	}
	return 2 * s.opts.RequestTimeout
}

// heldBy returns the entries this node holds of tenant (of every tenant if
// empty).
func (h *hbState) heldBy(tenant string) []*hbEntry {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*hbEntry
	for t, byID := range h.holding {
		if tenant != "" && t != tenant {
			continue
		}
		for _, e := range byID {
			out = append(out, e)
		}
	}
	return out
}

// Hand-overs a node runs at once (releaseQueue): in all, and of one
// tenant.
const (
	releasesAtOnce          = 16
	releasesAtOnceOfATenant = 4
)

// watchReleases answers other nodes' hand-over requests for services this
// node holds, until the store closes.
func (s *Store) watchReleases() {
	prefix := s.k.releases(s.nodeID)
	q := newReleaseQueue(releasesAtOnce, releasesAtOnceOfATenant, s.wg.Go, func(tenant, id string) {
		ctx, cancel := context.WithTimeout(s.ctx, s.opts.RequestTimeout)
		defer cancel()
		if err := s.releaseAsked(ctx, tenant, id); err != nil && s.ctx.Err() == nil {
			s.log.Warn("hand over a service", "tenant", tenant, "id", id, "err", err)
		}
	})
	handle := func(key []byte) {
		tenant, id, ok := s.k.parseRelease(s.nodeID, string(key))
		if !ok {
			return
		}
		q.add(tenant, id)
	}
	// Requests made while this node was not watching come first.
	s.followPuts("list hand-over requests", prefix, handle)
}

// followPuts calls handle with every key under prefix, then with every
// key put there (follow), values left out.
func (s *Store) followPuts(what, prefix string, handle func(key []byte)) {
	each := func(kvs []*mvccpb.KeyValue) {
		for _, kv := range kvs {
			handle(kv.Key)
		}
	}
	s.follow(what, prefix, []clientv3.OpOption{clientv3.WithKeysOnly()}, []clientv3.OpOption{clientv3.WithFilterDelete()},
		each, func(evs []*clientv3.Event) {
			for _, ev := range evs {
				handle(ev.Kv.Key)
			}
		})
}

// follow reads the keys under prefix and then follows them with a watch
// from the next revision: list gets what the read found, and events each
// batch of changes. A watch that ends (etcd cancelled it, a member went
// away or stopped answering, or the revision was compacted) starts over
// with a read, after a backoff, until the store closes. opts go with both
// the read and the watch, watchOpts with the watch only.
func (s *Store) follow(what, prefix string, opts, watchOpts []clientv3.OpOption, list func([]*mvccpb.KeyValue), events func([]*clientv3.Event)) {
	opts = append([]clientv3.OpOption{clientv3.WithPrefix()}, opts...)
	watchOpts = append(slices.Clone(opts), watchOpts...)
	backoff := 50 * time.Millisecond
	for s.ctx.Err() == nil {
		resp, err := s.read(s.ctx, what, clientv3.OpGet(prefix, opts...))
		if err == nil {
			list(resp.Responses[0].GetResponseRange().Kvs)
			ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(s.ctx))
			for wr := range s.watch(ctx, strings.TrimPrefix(what, "list "), prefix, append(watchOpts, clientv3.WithRev(resp.Header.Revision+1))...) {
				if wr.Err() != nil || wr.CompactRevision != 0 {
					break
				}
				backoff = 50 * time.Millisecond
				if wr.Created {
					continue
				}
				events(wr.Events)
			}
			cancel()
		}
		if retry.Sleep(s.ctx, backoff) != nil {
			return
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// hbReq is one heartbeat's conditional write in a batch.
type hbReq struct {
	op   clientv3.Op
	done chan hbResult
	// queued is when the heartbeat was handed to the collector: its
	// batch must commit within RequestTimeout of its earliest.
	queued time.Time
}

type hbResult struct {
	ok  bool
	rev int64
	// svc and hb are the keys' values when the condition failed.
	svc, hb *mvccpb.KeyValue
	err     error
}

// commitHeartbeat queues the write of next (this node then holds the
// service, if its lease is alive) and waits for its batch. It reports
// whether it committed; if the condition failed, e was refreshed.
func (s *Store) commitHeartbeat(tenantID, id string, e *hbEntry, next hbRecord) (bool, error) {
	stored := next
	lease, alive := s.lease.get()
	if alive {
		stored.Holder, stored.HolderLease = s.nodeID, int64(lease)
		stored.Deadline = next.Deadline + int64(s.slack(e.rec.HeartbeatTimeout))
	}
	raw, err := json.Marshal(stored)
	if err != nil {
		return false, err
	}
	svcKey, hbKey := s.k.service(tenantID, id), s.k.heartbeat(tenantID, id)
	then := append([]clientv3.Op{clientv3.OpPut(hbKey, string(raw))}, s.k.moveDue(e.hb.Deadline, stored.Deadline, tenantID, id)...)
	req := &hbReq{
		op: clientv3.OpTxn(
			[]clientv3.Cmp{
				clientv3.Compare(clientv3.ModRevision(svcKey), "=", e.svcRev),
				clientv3.Compare(clientv3.ModRevision(hbKey), "=", e.hbRev),
			},
			then,
			[]clientv3.Op{clientv3.OpGet(svcKey), clientv3.OpGet(hbKey)}),
		done:   make(chan hbResult, 1),
		queued: time.Now(),
	}
	select {
	case s.hb.queue <- req:
	case <-s.ctx.Done():
		return false, fmt.Errorf("%w: store closed", store.ErrUnavailable)
	}
	// A committer took the request and always answers it, within the
	// request timeout.
	res := <-req.done
	// A write whose condition failed may have found itself: the batch was
	// sent twice (hedged) and the other send committed it first. Its
	// value holds a token minted for it.
	own := res.hb != nil && bytes.Equal(res.hb.Value, raw)
	switch {
	case res.err != nil:
		// The batch may or may not have committed; read again next time.
		// A client that retries with this token gets the same answer
		// either way (design item 6). If it did not commit and this node
		// held the service, its memory is still the truth. If it did and
		// made this node the holder, the node takes the service back
		// when it reads the record (landed): on a retry, a hand-over, or
		// the reaper's read once the deadline passed (readBackLost).
		if alive {
			e.setLost(&lostCommit{stored: stored, mem: next})
		} else {
			e.setLost(nil)
		}
		s.log.Debug("heartbeat commit failed; it may still land", "tenant", tenantID, "id", id,
			"deadline", time.Unix(0, next.Deadline).UTC(), "held", alive, "err", res.err)
		if e.mine && next.Incarnation == e.mem.Incarnation && next.Deadline > e.mem.Deadline {
			// The client heartbeated in time with a valid token, and
			// only etcd failed it: this node (its reaper, a hand-over)
			// goes by the deadline that heartbeat would have set, as
			// the peer does from the copy sent before the commit.
			// Otherwise an etcd blip shorter than the outage grace needs
			// (an election) times the service out at the deadline
			// before, as etcd comes back, ahead of the client's retry.
			// No token carries it: the client still holds Cur.
			m := e.mem
			m.Deadline, m.LastSeen = next.Deadline, next.LastSeen
			e.setMem(m, true)
		}
		e.failedWrite()
		return false, res.err
	case res.ok || own && res.svc != nil && res.svc.ModRevision == e.svcRev:
		// The write was conditional on the keys being as this node last
		// saw them: its memory is etcd's now (verify no longer needed).
		rev := res.rev
		if !res.ok {
			rev = res.hb.ModRevision
		}
		e.setLost(nil)
		e.hb, e.hbRev, e.mayLand, e.verify = stored, rev, 0, false
		e.setMem(next, alive)
		s.metrics.heartbeats.Inc()
		s.copyHeld(e)
		return true, nil
	default:
		if own && alive {
			// This write landed, but the service changed since (an
			// update that needs no hand-over): load takes the service
			// back exactly.
			e.setLost(&lostCommit{stored: stored, mem: next})
		}
		e.setMem(e.mem, false)
		return false, s.load(e, res.svc, res.hb)
	}
}

// commitHeartbeats gathers the queued heartbeats into batches and hands
// each to one of HeartbeatCommitters committers, which commit a batch in
// one transaction. A batch starts with the first heartbeat queued; it then
// gathers what arrives within HeartbeatLinger, and after that what arrives
// until a committer is free, up to HeartbeatBatch. So writes share
// transactions at any rate: at a low one by the linger, at a high one
// because earlier batches are still committing. Every heartbeat taken is
// committed and answered, also when the store closes meanwhile.
func (s *Store) commitHeartbeats() {
	free := make(chan struct{}, s.opts.HeartbeatCommitters)
	for range cap(free) {
		free <- struct{}{}
	}
	var committing sync.WaitGroup
	defer committing.Wait()
	for {
		var batch []*hbReq
		select {
		case r := <-s.hb.queue:
			batch = append(make([]*hbReq, 0, s.opts.HeartbeatBatch), r)
			s.metrics.hbWaiting.Inc()
		case <-s.ctx.Done():
			return
		}
		var lingering <-chan time.Time // nil once the linger is over
		if s.opts.HeartbeatLinger > 0 {
			lingering = time.After(s.opts.HeartbeatLinger)
		}
		haveCommitter := false
	gather:
		for len(batch) < s.opts.HeartbeatBatch {
			select {
			case r := <-s.hb.queue:
				batch = append(batch, r)
				s.metrics.hbWaiting.Inc()
			case <-lingering:
				lingering = nil
			case <-s.ctx.Done():
				// Close: commit what was taken, at once.
				break gather
			case <-chanIf(lingering == nil, free):
				haveCommitter = true
				break gather
			}
		}
		if !haveCommitter {
			<-free
		}
		committing.Go(func() {
			s.commitBatch(batch)
			free <- struct{}{}
		})
	}
}

// chanIf is c if cond holds and nil (a case that never fires) if not.
func chanIf[T any](cond bool, c chan T) chan T {
	if cond {
		return c
	}
	return nil
}

// commitBatch commits one batch and answers each heartbeat in it, within
// RequestTimeout of the earliest's queueing: the wait to be taken, the
// linger and the wait for a committer count against the commit's time, so
// that a heartbeat that moved after its holder died is written within
// what MinHeartbeatSlack allows for it. It is not cut short by Close:
// every request taken gets its answer.
func (s *Store) commitBatch(batch []*hbReq) {
	ops := make([]clientv3.Op, len(batch))
	earliest := batch[0].queued
	for i, r := range batch {
		ops[i] = r.op
		if r.queued.Before(earliest) {
			earliest = r.queued
		}
	}
	start := time.Now()
	resp, err := s.txnWithin(context.Background(), time.Until(earliest.Add(s.opts.RequestTimeout)), hedgedBatch, "commit heartbeats", nil, ops, nil)
	s.metrics.hbBatch.Observe(float64(len(batch)))
	s.metrics.hbWaiting.Sub(float64(len(batch)))
	if err == nil {
		s.metrics.Commit.Observe(time.Since(start).Seconds())
		if len(resp.Responses) != len(batch) {
			err = fmt.Errorf("etcd answered %d of %d heartbeats", len(resp.Responses), len(batch))
		}
		if s.loseAnswer.Load() && s.loseAnswer.CompareAndSwap(true, false) {
			err = fmt.Errorf("%w: etcd: commit heartbeats: the answer was lost", store.ErrUnavailable)
		}
	}
	for i, r := range batch {
		if err != nil {
			r.done <- hbResult{err: err}
			continue
		}
		r.done <- nestedResult(resp.Header.Revision, resp.Responses[i])
	}
}

// nestedResult reads the answer of one nested conditional transaction whose
// else branch gets the service and heartbeat keys.
func nestedResult(rev int64, op *pb.ResponseOp) hbResult {
	tr := op.GetResponseTxn()
	if tr == nil {
		return hbResult{err: errors.New("etcd: a nested transaction got no answer")}
	}
	if tr.Succeeded {
		return hbResult{ok: true, rev: rev}
	}
	if len(tr.Responses) != 2 {
		return hbResult{err: errors.New("etcd: a failed nested transaction got no values")}
	}
	return hbResult{svc: first(tr.Responses[0]), hb: first(tr.Responses[1])}
}
