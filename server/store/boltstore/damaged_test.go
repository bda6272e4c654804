package boltstore_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/svcreg/svcreg/server/store"
	"github.com/svcreg/svcreg/server/store/boltstore"
)

// savedDB makes a database under a new directory with one account, a
// service and a configuration value, closes it, and returns its directory
// and the bytes of its file.
func savedDB(t *testing.T) (string, []byte) {
	t.Helper()
	dir := t.TempDir()
	s, err := boltstore.Open(dir, boltstore.Options{ReapInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.CreateService(ctx, "1", store.NewService{ID: "svc1", HeartbeatTimeout: 30}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetConfig(ctx, "1", "key", "value"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, boltstore.FileName))
	if err != nil {
		t.Fatal(err)
	}
	return dir, raw
}

// A flipped bit in the name of an account's "services" bucket leaves a
// file bbolt's check passes (the keys stay in order): Open must say the
// database is damaged, not panic.
func TestOpenAccountMissingABucketIsDamaged(t *testing.T) {
	t.Parallel()
	dir, raw := savedDB(t)
	n := bytes.Count(raw, []byte("services"))
	if n == 0 {
		t.Fatal("no bucket name to damage")
	}
	raw = bytes.ReplaceAll(raw, []byte("services"), []byte("servicet"))
	if err := os.WriteFile(filepath.Join(dir, boltstore.FileName), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("Open of a damaged database panicked: %v", r)
		}
	}()
	s, err := boltstore.Open(dir, boltstore.Options{ReapInterval: -1})
	if err == nil {
		s.Close()
	}
	var damaged *boltstore.DamagedError
	if !errors.As(err, &damaged) {
		t.Fatalf("Open: %v; want a DamagedError", err)
	}
}
