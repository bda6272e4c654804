package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/server/store"
)

// dueEntry is a deadline index entry: a service whose deadline has passed,
// unless a heartbeat moved it since the index was read.
type dueEntry struct {
	key      string
	deadline int64
	tenant   string
	id       string
}

// dueEntries reads the deadline index up to now, in deadline order, keeping
// the entries of tenant (all tenants if tenant is empty), but those left
// to their grace after an outage (gracedDue).
func (s *Store) dueEntries(ctx context.Context, now time.Time, tenant string) ([]dueEntry, error) {
	var out []dueEntry
	start, end := s.k.dues(), s.k.dueThrough(now)
	for {
		resp, err := s.read(ctx, "read due services", clientv3.OpGet(start, clientv3.WithRange(end), clientv3.WithKeysOnly(), clientv3.WithLimit(1000)))
		if err != nil {
			return nil, err
		}
		rr := resp.Responses[0].GetResponseRange()
		for _, kv := range rr.Kvs {
			d, t, id, ok := s.k.parseDue(string(kv.Key))
			if !ok {
				s.log.Error("undecodable deadline index key in etcd", "key", string(kv.Key))
				continue
			}
			if (tenant == "" || t == tenant) && !s.gracedDue.has(string(kv.Key), now.UnixNano()) {
				out = append(out, dueEntry{key: string(kv.Key), deadline: d, tenant: t, id: id})
			}
		}
		if !rr.More || len(rr.Kvs) == 0 {
			return out, nil
		}
		start = string(rr.Kvs[len(rr.Kvs)-1].Key) + "\x00"
	}
}

// rectify times out every service of the tenant whose deadline had passed
// when it was called, and returns only when they are gone — timed out by
// this call, by another caller on this node, or by any other node
// (read-your-rectification across nodes) — but those left to their grace
// after an outage (outage.go). The reads and writes spec §8.3 lists call
// it first.
func (s *Store) rectify(ctx context.Context, tenantID string) error {
	t, err := s.tenantFor(ctx, tenantID)
	if err != nil {
		return err
	}
	if err := s.reapHeld(ctx, tenantID); err != nil {
		return err
	}
	now := s.now()
	// Due, and left to their grace after an outage: while it goes on, or
	// held by a live holder (the others of one that ended are in
	// gracedDue).
	var graced map[string]bool
	for {
		due, err := s.dueEntries(ctx, now, tenantID)
		if err != nil {
			return err
		}
		due = slices.DeleteFunc(due, func(d dueEntry) bool { return graced[d.key] })
		if len(due) == 0 {
			return nil
		}
		// Every batch of one read, then the index again: a hand-over
		// moved an entry to the precise deadline.
		for len(due) > 0 {
			n := min(len(due), s.timeoutsPerTxn())
			left, err := s.timeOut(ctx, t, due[:n], true)
			if err != nil {
				return err
			}
			due = due[n:]
			for _, k := range left {
				if graced == nil {
					graced = map[string]bool{}
				}
				graced[k] = true
			}
		}
	}
}

// rectified returns the tenant's state after rectify.
func (s *Store) rectified(ctx context.Context, tenantID string) (*tenant, error) {
	if err := s.rectify(ctx, tenantID); err != nil {
		return nil, err
	}
	return s.tenantFor(ctx, tenantID)
}

// timeoutsPerTxn is how many timeouts fit in one transaction: five write
// operations each (timeOut) and the account.
func (s *Store) timeoutsPerTxn() int { return max(1, (s.opts.MaxTxnOps-1)/5) }

// timeOut commits the timeouts of due services of t in one transaction,
// conditional on the account and on the heartbeat and index keys being as
// read: each service.timeout is committed exactly once, however many nodes
// and readers race for it, and a heartbeat that got in first wins (spec
// §8.3). An index entry that no longer matches its service is deleted. A
// node that dies here leaves either all of it or none. It returns the
// index keys of the services it left to their grace after an outage
// (outage.go), and of those not due by the clock the write read (one
// stepped back since the index was read).
func (s *Store) timeOut(ctx context.Context, t *tenant, due []dueEntry, wait bool) ([]string, error) {
	due, dead, held, err := s.unheldDue(ctx, t, due, wait)
	if err != nil || len(due) == 0 {
		return held, err
	}
	reads := make([]string, 0, 3*len(due))
	for _, d := range due {
		reads = append(reads, d.key, s.k.service(t.id, d.id), s.k.heartbeat(t.id, d.id))
	}
	t.wmu.LockFor(!wait) // the reaper's ahead of the tenant's writes; a request's in turn
	defer t.wmu.Unlock()
	var timedOut []timedOutService
	var graced []string
	_, err = s.write(ctx, t, "time out services", reads, func(w *writer) error {
		timedOut, graced = timedOut[:0], graced[:0]
		for _, d := range due {
			dkv := w.got[d.key]
			if dkv == nil {
				continue // handled since the index was read
			}
			svcKey, hbKey := s.k.service(t.id, d.id), s.k.heartbeat(t.id, d.id)
			w.cmps = append(w.cmps, clientv3.Compare(clientv3.ModRevision(d.key), "=", dkv.ModRevision))
			skv, hkv := w.got[svcKey], w.got[hbKey]
			if skv == nil || hkv == nil {
				w.del(d.key)
				continue
			}
			rec, hb, err := decodeService(skv, hkv)
			if err != nil {
				return err
			}
			if hb.Incarnation != rec.Incarnation || hb.Deadline != d.deadline {
				w.del(d.key)
				continue
			}
			if hb.Deadline > w.now.UnixNano() {
				// The service's own entry, not due by this clock: it
				// stepped back since the index was read. Left for later.
				graced = append(graced, d.key)
				continue
			}
			if hb.Holder != "" && dead[hb.Holder] != hb.HolderLease {
				continue // a node took hold of it since unheldDue looked
			}
			if until, ok := s.gracedUntil(hb.Deadline, rec.HeartbeatTimeout, w.now.UnixNano(), false); ok {
				graced = append(graced, d.key)
				if until != 0 {
					s.gracedDue.add(d.key, until, w.now.UnixNano())
				}
				continue
			}
			w.cmps = append(w.cmps, clientv3.Compare(clientv3.ModRevision(hbKey), "=", hkv.ModRevision))
			w.timeOut(rec, svcKey, hbKey, d.key, hb.Deadline, s.releaseOf(hb.Holder, t.id, d.id))
			timedOut = append(timedOut, timedOutService{d.id, hb.Deadline, hb.Holder, hb.Loose})
		}
		return nil
	})
	return append(graced, held...), s.timedOut(t, "stored deadline", timedOut, err)
}

// releaseOf is the key of the request to holder to hand a service over,
// for a timeout to delete; "" if there is no holder or it is this node (it
// deletes its own requests). A reaper asks a live holder without waiting
// (unheldDue); a holder that then dies never deletes the request, which
// would stay for as long as the node that asked lives.
func (s *Store) releaseOf(holder, tenantID, id string) string {
	if holder == "" || holder == s.nodeID {
		return ""
	}
	return s.k.release(holder, tenantID, id)
}

// timedOutService is a timeout committed, for the debug log.
type timedOutService struct {
	id       string
	deadline int64 // the event's timestamp
	holder   string
	loose    bool
}

// timeOut deletes a service, its heartbeat state, its deadline index
// entry and, if relKey is not "", the request to its dead holder to hand
// it over, and appends its service.timeout event: its timestamp the
// deadline (spec §8.3), its id the next in commit order (design item 5).
func (w *writer) timeOut(rec store.ServiceRecord, svcKey, hbKey, dueKey string, deadline int64, relKey string) {
	w.del(svcKey)
	w.del(hbKey)
	w.del(dueKey)
	if relKey != "" {
		w.del(relKey)
	}
	w.acct.Services--
	at := time.Unix(0, deadline)
	w.appendEvent(func(id timeuuid.UUID) store.Event {
		return store.ServiceEvent(id, at, registry.ServiceTimeout, rec)
	})
}

// timedOut counts and logs (at debug level) the committed timeouts, or
// wraps the error that kept them from being committed. how says which
// deadline they were timed out at: the stored one, which any node reads
// (at most the heartbeat slack past the precise one when the holder died),
// or the precise one in the holder's memory.
func (s *Store) timedOut(t *tenant, how string, done []timedOutService, err error) error {
	if err != nil {
		return fmt.Errorf("time out services of %s: %w", t.id, err)
	}
	s.metrics.Timeouts.Add(float64(len(done)))
	if !s.log.Enabled(context.Background(), slog.LevelDebug) {
		return nil
	}
	for _, d := range done {
		s.log.Debug("service timed out", "tenant", t.id, "id", d.id, "at", how,
			"deadline", time.Unix(0, d.deadline).UTC(), "dead_holder", d.holder, "loose", d.loose)
	}
	return nil
}

// unheldDue returns the due services whose stored deadline may be their
// timeout's: those no node holds, or whose holder died (their deadline
// died with it; the stored one bounds it), and the dead holders' leases
// by node. A service that a live node holds — this one included — is due
// at the precise deadline only its holder knows, at or before the stored
// one: its holder is asked to hand it back, which writes that deadline to
// the index, so that the next pass times it out at it. With wait (a
// rectifying read), it waits for that; else (the reaper, which must not
// stall on a holder cut off from etcd) it only asks. After an outage, a
// live holder's service that may be left to its grace is not asked for:
// its index key is returned in graced, and its holder times it out.
func (s *Store) unheldDue(ctx context.Context, t *tenant, due []dueEntry, wait bool) (free []dueEntry, dead map[string]int64, graced []string, err error) {
	ops := make([]clientv3.Op, len(due))
	for i, d := range due {
		ops[i] = clientv3.OpGet(s.k.heartbeat(t.id, d.id))
	}
	resp, err := s.read(ctx, "read heartbeat state", ops...)
	if err != nil {
		return nil, nil, nil, err
	}
	dead = map[string]int64{}
	free = due[:0:0]
	now := s.now().UnixNano()
	for i, d := range due {
		kv := first(resp.Responses[i])
		var hb hbRecord
		if kv != nil {
			if err := json.Unmarshal(kv.Value, &hb); err != nil {
				return nil, nil, nil, fmt.Errorf("heartbeat state of %s: %w", d.id, err)
			}
		}
		// After an outage, a live holder (this node too) times its
		// services out itself, once their grace is over: no hand-over,
		// which its client's next heartbeat would have to undo.
		switch {
		case hb.Holder == "" || dead[hb.Holder] == hb.HolderLease:
			free = append(free, d)
		case hb.Holder == s.nodeID:
			if s.maybeGraced(d.deadline, now, true) {
				graced = append(graced, d.key)
				continue
			}
			if err := s.release(ctx, t.id, d.id, asker{}); err != nil {
				return nil, nil, nil, err
			}
		default:
			alive, err := s.holderAlive(ctx, hb)
			if err != nil {
				return nil, nil, nil, err
			}
			if !alive {
				dead[hb.Holder] = hb.HolderLease
				free = append(free, d)
				continue
			}
			if s.maybeGraced(d.deadline, now, false) {
				graced = append(graced, d.key)
				continue
			}
			if !wait {
				if err := s.askHandOver(ctx, t.id, d.id, hb, false); err != nil {
					return nil, nil, nil, err
				}
				continue
			}
			if err := s.handOver(ctx, t.id, d.id, hb, false); err != nil {
				return nil, nil, nil, err
			}
		}
	}
	return free, dead, graced, nil
}

// reap times out every due service of every tenant (design item 7). Every
// node runs it about once per ReapInterval; the conditions in timeOut make
// the reapers' races harmless. Its etcd calls are watched for blips
// (blip.go).
func (s *Store) reap(ctx context.Context) error {
	start := s.now().UnixNano()
	defer s.outages.reapPassEnded(start)
	return s.reapPass(context.WithValue(ctx, reapPassKey{}, true))
}

func (s *Store) reapPass(ctx context.Context) error {
	if _, alive := s.lease.get(); s.outages.over(s.now().UnixNano(), !alive) {
		s.gracedDue.clear()
	}
	heldErr := errors.Join(s.readBackLost(ctx), s.reapHeld(ctx, ""), s.reapCopies(ctx, ""))
	due, err := s.dueEntries(ctx, s.now(), "")
	if err != nil {
		return err
	}
	byTenant := map[string][]dueEntry{}
	var order []string
	for _, d := range due {
		if byTenant[d.tenant] == nil {
			order = append(order, d.tenant)
		}
		byTenant[d.tenant] = append(byTenant[d.tenant], d)
	}
	var firstErr error
	for _, id := range order {
		t := s.knownTenant(id)
		entries := byTenant[id]
		for len(entries) > 0 {
			n := min(len(entries), s.timeoutsPerTxn())
			if _, err := s.timeOut(ctx, t, entries[:n], false); err != nil {
				if firstErr == nil {
					firstErr = err
				}
				break
			}
			entries = entries[n:]
		}
	}
	if firstErr == nil {
		firstErr = heldErr
	}
	return firstErr
}

// heldDue is a service this node holds whose deadline has passed.
type heldDue struct {
	id string
	e  *hbEntry
}

// reapHeld times out the services of tenant (all tenants if empty) that
// this node holds and whose deadline, as this node's memory has it, has
// passed. No other node knows that deadline; they time a held service out
// only once its stored deadline, later, has passed.
func (s *Store) reapHeld(ctx context.Context, tenant string) error {
	now := s.now().UnixNano()
	byTenant := map[string][]heldDue{}
	for _, e := range s.hb.heldBy(tenant) {
		if v := e.view.Load(); v != nil && v.deadline <= now {
			byTenant[e.k.tenant] = append(byTenant[e.k.tenant], heldDue{e.k.id, e})
		}
	}
	var firstErr error
	for id, due := range byTenant {
		t, err := s.tenantFor(ctx, id)
		for err == nil && len(due) > 0 {
			n := min(len(due), s.timeoutsPerTxn())
			var asked map[string]asker
			asked, err = s.timeOutHeld(ctx, t, due[:n], tenant == "")
			// Asked for by a heartbeat at another node: handed over now,
			// rather than when the request's watch delivers it, so that
			// one the watch lost (or whose hand-over failed) holds no
			// timeout up.
			for sid, to := range asked {
				if rerr := s.release(ctx, t.id, sid, to); rerr != nil && err == nil {
					err = rerr
				}
			}
			due = due[n:]
		}
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// timeOutHeld commits the timeouts of due services this node holds, in
// one transaction, each conditional on its heartbeat key being as this
// node last wrote it (else another node took the service over, or timed
// it out, and this node's memory of it is stale). The event's timestamp is
// the deadline of the last token this node handed out.
func (s *Store) timeOutHeld(ctx context.Context, t *tenant, due []heldDue, ahead bool) (asked map[string]asker, err error) {
	now := s.now().UnixNano()
	var locked []heldDue
	for i, d := range due {
		// One at a time waits; the others are left for the next round if
		// busy, so that two reapers never wait for each other.
		if i == 0 {
			d.e.mu.Lock()
		} else if !d.e.mu.TryLock() {
			continue
		}
		if d.e.dead || !d.e.mine || d.e.mem.Deadline > now || s.graced(d.e.mem.Deadline, d.e.rec.HeartbeatTimeout, now, true) {
			d.e.mu.Unlock()
			continue
		}
		locked = append(locked, d)
	}
	var graced map[string]bool
	defer func() {
		for _, d := range locked {
			switch {
			case err != nil:
				// The transaction may have committed, or commit yet:
				// no answer from memory until etcd shows which; the
				// reaper tries again.
				d.e.failedWrite()
			case !graced[d.id]: // else still held: due after its grace, or to be handed over
				d.e.forget()
			}
			d.e.mu.Unlock()
		}
	}()
	if len(locked) == 0 {
		return nil, nil
	}
	exact := make([]exactTimeout, len(locked))
	for i, d := range locked {
		exact[i] = exactTimeout{id: d.id, hbRev: d.e.hbRev, stored: d.e.hb.Deadline, deadline: d.e.mem.Deadline, incarnation: d.e.mem.Incarnation}
	}
	graced, asked, err = s.commitExactTimeouts(ctx, t, "time out held services", "held deadline", true, ahead, exact, func(id string, gone bool) {
		// Written since this node last read or wrote it (a commit of its
		// own whose answer was lost, or another node's): its memory is
		// stale, and forgotten below.
		s.log.Debug("held service changed in etcd since this node wrote it; not timed out from memory",
			"tenant", t.id, "id", id, "gone", gone)
	})
	return asked, err
}

// exactTimeout is a timeout at a deadline known exactly, from the memory of
// the node holding the service or from its peer's copy of it: valid while
// the service's heartbeat key is at hbRev, whose stored deadline (and index
// entry) is stored.
type exactTimeout struct {
	id          string
	hbRev       int64
	stored      int64
	deadline    int64 // the event's timestamp
	incarnation uint64
	// nodeLease, if not 0: the timeout also needs this node's key to be
	// on that lease (a peer's copy: see copies.go).
	nodeLease int64
	holder    string // whose memory it came from ("" this node's)
}

// holderOr is the node whose memory the deadline came from, self if this
// node's.
func (d exactTimeout) holderOr(self string) string {
	if d.holder == "" {
		return self
	}
	return d.holder
}

// commitExactTimeouts commits the timeouts in one transaction, each
// conditional on its heartbeat key being at its revision (and on this
// node's lease, if it names one). A service written or gone since is left
// out, and stale, if not nil, told about it. how names the deadline in the
// log (timedOut); held says the deadlines are this node's memory of the
// heartbeats it answered (graced). A service another node asked the
// deadline's holder (this node, or the holder of a peer's copy) to hand
// over is left to the hand-over (asked: to whom, as askerOf reads it).
// graced are the services left held, to their grace or to a hand-over.
// The reaper (ahead) takes the tenant's write lock ahead of its writes
// waiting; a request takes its turn.
func (s *Store) commitExactTimeouts(ctx context.Context, t *tenant, what, how string, held, ahead bool, due []exactTimeout, stale func(id string, gone bool)) (graced map[string]bool, asked map[string]asker, err error) {
	nodeKey := s.k.node(s.nodeID)
	reads := []string{nodeKey}
	for _, d := range due {
		reads = append(reads, s.k.service(t.id, d.id), s.k.heartbeat(t.id, d.id), s.k.release(d.holderOr(s.nodeID), t.id, d.id))
	}
	t.wmu.LockFor(ahead)
	defer t.wmu.Unlock()
	var timedOut []timedOutService
	_, err = s.write(ctx, t, what, reads, func(w *writer) error {
		timedOut, graced, asked = timedOut[:0], nil, nil
		nkv := w.got[nodeKey]
		for _, d := range due {
			svcKey, hbKey := s.k.service(t.id, d.id), s.k.heartbeat(t.id, d.id)
			skv, hkv := w.got[svcKey], w.got[hbKey]
			if skv == nil || hkv == nil || hkv.ModRevision != d.hbRev {
				if stale != nil {
					stale(d.id, skv == nil || hkv == nil)
				}
				continue
			}
			if d.nodeLease != 0 && (nkv == nil || nkv.Lease != d.nodeLease) {
				continue // this node was dead to the others since
			}
			rec, _, err := decodeService(skv, nil)
			if err != nil {
				return err
			}
			if rec.Incarnation != d.incarnation {
				continue
			}
			// A heartbeat that reached another node asked the holder to
			// hand the service over (handOver): it may have come before
			// the deadline, and the hand-over, not this timeout, goes
			// first. The node that asked goes on from the exact state,
			// and the service times out at its deadline if no heartbeat
			// answered there. A peer timing out its copy of a dead
			// holder's service does the same: the holder cannot answer.
			relKey := s.k.release(d.holderOr(s.nodeID), t.id, d.id)
			rkv := w.got[relKey]
			if rkv != nil {
				if asked == nil {
					asked = map[string]asker{}
				}
				asked[d.id] = askerIn(rkv)
			}
			if s.graced(d.deadline, rec.HeartbeatTimeout, w.now.UnixNano(), held) || rkv != nil {
				if graced == nil {
					graced = map[string]bool{}
				}
				graced[d.id] = true
				continue
			}
			w.cmps = append(w.cmps, clientv3.Compare(clientv3.CreateRevision(relKey), "=", 0),
				clientv3.Compare(clientv3.ModRevision(hbKey), "=", d.hbRev))
			if d.nodeLease != 0 {
				w.cmps = append(w.cmps, clientv3.Compare(clientv3.LeaseValue(nodeKey), "=", d.nodeLease))
			}
			w.timeOut(rec, svcKey, hbKey, s.k.due(d.stored, t.id, d.id), d.deadline, "")
			timedOut = append(timedOut, timedOutService{id: d.id, deadline: d.deadline, holder: d.holder})
		}
		return nil
	})
	return graced, asked, s.timedOut(t, how, timedOut, err)
}
