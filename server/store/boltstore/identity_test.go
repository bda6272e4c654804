package boltstore

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/svcreg/svcreg/server/store"
)

func TestRetentionDropsExpiredTokens(t *testing.T) {
	now := time.Now()
	s, err := Open(t.TempDir(), Options{Clock: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	live, dead := [32]byte{1}, [32]byte{2}
	s.PutToken(ctx, live, store.TokenInfo{User: "u", Tenant: "1", Expires: now.Add(time.Hour)})
	s.PutToken(ctx, dead, store.TokenInfo{User: "u", Tenant: "1", Expires: now.Add(-time.Second)})
	if err := s.prune(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Token(ctx, live); err != nil {
		t.Fatalf("live token: %v", err)
	}
	if _, err := s.Token(ctx, dead); !errors.Is(err, store.ErrTokenUnknown) {
		t.Fatalf("expired token after retention: %v, want ErrTokenUnknown", err)
	}
}

// With every --dev tenant id taken, DevTenant says so, rather than probing
// for good inside the store's one write transaction (which held every
// other write); a user that has its tenant keeps it.
func TestDevTenantsAllTaken(t *testing.T) {
	t.Parallel()
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	had, err := s.DevTenant(ctx, "had")
	if err != nil {
		t.Fatal(err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bDevTenants)
		for n := range store.DevTenants {
			if err := b.Put([]byte("tenant/"+strconv.Itoa(store.DevTenantFirst+n)), []byte("u")); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if tenant, err := s.DevTenant(ctx, "one-more"); !errors.Is(err, store.ErrDevTenantsTaken) || tenant != "" {
		t.Errorf("DevTenant with every id taken: %q, %v; want ErrDevTenantsTaken", tenant, err)
	}
	if tenant, err := s.DevTenant(ctx, "had"); err != nil || tenant != had {
		t.Errorf("DevTenant of a user with a tenant: %q, %v; want %q", tenant, err, had)
	}
	if err := s.SetConfig(ctx, had, "k", "v"); err != nil {
		t.Errorf("a write after: %v", err)
	}
}
