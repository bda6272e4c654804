package etcdstore

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// capEvents deletes, for every tenant this node appended events to since
// its last run, the oldest events beyond Options.MaxEvents and
// Options.MaxEventBytes, through the retention path: the account's pruned
// mark moves past them, so a marker before them gets ErrMarkerExpired.
// Every node runs it for its own appends, so every tenant written to is
// looked at; the bytes are counted with the account, so a cap holds for
// the writes of every node together.
//
// A tenant whose cap fails is looked at again next run, and the others
// still get theirs: returning at the first failure left every tenant after
// it in the pass unchecked.
func (s *Store) capEvents(ctx context.Context) error {
	var first error
	failed := 0
	for _, t := range s.allTenants() {
		if ctx.Err() != nil {
			break
		}
		if !t.appended.Swap(false) {
			continue
		}
		if err := s.capTenant(ctx, t.id); err != nil {
			t.appended.Store(true) // look again next run
			if failed++; first == nil {
				first = fmt.Errorf("event cap of tenant %s: %w", t.id, err)
			}
		}
	}
	if failed > 1 {
		return fmt.Errorf("%w (and %d more tenants)", first, failed-1)
	}
	return first
}

func (s *Store) capTenant(ctx context.Context, id string) error {
	prefix := s.k.events(id)
	end := prefixEnd(prefix)
	resp, err := s.read(ctx, "count events", clientv3.OpGet(s.k.account(id)),
		clientv3.OpGet(prefix, clientv3.WithRange(end), clientv3.WithCountOnly()))
	if err != nil {
		return err
	}
	acct, err := decodeAccount(id, first(resp.Responses[0]))
	if err != nil {
		return err
	}
	var excess, excessBytes int64
	if s.opts.MaxEvents > 0 {
		excess = resp.Responses[1].GetResponseRange().Count - int64(s.opts.MaxEvents)
	}
	if s.opts.MaxEventBytes > 0 && acct.BytesCounted {
		excessBytes = acct.EventBytes - s.opts.MaxEventBytes
	}
	if excess <= 0 && excessBytes <= 0 {
		return nil
	}
	if f := s.afterEventCount.Swap(nil); f != nil {
		(*f)()
	}
	// The oldest events go until both are within their caps (events not
	// counted, older than the count, all go first); the first event kept
	// is the one after them. The newest is always kept. They are read at
	// the revision of the count: another node capping the account
	// meanwhile (it appended to it too) would otherwise have deleted the
	// excess already, and this one would count it again in the events
	// after it, down to the newest.
	rev := resp.Header.Revision
	start := prefix
	limit := sizedLimit(pruneBytes, 0, 0, pruneBatch)
	var keysOnly []clientv3.OpOption
	if excessBytes <= 0 {
		// Only the count is over: the keys tell which events go, in one
		// read of the excess and the first event kept.
		keysOnly = []clientv3.OpOption{clientv3.WithKeysOnly()}
		limit = min(excess+1, pruneBatch)
	}
	for {
		resp, err = s.read(ctx, "find the oldest events",
			clientv3.OpGet(start, append([]clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(limit), clientv3.WithRev(rev)}, keysOnly...)...))
		if err != nil {
			return err
		}
		rr := resp.Responses[0].GetResponseRange()
		evs, total, err := s.sizedEvents(id, rr.Kvs)
		if err != nil {
			return err
		}
		for i, e := range evs {
			if excess <= 0 && excessBytes <= 0 || i == len(evs)-1 && !rr.More {
				return s.pruneTenant(ctx, id, e.id)
			}
			excess--
			if acct.Counted(e.id) {
				excessBytes -= e.bytes
			}
		}
		if len(evs) == 0 {
			return nil // deleted meanwhile
		}
		start = string(rr.Kvs[len(rr.Kvs)-1].Key) + "\x00"
		limit = sizedLimit(pruneBytes, total, int64(len(evs)), pruneBatch)
	}
}
