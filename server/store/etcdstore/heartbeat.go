package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/server/store"
)

// Heartbeats are group-committed. A heartbeat is answered only after its
// new state is committed in etcd, so a node that dies loses no
// acknowledged heartbeat, and any node can take the next one. To keep that
// from costing one etcd transaction (and one raft round with its fsync) per
// heartbeat, each node queues the heartbeats it receives, and a few
// committers each take what is queued, up to HeartbeatBatch, into one
// transaction: a nested transaction per heartbeat, conditional on the mod
// revisions of the service record (a deleted, re-created or updated service
// is never written from a stale cache) and of the heartbeat key (another
// node's heartbeat or a timeout came first). A heartbeat whose condition
// fails gets the keys' current values back in the same answer and is
// decided again.
//
// The node caches each service's heartbeat state, so a heartbeat with the
// outstanding token costs no read: the conditions check the cache. Any
// other outcome (an unknown token, a retry with the previous token) is
// decided on a fresh linearizable read, never on the cache.

// hbState is the node's heartbeat cache and commit queue.
type hbState struct {
	mu      sync.Mutex
	entries map[hbKey]*hbEntry
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
	dead   bool // dropped from the cache; look it up again
	loaded bool
	// exists: the service record was there at the last read.
	exists bool
	svcRev int64
	hbRev  int64
	rec    store.ServiceRecord
	hb     hbRecord

	used time.Time // guarded by hbState.mu
}

func (h *hbState) init() {
	h.entries = map[hbKey]*hbEntry{}
	h.queue = make(chan *hbReq)
}

// lock returns the service's cache entry, locked.
func (h *hbState) lock(tenant, id string, now time.Time) *hbEntry {
	for {
		h.mu.Lock()
		k := hbKey{tenant, id}
		e := h.entries[k]
		if e == nil {
			e = &hbEntry{}
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

// sweep drops entries not used for ten minutes, longer than any heartbeat
// interval (spec: at most 120 s).
func (h *hbState) sweep(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, e := range h.entries {
		if now.Sub(e.used) < 10*time.Minute || !e.mu.TryLock() {
			continue
		}
		e.dead = true
		delete(h.entries, k)
		e.mu.Unlock()
	}
}

// setFrom refreshes the entry from the service and heartbeat keys.
func (e *hbEntry) setFrom(svc, hb *mvccpb.KeyValue) error {
	e.loaded, e.exists = true, svc != nil
	e.svcRev, e.hbRev = 0, 0
	e.rec, e.hb = store.ServiceRecord{}, hbRecord{}
	if svc == nil {
		return nil
	}
	rec, h, err := decodeService(svc, hb)
	if err != nil {
		e.loaded = false
		return err
	}
	e.rec, e.hb, e.svcRev = rec, h, svc.ModRevision
	if hb != nil {
		e.hbRev = hb.ModRevision
	}
	return nil
}

// Heartbeat implements store.Store: spec §7.7 steps 3–6, the service
// checked before the token, tokens bound to their service (and incarnation),
// and an idempotent retry (design item 6), across nodes.
func (s *Store) Heartbeat(ctx context.Context, tenantID, id, token string) (string, error) {
	valid := false
	if tok, err := timeuuid.Parse(token); err == nil && token == tok.String() { // tokens are issued lower-case; lookup is exact
		valid = true
	}
	e := s.hb.lock(tenantID, id, s.now())
	defer e.mu.Unlock()
	fresh := false
	reload := func() error {
		resp, err := s.read(ctx, "read heartbeat state",
			clientv3.OpGet(s.k.service(tenantID, id)), clientv3.OpGet(s.k.heartbeat(tenantID, id)))
		if err != nil {
			e.loaded = false
			return err
		}
		fresh = true
		return e.setFrom(first(resp.Responses[0]), first(resp.Responses[1]))
	}
	if !e.loaded {
		if err := reload(); err != nil {
			return "", err
		}
	}
	for range 20 {
		switch {
		case !e.exists: // only ever seen on a fresh read
			e.loaded = false
			return "", &store.NotFoundError{Kind: store.KindService, Key: id}
		case valid && token == e.hb.Cur:
			next, err := s.commitHeartbeat(tenantID, id, e, token)
			if err != nil || next != "" {
				return next, err
			}
			fresh = true // the condition failed; e holds the keys' values now
		case !fresh:
			if err := reload(); err != nil {
				return "", err
			}
		case valid && token == e.hb.Prev:
			return e.hb.Cur, nil
		default:
			return "", &store.NotFoundError{Kind: store.KindHeartbeatMarker, Key: token}
		}
	}
	return "", fmt.Errorf("%w: heartbeat of %s kept conflicting", store.ErrUnavailable, id)
}

// hbReq is one heartbeat's conditional write in a batch.
type hbReq struct {
	op   clientv3.Op
	done chan hbResult
}

type hbResult struct {
	ok  bool
	rev int64
	// svc and hb are the keys' values when the condition failed.
	svc, hb *mvccpb.KeyValue
	err     error
}

// commitHeartbeat queues the heartbeat's write and waits for its batch. It
// returns the next token, or "" when the condition failed and e was
// refreshed.
func (s *Store) commitHeartbeat(tenantID, id string, e *hbEntry, token string) (string, error) {
	now := s.now()
	next := e.hb
	next.Incarnation = e.rec.Incarnation
	next.Seq = store.NextSeq(e.hb.Seq)
	deadline := now.Add(time.Duration(e.rec.HeartbeatTimeout) * time.Second)
	next.Deadline = deadline.UnixNano()
	next.Cur = s.minter.Mint(store.TokenKey{Tenant: tenantID, ID: id, Incarnation: e.rec.Incarnation}, next.Seq, deadline).String()
	next.Prev = token
	next.LastSeen = now.UnixMilli()
	raw, err := json.Marshal(next)
	if err != nil {
		return "", err
	}
	svcKey, hbKey := s.k.service(tenantID, id), s.k.heartbeat(tenantID, id)
	then := []clientv3.Op{clientv3.OpPut(hbKey, string(raw))}
	if oldDue, newDue := s.k.due(e.hb.Deadline, tenantID, id), s.k.due(next.Deadline, tenantID, id); oldDue != newDue {
		then = append(then, clientv3.OpDelete(oldDue), clientv3.OpPut(newDue, ""))
	}
	req := &hbReq{
		op: clientv3.OpTxn(
			[]clientv3.Cmp{
				clientv3.Compare(clientv3.ModRevision(svcKey), "=", e.svcRev),
				clientv3.Compare(clientv3.ModRevision(hbKey), "=", e.hbRev),
			},
			then,
			[]clientv3.Op{clientv3.OpGet(svcKey), clientv3.OpGet(hbKey)}),
		done: make(chan hbResult, 1),
	}
	select {
	case s.hb.queue <- req:
	case <-s.ctx.Done():
		return "", fmt.Errorf("%w: store closed", store.ErrUnavailable)
	}
	// A committer took the request and always answers it, within the
	// request timeout.
	res := <-req.done
	switch {
	case res.err != nil:
		// The batch may or may not have committed; read again next time.
		// A client that retries with this token gets the same answer
		// either way (design item 6).
		e.loaded = false
		return "", res.err
	case res.ok:
		e.hb, e.hbRev = next, res.rev
		s.metrics.heartbeats.Inc()
		return next.Cur, nil
	default:
		return "", e.setFrom(res.svc, res.hb)
	}
}

// commitHeartbeats is one committer: it takes a queued heartbeat, then as
// many more as are waiting (or arrive within HeartbeatLinger), up to
// HeartbeatBatch, and commits them in one transaction.
func (s *Store) commitHeartbeats() {
	batch := make([]*hbReq, 0, s.opts.HeartbeatBatch)
	for {
		batch = batch[:0]
		select {
		case r := <-s.hb.queue:
			batch = append(batch, r)
		case <-s.ctx.Done():
			return
		}
		var linger <-chan time.Time
		var timer *time.Timer
		if s.opts.HeartbeatLinger > 0 {
			timer = time.NewTimer(s.opts.HeartbeatLinger)
			linger = timer.C
		}
	collect:
		for len(batch) < s.opts.HeartbeatBatch {
			if linger == nil {
				select {
				case r := <-s.hb.queue:
					batch = append(batch, r)
				default:
					break collect
				}
				continue
			}
			select {
			case r := <-s.hb.queue:
				batch = append(batch, r)
			case <-linger:
				break collect
			}
		}
		if timer != nil {
			timer.Stop()
		}
		s.commitBatch(batch)
	}
}

// commitBatch commits one batch and answers each heartbeat in it. It is not
// cut short by Close: every request taken gets its answer.
func (s *Store) commitBatch(batch []*hbReq) {
	ops := make([]clientv3.Op, len(batch))
	for i, r := range batch {
		ops[i] = r.op
	}
	start := time.Now()
	resp, err := s.txn(context.Background(), "commit heartbeats", nil, ops, nil)
	s.metrics.hbBatch.Observe(float64(len(batch)))
	if err == nil {
		s.metrics.Commit.Observe(time.Since(start).Seconds())
		if len(resp.Responses) != len(batch) {
			err = fmt.Errorf("etcd answered %d of %d heartbeats", len(resp.Responses), len(batch))
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
