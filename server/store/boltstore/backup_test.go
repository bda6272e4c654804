package boltstore_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/server/store"
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

// A backup given a directory, or a file in a directory that does not
// exist, says so before it copies anything, and leaves nothing behind.
func TestBackupNamesAMistakenDestination(t *testing.T) {
	t.Parallel()
	dir, out := t.TempDir(), t.TempDir()
	dbWith(t, dir, "k", "v")
	for _, c := range []struct{ dst, want string }{
		{out, "is a directory"},
		{out + "/", "is a directory"},
		{filepath.Join(out, "missing", "b.db"), "does not exist"},
		{filepath.Join(out, "missing") + "/", "does not exist"},
	} {
		if _, err := boltstore.Backup(dir, c.dst); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("backup to %s: %v; want an error that says it %s", c.dst, err, c.want)
		}
	}
	if ents, err := os.ReadDir(out); err != nil || len(ents) != 0 {
		t.Errorf("the destination's directory after the refused backups: %v, %v; want it empty", ents, err)
	}
	if ents, err := os.ReadDir(filepath.Dir(out)); err != nil {
		t.Fatal(err)
	} else {
		for _, e := range ents {
			if strings.Contains(e.Name(), ".tmp-") {
				t.Errorf("left %s beside the directory", e.Name())
			}
		}
	}
}

// A backup writes its copy to a file of a name no one knew before: a
// link planted at a name it could be given (in a directory others may
// write, such as /tmp) is not followed, and what it points at stays.
func TestBackupFollowsNoPlantedLink(t *testing.T) {
	t.Parallel()
	dir, out := t.TempDir(), t.TempDir()
	dbWith(t, dir, "k", "v")
	target := filepath.Join(t.TempDir(), "precious")
	if err := os.WriteFile(target, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(out, "backup.db")
	if err := os.Symlink(target, dst+".tmp-"+strconv.Itoa(os.Getpid())); err != nil {
		t.Fatal(err)
	}
	if _, err := boltstore.Backup(dir, dst); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(target); err != nil || string(got) != "keep me" {
		t.Errorf("the link's target after the backup: %q, %v; want it as it was", got, err)
	}
}

// A restore starts every account's feed afresh: a marker a client holds,
// of the backup's feed or of the events the restore undid, gets
// ErrMarkerExpired (410 markerExpired), so that its watcher lists the
// registry again instead of taking the undone changes for a quiet feed;
// the marker a list then gives follows the feed as ever.
func TestRestoreExpiresTheMarkersHeld(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	live := t.TempDir()
	s, err := boltstore.Open(live, boltstore.Options{ReapInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	head := func(s *boltstore.Store) timeuuid.UUID {
		t.Helper()
		h, err := s.Head(ctx, "1")
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	if err := s.SetConfig(ctx, "1", "before", "v"); err != nil {
		t.Fatal(err)
	}
	before := head(s)
	s.Close()
	backup := filepath.Join(t.TempDir(), "backup.db")
	if _, err := boltstore.Backup(live, backup); err != nil {
		t.Fatal(err)
	}
	if s, err = boltstore.Open(live, boltstore.Options{ReapInterval: -1}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetConfig(ctx, "1", "undone", "v"); err != nil {
		t.Fatal(err)
	}
	undone := head(s)
	s.Close()

	if _, err := boltstore.Restore(live, backup); err != nil {
		t.Fatal(err)
	}
	s, err = boltstore.Open(live, boltstore.Options{ReapInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for name, m := range map[string]timeuuid.UUID{"the backup's list": before.Next(), "an undone event's": undone, "the undone list": undone.Next()} {
		if _, err := s.Events(ctx, "1", store.EventQuery{From: m, CheckExpired: true, Limit: 10}); !errors.Is(err, store.ErrMarkerExpired) {
			t.Errorf("%s marker after the restore: %v, want ErrMarkerExpired", name, err)
		}
	}
	// A kept event's id is no expired marker: its client saw nothing the
	// restore undid.
	if _, err := s.Events(ctx, "1", store.EventQuery{From: before, CheckExpired: true, Limit: 10}); err != nil {
		t.Errorf("the marker of an event the backup holds: %v", err)
	}
	from := head(s).Next() // what a list's X-Registry-Marker is
	if err := s.SetConfig(ctx, "1", "new", "v"); err != nil {
		t.Fatal(err)
	}
	page, err := s.Events(ctx, "1", store.EventQuery{From: from, CheckExpired: true, Limit: 10})
	if err != nil || len(page.Values) != 1 || !strings.Contains(string(page.Values[0].JSON), `"new"`) {
		t.Fatalf("the feed from a list's marker after the restore: %+v, %v; want the one new event", page.Values, err)
	}
	// Without a marker the restored events are still read.
	if page, err := s.Events(ctx, "1", store.EventQuery{Limit: 10}); err != nil || len(page.Values) != 2 {
		t.Errorf("the feed without a marker: %d events, %v; want the backup's and the new one", len(page.Values), err)
	}
}

// After a restore, a read without a marker pages on through the restored
// events: the next marker it hands out is an event the backup holds.
func TestRestoredFeedPagesWithoutAMarker(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	live := t.TempDir()
	dbWith(t, live, "a", "v")
	dbWith(t, live, "b", "v")
	backup := filepath.Join(t.TempDir(), "backup.db")
	if _, err := boltstore.Backup(live, backup); err != nil {
		t.Fatal(err)
	}
	if _, err := boltstore.Restore(live, backup); err != nil {
		t.Fatal(err)
	}
	s, err := boltstore.Open(live, boltstore.Options{ReapInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	page, err := s.Events(ctx, "1", store.EventQuery{Limit: 1})
	if err != nil || len(page.Values) != 1 || page.Next.IsZero() {
		t.Fatalf("first page: %+v, %v", page, err)
	}
	if page, err = s.Events(ctx, "1", store.EventQuery{From: page.Next, CheckExpired: true, Limit: 1}); err != nil || len(page.Values) != 1 {
		t.Errorf("the page after it, from its next marker: %+v, %v", page, err)
	}
}

// A database written by a clock ahead of the restoring one still starts
// its feed past every marker given out: past the head of the backup and
// of the database it replaces.
func TestRestoreStartsPastHeadsAhead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ahead := time.Now().Add(time.Hour)
	open := func(dir string, at time.Time) *boltstore.Store {
		t.Helper()
		s, err := boltstore.Open(dir, boltstore.Options{ReapInterval: -1, Clock: func() time.Time { return at }})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	live := t.TempDir()
	s := open(live, ahead)
	if err := s.SetConfig(ctx, "1", "k", "v"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	backup := filepath.Join(t.TempDir(), "backup.db")
	if _, err := boltstore.Backup(live, backup); err != nil {
		t.Fatal(err)
	}
	s = open(live, ahead.Add(time.Minute))
	if err := s.SetConfig(ctx, "1", "undone", "v"); err != nil {
		t.Fatal(err)
	}
	undone, err := s.Head(ctx, "1")
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := boltstore.Restore(live, backup); err != nil {
		t.Fatal(err)
	}
	s = open(live, time.Now())
	defer s.Close()
	if _, err := s.Events(ctx, "1", store.EventQuery{From: undone.Next(), CheckExpired: true, Limit: 10}); !errors.Is(err, store.ErrMarkerExpired) {
		t.Errorf("a marker past the undone event, given out by a clock ahead: %v, want ErrMarkerExpired", err)
	}
}

// The replaced database's head years ahead (a clock far off, or a damaged
// record) does not carry the restored feed there: it starts now.
func TestRestoreIgnoresAHeadFarAhead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	live := t.TempDir()
	dbWith(t, live, "k", "v")
	backup := filepath.Join(t.TempDir(), "backup.db")
	if _, err := boltstore.Backup(live, backup); err != nil {
		t.Fatal(err)
	}
	far := time.Now().AddDate(5, 0, 0)
	s, err := boltstore.Open(live, boltstore.Options{ReapInterval: -1, Clock: func() time.Time { return far }})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetConfig(ctx, "1", "future", "v"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := boltstore.Restore(live, backup); err != nil {
		t.Fatal(err)
	}
	if s, err = boltstore.Open(live, boltstore.Options{ReapInterval: -1}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	head, err := s.Head(ctx, "1")
	if err != nil {
		t.Fatal(err)
	}
	if head.Time().After(time.Now().Add(time.Hour)) {
		t.Errorf("the restored feed starts at %v, with the replaced database's head years ahead", head.Time())
	}
}

// Compact of a data directory that holds no database fails and leaves it
// without one: compacting creates nothing.
func TestCompactCreatesNoDatabase(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, _, err := boltstore.Compact(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Compact of an empty directory: %v, want it not found", err)
	}
	if names, _ := os.ReadDir(dir); len(names) != 0 {
		t.Errorf("Compact of an empty directory left %v in it", names)
	}
}

// A sound bbolt file that svcreg did not write (another program's, or an
// empty one) is refused: restored, it started an empty registry.
func TestRestoreRefusesAForeignDatabase(t *testing.T) {
	t.Parallel()
	live, other := t.TempDir(), t.TempDir()
	dbWith(t, live, "only-here", "precious")
	foreign := filepath.Join(other, "widgets.db")
	db, err := bolt.Open(foreign, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("widgets"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("v"))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	replaced, err := boltstore.Restore(live, foreign)
	if err == nil || !strings.Contains(err.Error(), "not a svcreg database") {
		t.Fatalf("Restore of another program's bbolt file: %v (replaced %q); want it refused as not a svcreg database", err, replaced)
	}
	s, err := boltstore.Open(live, boltstore.Options{ReapInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Config(context.Background(), "1", "only-here"); err != nil {
		t.Errorf("the database after the refused restore: %v; want it as it was", err)
	}
}

// A restore, which an operator may run as root, writes its copy to a file
// of a name no one knew before: a link planted in the data directory (the
// server's user's to write) at the name it used is not followed, and what
// it points at stays as it was.
func TestRestoreFollowsNoPlantedLink(t *testing.T) {
	t.Parallel()
	dir, backup := t.TempDir(), t.TempDir()
	dbWith(t, dir, "k", "live")
	dbWith(t, backup, "k", "backup")
	target := filepath.Join(t.TempDir(), "precious")
	if err := os.WriteFile(target, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, boltstore.FileName+".new")); err != nil {
		t.Fatal(err)
	}
	if _, err := boltstore.Restore(dir, filepath.Join(backup, boltstore.FileName)); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(target); err != nil || string(got) != "keep me" {
		t.Errorf("the link's target after the restore: %.40q, %v; want it as it was", got, err)
	}
	s, err := boltstore.Open(dir, boltstore.Options{ReapInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, err := s.Config(context.Background(), "1", "k"); err != nil || !strings.Contains(fmt.Sprint(v), "backup") {
		t.Errorf("the restored database's k: %v, %v; want the backup's", v, err)
	}
}

// A compaction or restore killed before it removed its temporary copy (as
// large as the database) left it in the data directory: the next one
// removes it, but not a copy written to a moment ago (one under way).
func TestCompactAndRestoreRemoveLeftCopies(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, pattern string
		run           func(dir string) error
	}{
		{"compact", boltstore.FileName + ".compact-%d", func(dir string) error { _, _, err := boltstore.Compact(dir); return err }},
		{"restore", boltstore.FileName + ".new-%d", func(dir string) error {
			src := t.TempDir()
			dbWith(t, src, "k", "v")
			_, err := boltstore.Restore(dir, filepath.Join(src, boltstore.FileName))
			return err
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			dbWith(t, dir, "k", "v")
			left, fresh := filepath.Join(dir, fmt.Sprintf(c.pattern, 1)), filepath.Join(dir, fmt.Sprintf(c.pattern, 2))
			for _, p := range []string{left, fresh} {
				if err := os.WriteFile(p, make([]byte, 1<<20), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			old := time.Now().Add(-2 * time.Minute)
			if err := os.Chtimes(left, old, old); err != nil {
				t.Fatal(err)
			}
			if err := c.run(dir); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(left); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the copy left by an earlier run is still there: %v", err)
			}
			if _, err := os.Stat(fresh); err != nil {
				t.Errorf("the copy written a moment ago: %v; want it kept", err)
			}
		})
	}
}

// A file whose pages are sound but one of whose records does not decode
// (bbolt keeps no checksums of values) is one the server would not start
// on: CheckFile, behind --check and the check of a backup before
// --restore, refuses it as the start does, rather than pass it.
func TestCheckFileDecodesTheRecords(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := boltstore.Open(dir, boltstore.Options{ReapInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateService(context.Background(), "1", store.NewService{ID: "web", HeartbeatTimeout: 30}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	path := filepath.Join(dir, boltstore.FileName)
	if _, err := boltstore.CheckFile(path); err != nil {
		t.Fatalf("the sound file: %v", err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("tenants")).Bucket([]byte("1")).Bucket([]byte("services")).Put([]byte("web"), []byte(`{"id":"web",`))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	_, openErr := boltstore.Open(dir, boltstore.Options{ReapInterval: -1})
	var damaged *boltstore.DamagedError
	if !errors.As(openErr, &damaged) {
		t.Fatalf("the start on the file: %v; want it refused as damaged", openErr)
	}
	if _, err := boltstore.CheckFile(path); !errors.As(err, &damaged) || !strings.Contains(err.Error(), `service "web"`) {
		t.Errorf("CheckFile: %v; want it refused as the start refuses it (%v)", err, openErr)
	}
}
