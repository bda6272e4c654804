//go:build unix

package boltstore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/svcreg/svcreg/internal/testprog"
	"github.com/svcreg/svcreg/server/store/boltstore"
)

// Run as root (an operator's maintenance command), a restore gives the
// restored database the owner of the one it replaces: a root-owned file
// 0600 is one the server, running as its own user, cannot open.
func TestRestoreKeepsTheOwner(t *testing.T) {
	testprog.NeedRoot(t, "to give files another owner")
	t.Parallel()
	live, backup := t.TempDir(), t.TempDir()
	dbWith(t, live, "k", "live")
	dbWith(t, backup, "k", "backup")
	const uid, gid = 61234, 61235
	for _, p := range []string{live, filepath.Join(live, boltstore.FileName)} {
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := boltstore.Restore(live, filepath.Join(backup, boltstore.FileName)); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(live, boltstore.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid || st.Gid != gid {
		t.Errorf("restored database owned by %d:%d; want %d:%d, the owner of the one it replaced", st.Uid, st.Gid, uid, gid)
	}
}

// So does a compaction that rewrites the file.
func TestCompactKeepsTheOwner(t *testing.T) {
	testprog.NeedRoot(t, "to give files another owner")
	t.Parallel()
	dir := t.TempDir()
	s, err := boltstore.Open(dir, boltstore.Options{ReapInterval: -1, MaxEvents: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	big := strings.Repeat("x", 2000)
	for i := range 300 {
		if err := s.SetConfig(ctx, "1", fmt.Sprintf("k%d", i), big); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 300 {
		if err := s.DeleteConfig(ctx, "1", fmt.Sprintf("k%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	const uid, gid = 61234, 61235
	path := filepath.Join(dir, boltstore.FileName)
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
	before, after, err := boltstore.Compact(dir)
	if err != nil {
		t.Fatal(err)
	}
	if after >= before {
		t.Fatalf("nothing to compact (%d bytes, %d compacted): the test needs a file that shrinks", before, after)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid || st.Gid != gid {
		t.Errorf("compacted database owned by %d:%d; want %d:%d, the owner of the file it replaced", st.Uid, st.Gid, uid, gid)
	}
}
