package boltstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/server/store"
)

// Events implements store.Store (spec §7.11 steps 7-8, design items 4 and 9).
func (s *Store) Events(ctx context.Context, tenantID string, q store.EventQuery) (store.EventPage, error) {
	var page store.EventPage
	t, err := s.readRectified(tenantID)
	if err != nil {
		return page, err
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bTenants).Bucket([]byte(t.id))
		var acct store.AccountRecord
		if err := json.Unmarshal(b.Get(kAccount), &acct); err != nil {
			return err
		}
		from := q.From.Key()
		if q.CheckExpired && acct.Expired(q.From) && b.Bucket(bEvents).Get(from[:]) == nil {
			// A marker that is an event still kept is not expired:
			// after a restore (restartFeeds), its client saw nothing
			// the restore undid, and a read without a marker pages on
			// through the restored events.
			return store.ErrMarkerExpired
		}
		page.Head = acct.Head
		size := 0
		c := b.Bucket(bEvents).Cursor()
		quiet, skip := q.Quiet.Key(), q.Skips()
		for k, v := c.Seek(from[:]); k != nil; k, v = c.Next() {
			if skip && !bytes.Equal(k, from[:]) {
				// Past the event at From: go on at Quiet, once.
				skip = false
				if bytes.Compare(k, quiet[:]) < 0 {
					if k, v = c.Seek(quiet[:]); k == nil {
						break
					}
				}
			}
			typ, raw, ok := store.DecodeStoredEvent(v)
			if !ok {
				return fmt.Errorf("corrupt event %x", k)
			}
			if !store.Matches(q.Types, typ) {
				continue
			}
			if q.Full(len(page.Values), size, len(raw)) {
				page.Next = timeuuid.FromKey(k)
				break
			}
			size += len(raw)
			page.Values = append(page.Values, store.Event{ID: timeuuid.FromKey(k), Type: typ,
				JSON: append(json.RawMessage(nil), raw...)})
		}
		return nil
	})
	return page, err
}

// pruneBatch is the most events one retention transaction deletes.
const pruneBatch = 10000

// prune deletes events older than the retention window and records the
// newest one deleted, so that a marker before it gets ErrMarkerExpired.
func (s *Store) prune() error {
	cutoff := timeuuid.Low(s.now().Add(-s.opts.Retention)).Key()
	for _, t := range s.allTenants() {
		for {
			n, err := s.pruneTenant(t, cutoff[:])
			if err != nil {
				return err
			}
			if n < pruneBatch {
				break
			}
		}
	}
	return s.pruneTokens()
}

func (s *Store) pruneTenant(t *tenant, cutoff []byte) (int, error) {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	n := 0
	err := s.write(t, func(w *writer) error {
		c := w.bucket(bEvents).Cursor()
		var last []byte
		for k, v := c.First(); k != nil && bytes.Compare(k, cutoff) < 0 && n < pruneBatch; k, v = c.Next() {
			last = append(last[:0], k...)
			w.pruned.add(v)
			if err := c.Delete(); err != nil {
				return err
			}
			n++
		}
		if id := timeuuid.FromKey(last); n > 0 && timeuuid.Compare(id, w.acct.Pruned) > 0 {
			// Not back: a restored feed starts past its old events.
			w.acct.Pruned = id
			w.acctDirty = true
		}
		return nil
	})
	return n, err
}

// tally counts events and their bytes as stored.
type tally struct {
	n     int
	bytes int64
}

func (t *tally) add(v []byte) {
	t.n++
	t.bytes += int64(len(v))
}

// capEvents deletes the tenant's oldest events beyond Options.MaxEvents
// and Options.MaxEventBytes, in the transaction that appends the new ones,
// and records the newest one deleted, as retention does: one account cannot
// fill the disk with events (a write rate alone only slows that down). held
// is what the tenant held before the transaction. The events appended by
// the transaction itself are kept.
func (w *writer) capEvents(held tally) error {
	max, maxBytes := w.s.opts.MaxEvents, w.s.opts.MaxEventBytes
	n := held.n + w.added.n - w.pruned.n
	size := held.bytes + w.added.bytes - w.pruned.bytes
	over := func() bool { return max >= 0 && n > max || maxBytes >= 0 && size > maxBytes }
	if !over() {
		return nil
	}
	b := w.bucket(bEvents)
	var keys [][]byte
	c := b.Cursor()
	for k, v := c.First(); k != nil && n > w.added.n && over(); k, v = c.Next() {
		keys = append(keys, bytes.Clone(k))
		w.pruned.add(v)
		n--
		size -= int64(len(v))
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	if len(keys) > 0 {
		if id := timeuuid.FromKey(keys[len(keys)-1]); timeuuid.Compare(id, w.acct.Pruned) > 0 {
			w.acct.Pruned = id
		}
	}
	return nil
}
