//go:build unix

package boltstore_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/svcreg/svcreg/server/store/boltstore"
)

// A server that opens the database while a restore or a compaction holds
// it waits for the lock; once it has it, the file it holds may be one the
// restore has since renamed another over. Serving that one, it would
// answer from the replaced data and write where no later start reads.
func TestOpenAfterTheFileWasReplacedWhileItWaited(t *testing.T) {
	t.Parallel()
	live, other := t.TempDir(), t.TempDir()
	dbWith(t, live, "k", "replaced")
	dbWith(t, other, "k", "restored")
	path := filepath.Join(live, boltstore.FileName)
	old, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := syscall.Flock(int(old.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	type opened struct {
		s   *boltstore.Store
		err error
	}
	done := make(chan opened, 1)
	go func() {
		s, err := boltstore.Open(live, boltstore.Options{ReapInterval: -1})
		done <- opened{s, err}
	}()
	waitOpened(t, path) // Open has the file, and waits for its lock
	if err := os.Rename(filepath.Join(other, boltstore.FileName), path); err != nil {
		t.Fatal(err)
	}
	syscall.Flock(int(old.Fd()), syscall.LOCK_UN)
	o := <-done
	if o.err != nil {
		t.Fatal(o.err)
	}
	defer o.s.Close()
	v, err := o.s.Config(context.Background(), "1", "k")
	if err != nil {
		t.Fatal(err)
	}
	if v.Value != "restored" {
		t.Fatalf("the store serves %q, from the file no longer at %s", v.Value, path)
	}
}

// waitOpened waits until the process has path open a second time (the
// test holds it once), where /proc shows its descriptors; elsewhere it
// gives the opener half a second.
func waitOpened(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		time.Sleep(500 * time.Millisecond)
		return
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		fds, _ := os.ReadDir("/proc/self/fd")
		n := 0
		for _, fd := range fds {
			if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && target == path {
				n++
			}
		}
		if n >= 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is not opened", path)
		}
	}
}
