package etcdstore

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/server/store"
)

// SetConfig implements store.Store (spec §7.9).
func (s *Store) SetConfig(ctx context.Context, tenantID, id, value string) error {
	t, err := s.tenantFor(ctx, tenantID)
	if err != nil {
		return err
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	key := s.k.config(tenantID, id)
	_, err = s.clientWrite(ctx, t, "set configuration value", []string{key}, func(w *writer) error {
		var old *string
		if kv := w.got[key]; kv != nil {
			if string(kv.Value) == value {
				return nil // same value: no write, no event
			}
			o := string(kv.Value)
			old = &o
		} else {
			if w.acct.Configs >= w.acct.Limits.ConfigValues {
				return &store.LimitError{Resource: store.ResourceConfigValue, Max: w.acct.Limits.ConfigValues}
			}
			w.acct.Configs++
		}
		w.ops = append(w.ops, clientv3.OpPut(key, value))
		w.appendEvent(func(eid timeuuid.UUID) store.Event {
			return store.ConfigUpdateEvent(eid, w.now, id, old, value)
		})
		return nil
	})
	return err
}

// DeleteConfig implements store.Store (spec §7.10).
func (s *Store) DeleteConfig(ctx context.Context, tenantID, id string) error {
	t, err := s.tenantFor(ctx, tenantID)
	if err != nil {
		return err
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	key := s.k.config(tenantID, id)
	_, err = s.clientWrite(ctx, t, "delete configuration value", []string{key}, func(w *writer) error {
		kv := w.got[key]
		if kv == nil {
			return &store.NotFoundError{Kind: store.KindConfigValue, Key: id}
		}
		old := string(kv.Value)
		w.del(key)
		w.acct.Configs--
		w.appendEvent(func(eid timeuuid.UUID) store.Event {
			return store.ConfigRemoveEvent(eid, w.now, id, old)
		})
		return nil
	})
	return err
}

// Config implements store.Store.
func (s *Store) Config(ctx context.Context, tenantID, id string) (registry.ConfigValue, error) {
	if _, err := s.tenantFor(ctx, tenantID); err != nil {
		return registry.ConfigValue{}, err
	}
	resp, err := s.read(ctx, "read configuration value", clientv3.OpGet(s.k.config(tenantID, id)))
	if err != nil {
		return registry.ConfigValue{}, err
	}
	kv := first(resp.Responses[0])
	if kv == nil {
		return registry.ConfigValue{}, &store.NotFoundError{Kind: store.KindConfigValue, Key: id}
	}
	return registry.ConfigValue{ID: id, Value: string(kv.Value)}, nil
}

// Configs implements store.Store (spec §7.8): a plain string prefix, starting
// at max(marker, prefix) (spec §13 item 27), read at one revision with the
// account that gives the page's feed marker.
func (s *Store) Configs(ctx context.Context, tenantID string, q store.ConfigQuery) (store.Page[registry.ConfigValue], error) {
	var page store.Page[registry.ConfigValue]
	if _, err := s.tenantFor(ctx, tenantID); err != nil {
		return page, err
	}
	base := s.k.configs(tenantID)
	start := base + max(q.Marker, q.Prefix)
	end := prefixEnd(base + q.Prefix)
	resp, err := s.read(ctx, "list configuration values", clientv3.OpGet(s.k.account(tenantID)),
		clientv3.OpGet(start, clientv3.WithRange(end), clientv3.WithLimit(int64(q.Limit+1))))
	if err != nil {
		return page, err
	}
	acct, err := decodeAccount(tenantID, first(resp.Responses[0]))
	if err != nil {
		return page, err
	}
	page.Marker = acct.FeedMarker()
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		id := string(kv.Key[len(base):])
		if len(page.Values) == q.Limit {
			page.Next = id
			break
		}
		page.Values = append(page.Values, registry.ConfigValue{ID: id, Value: string(kv.Value)})
	}
	return page, nil
}
