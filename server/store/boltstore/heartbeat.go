package boltstore

import (
	"container/heap"
	"context"
	"encoding/json"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/server/store"
)

// hbEntry is the in-memory heartbeat state of one live service. Guarded by
// its tenant's mu.
type hbEntry struct {
	id          string
	incarnation uint64
	timeout     int // seconds; a change applies from the next heartbeat

	// seq is the sequence number of the outstanding token. When exact, cur
	// is that token; otherwise (after a restart) any token minted for this
	// service with a sequence number at or after seq is accepted.
	seq   uint32
	exact bool
	// restarted: since a restart, no token handed out since it has been
	// used, so tokens handed out before it may be ahead of cur: one minted
	// for the service with a number at or past cur's is accepted too
	// (Heartbeat).
	restarted bool
	cur       timeuuid.UUID
	// prev is the token consumed to issue cur; repeating it returns cur
	// again (design item 6).
	prev timeuuid.UUID

	deadline time.Time
	lastSeen time.Time
	reaping  bool // a timeout is being committed
	dirty    bool // changed since the last checkpoint
	index    int  // in the deadline heap
}

// hbRecord is the checkpointed heartbeat state of a service.
type hbRecord struct {
	Incarnation uint64 `json:"incarnation"`
	Seq         uint32 `json:"seq"`
	LastSeen    int64  `json:"last_seen,omitempty"` // ms
}

// deadlineHeap orders a tenant's live services by deadline.
type deadlineHeap []*hbEntry

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h deadlineHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *deadlineHeap) Push(x any) {
	e := x.(*hbEntry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *deadlineHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
}

// addEntry adds a live service; t.mu held (or t not yet shared).
func (t *tenant) addEntry(e *hbEntry) {
	t.services[e.id] = e
	heap.Push(&t.deadlines, e)
}

// removeEntry forgets a service; t.mu held.
func (t *tenant) removeEntry(e *hbEntry) {
	if t.services[e.id] == e {
		delete(t.services, e.id)
	}
	if e.index >= 0 {
		heap.Remove(&t.deadlines, e.index)
	}
}

func (s *Store) tokenKey(t *tenant, e *hbEntry) store.TokenKey {
	return store.TokenKey{Tenant: t.id, ID: e.id, Incarnation: e.incarnation}
}

// Heartbeat implements store.Store. It touches only memory: spec §7.7 steps
// 3–6, with the service checked before the token, tokens bound to their
// service, and an idempotent retry.
func (s *Store) Heartbeat(ctx context.Context, tenantID, id, token string) (string, error) {
	t := s.existingTenant(tenantID)
	if t == nil {
		return "", &store.NotFoundError{Kind: store.KindService, Key: id}
	}
	tok, err := timeuuid.Parse(token)
	if err != nil || token != tok.String() { // tokens are issued lower-case; lookup is exact
		tok = timeuuid.UUID{}
	}
	now := s.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.services[id]
	if e == nil || e.reaping {
		return "", &store.NotFoundError{Kind: store.KindService, Key: id}
	}
	notFound := &store.NotFoundError{Kind: store.KindHeartbeatMarker, Key: token}
	switch {
	case tok.IsZero():
		return "", notFound
	case e.exact && tok == e.cur:
		e.restarted = false // the client goes on from a token handed out since
	case e.exact && tok == e.prev:
		return e.cur.String(), nil
	case !e.exact || e.restarted:
		// After a restart only the sequence number of the last token
		// handed out is known (checkpointed): a token at or after it is
		// the client's newest, and the one before it a heartbeat sent
		// again whose answer was lost, as e.prev is before a restart.
		// Once one is taken, and until the client uses a token handed
		// out since (cur), the tokens handed out before the restart with
		// numbers at or past cur's are still taken: the one taken may
		// have been an older token sent again late (a retry, a
		// duplicate), and the client's newest must not be refused for
		// it, which would tell the client its service is gone. The
		// highest number goes on; the others are refused.
		seq, ok := s.minter.Check(s.tokenKey(t, e), tok)
		from := seq
		if !e.exact {
			from = store.NextSeq(seq) // and the one before the floor
		}
		if !ok || !store.SeqAtOrAfter(from, e.seq) {
			return "", notFound
		}
		// The next token follows the one taken: for that retry, the
		// floor again, which a checkpoint keeps, so the retry is taken
		// after another restart too.
		e.seq, e.restarted = seq, true
	default:
		return "", notFound
	}
	e.seq = store.NextSeq(e.seq)
	e.deadline = now.Add(time.Duration(e.timeout) * time.Second)
	e.prev, e.cur, e.exact = tok, s.minter.Mint(s.tokenKey(t, e), e.seq, e.deadline), true
	e.lastSeen = now
	e.dirty = true
	heap.Fix(&t.deadlines, e.index)
	return e.cur.String(), nil
}

// storedIncarnation is the incarnation of the service id in tenant bucket
// b, and whether it is there. It reads the service's heartbeat record,
// which is written with the service and deleted with it, rather than the
// service's: that can be tens of kilobytes of JSON to decode, inside the
// write transaction every account's writes wait for. A service without one
// (a file written otherwise) is read from its own record.
func storedIncarnation(b *bolt.Bucket, id string) (incarnation uint64, ok bool, err error) {
	if raw := b.Bucket(bHeartbeats).Get([]byte(id)); raw != nil {
		var h hbRecord
		if err := json.Unmarshal(raw, &h); err != nil {
			return 0, false, err
		}
		return h.Incarnation, true, nil
	}
	raw := b.Bucket(bServices).Get([]byte(id))
	if raw == nil {
		return 0, false, nil
	}
	var r store.ServiceRecord
	if err := json.Unmarshal(raw, &r); err != nil {
		return 0, false, err
	}
	return r.Incarnation, true, nil
}

// checkpoint writes the heartbeat state of every service that heartbeated
// since the last checkpoint, in one transaction.
func (s *Store) checkpoint() error {
	type item struct {
		t   *tenant
		e   *hbEntry
		rec hbRecord
	}
	var items []item
	for _, t := range s.allTenants() {
		t.mu.Lock()
		for _, e := range t.services {
			if !e.dirty {
				continue
			}
			e.dirty = false
			rec := hbRecord{Incarnation: e.incarnation, Seq: e.seq}
			if !e.lastSeen.IsZero() {
				rec.LastSeen = e.lastSeen.UnixMilli()
			}
			items = append(items, item{t, e, rec})
		}
		t.mu.Unlock()
	}
	if len(items) == 0 {
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		tenants := tx.Bucket(bTenants)
		for _, it := range items {
			b := tenants.Bucket([]byte(it.t.id))
			incarnation, ok, err := storedIncarnation(b, it.e.id)
			if err != nil {
				return err
			}
			if !ok || incarnation != it.rec.Incarnation {
				continue // deleted, timed out or created again since
			}
			v, err := json.Marshal(it.rec)
			if err != nil {
				return err
			}
			if err := b.Bucket(bHeartbeats).Put([]byte(it.e.id), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		for _, it := range items {
			it.t.mu.Lock()
			it.e.dirty = true
			it.t.mu.Unlock()
		}
	}
	return err
}
