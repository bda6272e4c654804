package boltstore_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/svcreg/svcreg/server/store/boltstore"
)

// dbWith makes a database under dir holding the configuration value key.
func dbWith(t *testing.T, dir, key, value string) {
	t.Helper()
	s, err := boltstore.Open(dir, boltstore.Options{ReapInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SetConfig(context.Background(), "1", key, value); err != nil {
		t.Fatal(err)
	}
}

// Two restores in the same second each keep the database they replace:
// the second had renamed its over the first's.
func TestRestoreKeepsEachReplaced(t *testing.T) {
	t.Parallel()
	live, a, b := t.TempDir(), t.TempDir(), t.TempDir()
	dbWith(t, live, "only-here", "precious")
	dbWith(t, a, "k", "a")
	dbWith(t, b, "k", "b")
	first, err := boltstore.Restore(live, filepath.Join(a, boltstore.FileName))
	if err != nil {
		t.Fatal(err)
	}
	second, err := boltstore.Restore(live, filepath.Join(b, boltstore.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if first == second {
		t.Fatalf("both restores kept the database they replaced as %s", first)
	}
	dir := t.TempDir()
	if _, err := boltstore.Restore(dir, first); err != nil {
		t.Fatal(err)
	}
	s, err := boltstore.Open(dir, boltstore.Options{ReapInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Config(context.Background(), "1", "only-here"); err != nil {
		t.Errorf("the database the first restore kept as %s: %v; want the original", first, err)
	}
}

// A backup is not written into the data directory: renamed over the
// database, it would leave the server writing to a file no longer there.
func TestBackupRefusesTheDataDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dbWith(t, dir, "k", "v")
	for _, dst := range []string{filepath.Join(dir, boltstore.FileName), filepath.Join(dir, "backup.db"), filepath.Join(dir, ".", "sub", "..", "x.db")} {
		if _, err := boltstore.Backup(dir, dst); err == nil || !strings.Contains(err.Error(), "in the data directory") {
			t.Errorf("backup to %s: %v; want it refused", dst, err)
		}
	}
	if _, err := boltstore.Backup(dir, filepath.Join(t.TempDir(), "backup.db")); err != nil {
		t.Errorf("backup elsewhere: %v", err)
	}
}
