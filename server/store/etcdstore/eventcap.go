package etcdstore

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// capEvents deletes, for every tenant this node appended events to since
// its last run, the oldest events beyond Options.MaxEvents, through the
// retention path: the account's pruned mark moves past them, so a marker
// before them gets ErrMarkerExpired. Every node runs it for its own
// appends, so every tenant written to is looked at.
func (s *Store) capEvents(ctx context.Context) error {
	for _, t := range s.allTenants() {
		if !t.appended.Swap(false) {
			continue
		}
		if err := s.capTenant(ctx, t.id); err != nil {
			t.appended.Store(true) // look again next run
			return fmt.Errorf("event cap of tenant %s: %w", t.id, err)
		}
	}
	return nil
}

func (s *Store) capTenant(ctx context.Context, id string) error {
	prefix := s.k.events(id)
	end := prefixEnd(prefix)
	resp, err := s.read(ctx, "count events", clientv3.OpGet(prefix, clientv3.WithRange(end), clientv3.WithCountOnly()))
	if err != nil {
		return err
	}
	excess := resp.Responses[0].GetResponseRange().Count - int64(s.opts.MaxEvents)
	if excess <= 0 {
		return nil
	}
	// The first event kept is the one after the excess.
	resp, err = s.read(ctx, "find the oldest events",
		clientv3.OpGet(prefix, clientv3.WithRange(end), clientv3.WithKeysOnly(), clientv3.WithLimit(excess+1)))
	if err != nil {
		return err
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if int64(len(kvs)) <= excess {
		return nil // deleted meanwhile
	}
	key := string(kvs[excess].Key)
	keep, ok := s.k.parseEventID(id, key)
	if !ok {
		return fmt.Errorf("corrupt event key %q", key)
	}
	return s.pruneTenant(ctx, id, keep)
}
