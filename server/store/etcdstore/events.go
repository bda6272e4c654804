package etcdstore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svcreg/svcreg/internal/retry"
	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/server/store"
)

// Events implements store.Store (spec §7.11 step 8, design items 4 and 9):
// a range read of the tenant's event keys from q.From (or the key at From and
// a range from q.Quiet, when the query skips), at one revision with
// the account, whose pruned mark says whether retention deleted events the
// marker asks for. It rectifies first (spec §7.11 step 7).
func (s *Store) Events(ctx context.Context, tenantID string, q store.EventQuery) (store.EventPage, error) {
	if err := s.rectify(ctx, tenantID); err != nil {
		return store.EventPage{}, err
	}
	for {
		page, err := s.events(ctx, tenantID, q)
		if errors.Is(err, errCompacted) {
			continue // a later page's revision was compacted: read again
		}
		return page, err
	}
}

func (s *Store) events(ctx context.Context, tenantID string, q store.EventQuery) (store.EventPage, error) {
	var page store.EventPage
	start := s.k.event(tenantID, q.From)
	if q.Skips() {
		start = s.k.event(tenantID, q.Quiet) // and the event at From, on its own
	}
	end := prefixEnd(s.k.events(tenantID))
	batch := int64(q.Limit + 1)
	if q.Types != nil {
		batch = max(batch, 256)
	}
	// A page's bytes bound each range read too, which holds its events at
	// once (a thousand of the largest are 30 MB): the first reads 64,
	// each later one, at the mean size of the events read so far, about
	// what is left of MaxBytes (at least 16).
	var read, readBytes int
	size := 0
	limit := func() int64 {
		if q.MaxBytes <= 0 {
			return batch
		}
		return sizedLimit(int64(max(q.MaxBytes-size, 0)), int64(readBytes), int64(read), batch)
	}
	var rev int64
	for {
		var kvs []*mvccpb.KeyValue
		var more bool
		if rev == 0 {
			ops := []clientv3.Op{clientv3.OpGet(s.k.account(tenantID)),
				clientv3.OpGet(start, clientv3.WithRange(end), clientv3.WithLimit(limit()))}
			if q.Skips() {
				ops = append(ops, clientv3.OpGet(s.k.event(tenantID, q.From)))
			}
			resp, err := s.read(ctx, "read events", ops...)
			if err != nil {
				return page, err
			}
			acct, err := decodeAccount(tenantID, first(resp.Responses[0]))
			if err != nil {
				return page, err
			}
			if q.CheckExpired && acct.Expired(q.From) {
				return page, store.ErrMarkerExpired
			}
			page.Head = acct.Head
			rev = resp.Header.Revision
			rr := resp.Responses[1].GetResponseRange()
			kvs, more = rr.Kvs, rr.More
			if q.Skips() {
				if kv := first(resp.Responses[2]); kv != nil {
					kvs = append([]*mvccpb.KeyValue{kv}, kvs...)
				}
			}
		} else {
			resp, err := s.read(ctx, "read events",
				clientv3.OpGet(start, clientv3.WithRange(end), clientv3.WithLimit(limit()), clientv3.WithRev(rev)))
			if err != nil {
				return page, err
			}
			rr := resp.Responses[0].GetResponseRange()
			kvs, more = rr.Kvs, rr.More
		}
		for _, kv := range kvs {
			read, readBytes = read+1, readBytes+len(kv.Value)
			ev, err := s.decodeEvent(tenantID, kv)
			if err != nil {
				return page, err
			}
			if !store.Matches(q.Types, ev.Type) {
				continue
			}
			if q.Full(len(page.Values), size, len(ev.JSON)) {
				page.Next = ev.ID
				return page, nil
			}
			size += len(ev.JSON)
			page.Values = append(page.Values, ev)
		}
		if !more || len(kvs) == 0 {
			return page, nil
		}
		start = string(kvs[len(kvs)-1].Key) + "\x00"
	}
}

func (s *Store) decodeEvent(tenantID string, kv *mvccpb.KeyValue) (store.Event, error) {
	id, ok := s.k.parseEventID(tenantID, string(kv.Key))
	typ, raw, valid := store.DecodeStoredEvent(kv.Value)
	if !ok || !valid {
		return store.Event{}, fmt.Errorf("corrupt event %q", kv.Key)
	}
	return store.Event{ID: id, Type: typ, JSON: json.RawMessage(raw)}, nil
}

// watchAccounts keeps this node's one etcd watch, on the account keys: every
// commit that appends events rewrites its tenant's account, so each commit
// on any node arrives here once and wakes the tenant's long-polls (closes
// its Changed channel). ready is closed once the first watch is set up.
//
// A watch that etcd cancels (compaction, lost leader, a member going away),
// or whose member stops answering (watch.go), is set up again from the
// next revision; if that revision is gone, from the oldest one etcd
// keeps, after waking every tenant, whose long-polls then read the feed
// again and so miss nothing.
func (s *Store) watchAccounts(ready chan struct{}) {
	var next int64 // revision to resume from; 0 = now
	backoff := 50 * time.Millisecond
	for s.ctx.Err() == nil {
		ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(s.ctx))
		opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithCreatedNotify(), clientv3.WithProgressNotify(), clientv3.WithFilterDelete()}
		if next > 0 {
			opts = append(opts, clientv3.WithRev(next))
		}
		healthy := false
		for resp := range s.watch(ctx, "accounts", s.k.accounts(), opts...) {
			if resp.Created && ready != nil {
				close(ready)
				ready = nil
			}
			if resp.CompactRevision != 0 {
				// From the oldest revision etcd keeps, not from now:
				// the long-polls woken here read the feed and wait
				// again before the next watch is set up, and a commit
				// meanwhile must reach them.
				s.log.Warn("account watch fell behind etcd compaction; waking every long-poll", "compact_revision", resp.CompactRevision)
				next = resp.CompactRevision
				s.metrics.rewatches.Inc()
				s.wakeAll()
				break
			}
			if err := resp.Err(); err != nil {
				s.log.Warn("account watch cancelled; watching again", "err", err)
				break
			}
			healthy = true
			for _, ev := range resp.Events {
				s.observeAccount(ev.Kv)
			}
			// The watch resumes after the last event delivered. A reply's
			// header carries the member's revision, not that of its last
			// event: a watch that catches up gets the changes it missed
			// in batches, each with the head's revision, and after a
			// created notification events before it may still come. Only
			// a progress notification says that nothing before it is
			// left (a watch started from now has nothing before it).
			switch {
			case len(resp.Events) > 0:
				next = resp.Events[len(resp.Events)-1].Kv.ModRevision + 1
			case resp.Header.Revision > 0 && (resp.IsProgressNotify() || resp.Created && next == 0):
				next = max(next, resp.Header.Revision+1)
			}
		}
		cancel()
		if s.ctx.Err() != nil {
			return
		}
		s.metrics.rewatches.Inc()
		if healthy {
			backoff = 50 * time.Millisecond
		}
		if retry.Sleep(s.ctx, backoff) != nil {
			return
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// observeAccount applies an account value from the watch.
func (s *Store) observeAccount(kv *mvccpb.KeyValue) {
	id, ok := s.k.parseAccount(string(kv.Key))
	if !ok {
		return
	}
	t := s.existingTenant(id)
	if t == nil {
		return
	}
	var acct store.AccountRecord
	if err := json.Unmarshal(kv.Value, &acct); err != nil {
		s.log.Error("undecodable account in etcd", "key", string(kv.Key), "err", err)
		t.wake()
		return
	}
	t.observe(acct, kv.ModRevision)
}

func (s *Store) wakeAll() {
	for _, t := range s.allTenants() {
		t.wake()
	}
}

// pruneBatch is the most events one retention transaction deletes.
const pruneBatch = 1000

// prune deletes events older than the retention window and records the
// newest one deleted as the account's pruned mark, so that a marker before
// it gets ErrMarkerExpired (design item 4). Every node runs it; the account
// condition makes concurrent runs harmless.
//
// One account that fails does not hold up the others: the pass goes on,
// and returns the first failure.
func (s *Store) prune(ctx context.Context) error {
	cutoff := timeuuid.Low(s.now().Add(-s.opts.Retention))
	start, end := s.k.accounts(), prefixEnd(s.k.accounts())
	var failed error
	for {
		resp, err := s.read(ctx, "list accounts", clientv3.OpGet(start, clientv3.WithRange(end), clientv3.WithKeysOnly(), clientv3.WithLimit(1000)))
		if err != nil {
			return cmp.Or(failed, err)
		}
		rr := resp.Responses[0].GetResponseRange()
		for _, kv := range rr.Kvs {
			id, ok := s.k.parseAccount(string(kv.Key))
			if !ok {
				continue
			}
			if err := s.pruneTenant(ctx, id, cutoff); err != nil {
				if ctx.Err() != nil {
					return err
				}
				if failed == nil {
					failed = fmt.Errorf("retention of tenant %s: %w", id, err)
				}
			}
		}
		if !rr.More || len(rr.Kvs) == 0 {
			return failed
		}
		start = string(rr.Kvs[len(rr.Kvs)-1].Key) + "\x00"
	}
}

// pruneTenant deletes the tenant's events before cutoff, in transactions
// of at most pruneBatch events and about pruneBytes, and takes their bytes
// off the account's count.
func (s *Store) pruneTenant(ctx context.Context, id string, cutoff timeuuid.UUID) error {
	prefix := s.k.events(id)
	limit := sizedLimit(pruneBytes, 0, 0, pruneBatch)
	for {
		resp, err := s.read(ctx, "find expired events",
			clientv3.OpGet(prefix, clientv3.WithRange(s.k.event(id, cutoff)), clientv3.WithLimit(limit)))
		if err != nil {
			return err
		}
		rr := resp.Responses[0].GetResponseRange()
		if len(rr.Kvs) == 0 {
			return nil
		}
		evs, total, err := s.sizedEvents(id, rr.Kvs)
		if err != nil {
			return err
		}
		last := evs[len(evs)-1].id
		lastKey := string(rr.Kvs[len(rr.Kvs)-1].Key)
		t := s.knownTenant(id)
		t.wmu.Lock()
		_, err = s.write(ctx, t, "prune events", nil, func(w *writer) error {
			if timeuuid.Compare(w.acct.Pruned, last) >= 0 {
				return nil
			}
			// Events are only ever appended after the head, so the range
			// up to last holds exactly the expired events read above
			// (less any another node deleted meanwhile: those up to the
			// pruned mark, whose bytes it took off).
			var freed int64
			for _, e := range evs {
				if timeuuid.Compare(e.id, w.acct.Pruned) > 0 && w.acct.Counted(e.id) {
					freed += e.bytes
				}
			}
			w.ops = append(w.ops, clientv3.OpDelete(prefix, clientv3.WithRange(lastKey+"\x00")))
			w.acct.Pruned = last
			w.acct.EventBytes -= freed
			w.acctDirty = true
			return nil
		})
		t.wmu.Unlock()
		if err != nil {
			return err
		}
		if !rr.More {
			return nil
		}
		limit = sizedLimit(pruneBytes, total, int64(len(evs)), pruneBatch)
	}
}

// sizedLimit is how many events a range read asks for to hold about want
// bytes, at the mean size of the n events of total bytes read before: at
// least 16 and at most most; before any, 64 (a thousand of the largest
// events are 30 MB, and a range read holds them at once).
func sizedLimit(want, total, n, most int64) int64 {
	if n == 0 {
		return min(most, 64)
	}
	return min(most, max(want/max(total/n, 1)+1, 16))
}

// pruneBytes is about the most bytes of events one retention transaction
// reads and deletes.
const pruneBytes = 4 << 20

// sizedEvent is an event's id and its stored size.
type sizedEvent struct {
	id    timeuuid.UUID
	bytes int64
}

// sizedEvents are the ids and sizes of the tenant's event keys kvs, and
// their total size.
func (s *Store) sizedEvents(id string, kvs []*mvccpb.KeyValue) ([]sizedEvent, int64, error) {
	evs := make([]sizedEvent, len(kvs))
	var total int64
	for i, kv := range kvs {
		eid, ok := s.k.parseEventID(id, string(kv.Key))
		if !ok {
			return nil, 0, fmt.Errorf("corrupt event key %q", kv.Key)
		}
		evs[i] = sizedEvent{eid, int64(len(kv.Value))}
		total += evs[i].bytes
	}
	return evs, total, nil
}
