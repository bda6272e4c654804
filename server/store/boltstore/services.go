package boltstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/server/store"
)

// CreateService implements store.Store (spec §7.4).
func (s *Store) CreateService(ctx context.Context, tenantID string, ns store.NewService) (string, error) {
	// An expired service holding the id is timed out first, so the create
	// succeeds (spec §7.4 step 3, §11.3).
	t, err := s.rectified(tenantID)
	if err != nil {
		return "", err
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	rec := store.ServiceRecord{ID: ns.ID, Tags: ns.Tags, Metadata: ns.Metadata, HeartbeatTimeout: ns.HeartbeatTimeout, Incarnation: randUint64()}
	rec.Normalize()
	e := &hbEntry{id: rec.ID, incarnation: rec.Incarnation, timeout: rec.HeartbeatTimeout, exact: true}
	err = s.write(t, func(w *writer) error {
		svcs := w.bucket(bServices)
		if svcs.Get([]byte(rec.ID)) != nil {
			return store.ErrServiceExists
		}
		if t.nServices >= w.acct.Limits.Services {
			return &store.LimitError{Resource: store.ResourceService, Max: w.acct.Limits.Services}
		}
		if err := putJSON(svcs, rec.ID, rec); err != nil {
			return err
		}
		if err := putJSON(w.bucket(bHeartbeats), rec.ID, hbRecord{Incarnation: rec.Incarnation}); err != nil {
			return err
		}
		e.deadline = w.now.Add(time.Duration(rec.HeartbeatTimeout) * time.Second)
		e.cur = s.minter.Mint(s.tokenKey(t, e), 0, e.deadline)
		return w.appendEvent(func(id timeuuid.UUID) store.Event {
			return store.ServiceEvent(id, w.now, registry.ServiceJoin, rec)
		})
	})
	if err != nil {
		return "", err
	}
	t.nServices++
	t.mu.Lock()
	t.addEntry(e)
	t.mu.Unlock()
	return e.cur.String(), nil
}

// UpdateService implements store.Store (spec §7.5, design item 1).
func (s *Store) UpdateService(ctx context.Context, tenantID, id string, u store.ServiceUpdate) error {
	t, err := s.rectified(tenantID)
	if err != nil {
		return err
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	var updated store.ServiceRecord
	err = s.write(t, func(w *writer) error {
		svcs := w.bucket(bServices)
		var rec store.ServiceRecord
		if n, err := getJSON(svcs, id, &rec); err != nil {
			return err
		} else if n == 0 {
			return &store.NotFoundError{Kind: store.KindService, Key: id}
		}
		var changed bool
		updated, changed = rec.Apply(u)
		if !changed {
			return nil
		}
		if err := putJSON(svcs, id, updated); err != nil {
			return err
		}
		return w.appendEvent(func(eid timeuuid.UUID) store.Event {
			return store.ServiceEvent(eid, w.now, registry.ServiceUpdate, updated)
		})
	})
	if err != nil {
		return err
	}
	t.mu.Lock()
	if e := t.services[id]; e != nil {
		e.timeout = updated.HeartbeatTimeout
	}
	t.mu.Unlock()
	return nil
}

// DeleteService implements store.Store (spec §7.6); the outstanding token
// goes with the service.
func (s *Store) DeleteService(ctx context.Context, tenantID, id string) error {
	t, err := s.rectified(tenantID)
	if err != nil {
		return err
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	err = s.write(t, func(w *writer) error {
		svcs := w.bucket(bServices)
		var rec store.ServiceRecord
		if n, err := getJSON(svcs, id, &rec); err != nil {
			return err
		} else if n == 0 {
			return &store.NotFoundError{Kind: store.KindService, Key: id}
		}
		if err := svcs.Delete([]byte(id)); err != nil {
			return err
		}
		if err := w.bucket(bHeartbeats).Delete([]byte(id)); err != nil {
			return err
		}
		return w.appendEvent(func(eid timeuuid.UUID) store.Event {
			return store.ServiceEvent(eid, w.now, registry.ServiceRemove, rec)
		})
	})
	if err != nil {
		return err
	}
	t.nServices--
	t.mu.Lock()
	if e := t.services[id]; e != nil {
		t.removeEntry(e)
	}
	t.mu.Unlock()
	return nil
}

// Service implements store.Store.
func (s *Store) Service(ctx context.Context, tenantID, id string) (registry.Service, error) {
	t, err := s.readRectified(tenantID)
	if err != nil {
		return registry.Service{}, err
	}
	var rec store.ServiceRecord
	err = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bTenants).Bucket([]byte(t.id))
		if n, err := getJSON(b.Bucket(bServices), id, &rec); err != nil {
			return err
		} else if n == 0 {
			return &store.NotFoundError{Kind: store.KindService, Key: id}
		}
		return nil
	})
	if err != nil {
		return registry.Service{}, err
	}
	return rec.Service(t.lastSeen(rec)), nil
}

// lastSeen returns the time of the service's last heartbeat.
func (t *tenant) lastSeen(rec store.ServiceRecord) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.services[rec.ID]; e != nil && e.incarnation == rec.Incarnation {
		return e.lastSeen
	}
	return time.Time{}
}

// Services implements store.Store (spec §7.2).
func (s *Store) Services(ctx context.Context, tenantID string, q store.ServiceQuery) (store.Page[registry.Service], error) {
	var page store.Page[registry.Service]
	t, err := s.readRectified(tenantID)
	if err != nil {
		return page, err
	}
	var recs []store.ServiceRecord
	err = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bTenants).Bucket([]byte(t.id))
		var err error
		if page.Marker, err = feedMarker(b); err != nil {
			return err
		}
		c := b.Bucket(bServices).Cursor()
		for k, v := c.Seek([]byte(q.Marker)); k != nil; k, v = c.Next() {
			var r store.ServiceRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			if q.Tag != nil && !slices.Contains(r.Tags, *q.Tag) {
				continue
			}
			if len(recs) == q.Limit {
				page.Next = r.ID
				break
			}
			recs = append(recs, r)
		}
		return nil
	})
	if err != nil {
		return page, err
	}
	page.Values = make([]registry.Service, len(recs))
	t.mu.Lock()
	for i, r := range recs {
		var seen time.Time
		if e := t.services[r.ID]; e != nil && e.incarnation == r.Incarnation {
			seen = e.lastSeen
		}
		page.Values[i] = r.Service(seen)
	}
	t.mu.Unlock()
	return page, nil
}

// feedMarker returns the feed position of a read of tenant bucket b: just
// after the newest event, or the account's creation if it has none
// (design item 3).
func feedMarker(b *bolt.Bucket) (timeuuid.UUID, error) {
	var acct store.AccountRecord
	if err := json.Unmarshal(b.Get(kAccount), &acct); err != nil {
		return timeuuid.UUID{}, fmt.Errorf("account record: %w", err)
	}
	return acct.FeedMarker(), nil
}

func putJSON(b *bolt.Bucket, key string, v any) error {
	raw, err := store.MarshalJSON(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), raw)
}

// getJSON decodes the value at key into v and returns its size, 0 if
// there is none.
func getJSON(b *bolt.Bucket, key string, v any) (int, error) {
	raw := b.Get([]byte(key))
	if raw == nil {
		return 0, nil
	}
	return len(raw), json.Unmarshal(raw, v)
}

// hasPrefix is bytes.HasPrefix for a string prefix.
func hasPrefix(k []byte, prefix string) bool { return bytes.HasPrefix(k, []byte(prefix)) }
