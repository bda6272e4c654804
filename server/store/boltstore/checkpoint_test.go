package boltstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/svcreg/svcreg/server/store"
)

// storedHB is the heartbeat record of service id of tenant "1", if any.
func storedHB(t *testing.T, s *Store, id string) (h hbRecord, ok bool) {
	t.Helper()
	err := s.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bTenants).Bucket([]byte("1")).Bucket(bHeartbeats).Get([]byte(id))
		if raw == nil {
			return nil
		}
		ok = true
		return json.Unmarshal(raw, &h)
	})
	if err != nil {
		t.Fatal(err)
	}
	return h, ok
}

// A checkpoint writes a heartbeat's state for the service of the
// incarnation that took it: it tells the incarnation from the service's
// heartbeat record, or, in a file without one, from the service's own; a
// service deleted and created again since keeps its new state.
func TestCheckpointWritesTheIncarnationsState(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	beat := func(id, tok string) string {
		t.Helper()
		next, err := s.Heartbeat(ctx, "1", id, tok)
		if err != nil {
			t.Fatal(err)
		}
		return next
	}
	tok, err := s.CreateService(ctx, "1", store.NewService{ID: "kept", HeartbeatTimeout: 30})
	if err != nil {
		t.Fatal(err)
	}
	beat("kept", beat("kept", tok))
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	if h, ok := storedHB(t, s, "kept"); !ok || h.Seq != 2 || h.LastSeen == 0 {
		t.Errorf("after two heartbeats: %+v (stored %v), want seq 2 and a last seen", h, ok)
	}

	// A file without the heartbeat record.
	tok, err = s.CreateService(ctx, "1", store.NewService{ID: "bare", HeartbeatTimeout: 30})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bTenants).Bucket([]byte("1")).Bucket(bHeartbeats).Delete([]byte("bare"))
	}); err != nil {
		t.Fatal(err)
	}
	beat("bare", tok)
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	if h, ok := storedHB(t, s, "bare"); !ok || h.Seq != 1 {
		t.Errorf("a service without a heartbeat record: %+v (stored %v), want seq 1", h, ok)
	}

	// Heartbeated, then deleted and created again before the checkpoint.
	tok, err = s.CreateService(ctx, "1", store.NewService{ID: "again", HeartbeatTimeout: 30})
	if err != nil {
		t.Fatal(err)
	}
	beat("again", tok)
	if err := s.DeleteService(ctx, "1", "again"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateService(ctx, "1", store.NewService{ID: "again", HeartbeatTimeout: 30}); err != nil {
		t.Fatal(err)
	}
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	if h, ok := storedHB(t, s, "again"); !ok || h.Seq != 0 {
		t.Errorf("a service created again: %+v (stored %v), want the new one's seq 0", h, ok)
	}
}

// BenchmarkCheckpoint checkpoints 200 heartbeats of services with the
// most metadata the API takes, each value 255 '<' (some 4.7 KB a record). heartbeat-record reads the incarnation
// from the heartbeat record; service-record, for the ratio, from the
// service's, as the checkpoint did before.
func BenchmarkCheckpoint(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	md := map[string]string{}
	for i := range 18 {
		md[fmt.Sprintf("key-%02d", i)] = strings.Repeat("<", 255)
	}
	tokens := map[string]string{}
	for i := range 200 {
		id := fmt.Sprintf("svc-%03d", i)
		if tokens[id], err = s.CreateService(ctx, "1", store.NewService{ID: id, Metadata: md, HeartbeatTimeout: 120}); err != nil {
			b.Fatal(err)
		}
	}
	run := func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			for id, tok := range tokens {
				if tokens[id], err = s.Heartbeat(ctx, "1", id, tok); err != nil {
					b.Fatal(err)
				}
			}
			b.StartTimer()
			if err := s.checkpoint(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("heartbeat-record", run)
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bTenants).Bucket([]byte("1")).DeleteBucket(bHeartbeats)
	}); err != nil {
		b.Fatal(err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		_, err := tx.Bucket(bTenants).Bucket([]byte("1")).CreateBucket(bHeartbeats)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.Run("service-record", func(b *testing.B) {
		// Each checkpoint writes the heartbeat records again: take them
		// out before each, so that every one reads the service's.
		for b.Loop() {
			b.StopTimer()
			for id, tok := range tokens {
				if tokens[id], err = s.Heartbeat(ctx, "1", id, tok); err != nil {
					b.Fatal(err)
				}
			}
			if err := s.db.Update(func(tx *bolt.Tx) error {
				hb := tx.Bucket(bTenants).Bucket([]byte("1")).Bucket(bHeartbeats)
				for id := range tokens {
					if err := hb.Delete([]byte(id)); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if err := s.checkpoint(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
