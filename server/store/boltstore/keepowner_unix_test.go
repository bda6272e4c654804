//go:build unix

package boltstore

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/svcreg/svcreg/internal/testprog"
)

// keepOwner changes a regular file of one name only, and not through a
// link: a name in the data directory (the server's user's to write)
// swapped for a link to, or a hard link of, another file does not give
// that file the database's owner.
func TestKeepOwnerGivesNoLinkedFileAway(t *testing.T) {
	testprog.NeedRoot(t, "to give files another owner")
	t.Parallel()
	dir, other := t.TempDir(), t.TempDir()
	const uid, gid = 61234, 61235
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	precious := filepath.Join(other, "precious")
	if err := os.WriteFile(precious, []byte("root's"), 0o600); err != nil {
		t.Fatal(err)
	}
	soft, hard := filepath.Join(dir, "soft"), filepath.Join(other, "hard")
	if err := os.Symlink(precious, soft); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(precious, hard); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{soft, hard} {
		if err := keepOwner(p, dir); err == nil {
			t.Errorf("keepOwner(%s): no error", p)
		}
		fi, err := os.Stat(precious)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 {
			t.Errorf("keepOwner(%s) gave the linked file to %d:%d", p, st.Uid, st.Gid)
		}
	}
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := keepOwner(plain, dir); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(plain); err != nil || fi.Sys().(*syscall.Stat_t).Uid != uid {
		t.Errorf("keepOwner of a plain file: %v; want it owned by %d", err, uid)
	}
}
