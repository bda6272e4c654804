package boltstore

import (
	"context"
	"errors"
	"testing"
	"time"

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
