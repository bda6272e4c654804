package boltstore

import (
	"context"

	bolt "go.etcd.io/bbolt"

	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/server/store"
)

// SetConfig implements store.Store (spec §7.9).
func (s *Store) SetConfig(ctx context.Context, tenantID, id, value string) error {
	t, err := s.tenantFor(tenantID)
	if err != nil {
		return err
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	created := false
	err = s.write(t, func(w *writer) error {
		b := w.bucket(bConfig)
		var old *string
		if raw := b.Get([]byte(id)); raw != nil {
			if string(raw) == value {
				return nil // same value: no write, no event
			}
			o := string(raw)
			old = &o
		} else {
			if t.nConfig >= w.acct.Limits.ConfigValues {
				return &store.LimitError{Resource: store.ResourceConfigValue, Max: w.acct.Limits.ConfigValues}
			}
			created = true
		}
		if err := b.Put([]byte(id), []byte(value)); err != nil {
			return err
		}
		return w.appendEvent(func(eid timeuuid.UUID) store.Event {
			return store.ConfigUpdateEvent(eid, w.now, id, old, value)
		})
	})
	if err == nil && created {
		t.nConfig++
	}
	return err
}

// DeleteConfig implements store.Store (spec §7.10).
func (s *Store) DeleteConfig(ctx context.Context, tenantID, id string) error {
	t, err := s.tenantFor(tenantID)
	if err != nil {
		return err
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	err = s.write(t, func(w *writer) error {
		b := w.bucket(bConfig)
		raw := b.Get([]byte(id))
		if raw == nil {
			return &store.NotFoundError{Kind: store.KindConfigValue, Key: id}
		}
		old := string(raw)
		if err := b.Delete([]byte(id)); err != nil {
			return err
		}
		return w.appendEvent(func(eid timeuuid.UUID) store.Event {
			return store.ConfigRemoveEvent(eid, w.now, id, old)
		})
	})
	if err == nil {
		t.nConfig--
	}
	return err
}

// Config implements store.Store.
func (s *Store) Config(ctx context.Context, tenantID, id string) (registry.ConfigValue, error) {
	t, err := s.tenantFor(tenantID)
	if err != nil {
		return registry.ConfigValue{}, err
	}
	var cv registry.ConfigValue
	err = s.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bTenants).Bucket([]byte(t.id)).Bucket(bConfig).Get([]byte(id))
		if raw == nil {
			return &store.NotFoundError{Kind: store.KindConfigValue, Key: id}
		}
		cv = registry.ConfigValue{ID: id, Value: string(raw)}
		return nil
	})
	return cv, err
}

// Configs implements store.Store (spec §7.8): a plain string prefix, starting
// at max(marker, prefix) (spec §13 item 27).
func (s *Store) Configs(ctx context.Context, tenantID string, q store.ConfigQuery) (store.Page[registry.ConfigValue], error) {
	var page store.Page[registry.ConfigValue]
	t, err := s.tenantFor(tenantID)
	if err != nil {
		return page, err
	}
	start := max(q.Marker, q.Prefix)
	err = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bTenants).Bucket([]byte(t.id))
		var err error
		if page.Marker, err = feedMarker(b); err != nil {
			return err
		}
		c := b.Bucket(bConfig).Cursor()
		for k, v := c.Seek([]byte(start)); k != nil && hasPrefix(k, q.Prefix); k, v = c.Next() {
			if len(page.Values) == q.Limit {
				page.Next = string(k)
				break
			}
			page.Values = append(page.Values, registry.ConfigValue{ID: string(k), Value: string(v)})
		}
		return nil
	})
	return page, err
}
