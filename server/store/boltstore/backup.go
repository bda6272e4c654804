package boltstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/svcreg/svcreg/internal/fsync"
	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/server/store"
)

// SocketName is the name of the unix socket, under the data directory, on
// which a running store hands out backups (see Backup). Who may connect is
// who may read the data directory (0700).
const SocketName = "backup.sock"

// serveBackups answers every connection to the socket at path with a
// backup of the database, until ctx is done. The server holds the file's
// lock, so this is how another process gets a consistent copy of it.
func (s *Store) serveBackups(ctx context.Context, path string) {
	os.Remove(path) // left by a server that was killed; the file lock says no other runs
	ln, err := net.Listen("unix", path)
	if err != nil {
		s.log.Warn("cannot serve backups on the data directory's socket; svcreg server --backup works only while the server is stopped", "socket", path, "err", err)
		return
	}
	os.Chmod(path, 0o600)
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("backup socket failed; svcreg server --backup works only while the server is stopped", "err", err)
			}
			return
		}
		go func() {
			defer c.Close()
			start := time.Now()
			n, err := s.WriteBackup(&progressWriter{c: c})
			if err != nil {
				s.log.Error("backup failed", "err", err)
				return
			}
			s.log.Info("backup written", "bytes", n, "duration", time.Since(start))
		}()
	}
}

// Backup writes a consistent copy of the database under dir to the file
// dst: from the running server through its socket, or from the file when
// no server holds it. The copy is checked before it is renamed into place,
// so dst is either a complete, sound database or left as it was.
//
// dst may not be in the data directory: renamed over the database, a
// backup would leave the running server writing to a file no longer there.
func Backup(dir, dst string) (int64, error) {
	if inDir(dir, dst) {
		return 0, fmt.Errorf("backup %s: that is in the data directory %s; write the backup elsewhere", dst, dir)
	}
	// Said before the copy is made, rather than as the rename's or the
	// create's error once it is.
	if fi, err := os.Stat(dst); err == nil && fi.IsDir() {
		return 0, fmt.Errorf("backup %s: that is a directory; give the backup's file name, such as %s", dst, filepath.Join(dst, "svcreg-"+time.Now().Format("2006-01-02")+".db"))
	}
	if _, err := os.Stat(filepath.Dir(dst)); errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("backup %s: its directory %s does not exist: create it, or give a file in one that does", dst, filepath.Dir(dst))
	}
	// A new file of a name no one chose before (O_EXCL): in a directory
	// others may write, such as /tmp, a name known in advance could be
	// a link planted to make a backup run as root overwrite its target.
	f, err := os.CreateTemp(filepath.Dir(dst), filepath.Base(dst)+".tmp-*")
	if err != nil {
		return 0, err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	n, err := writeBackup(dir, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	db, err := openFile(tmp, true)
	if err != nil {
		return 0, fmt.Errorf("the backup is not sound: %w", err)
	}
	db.Close()
	if err := os.Rename(tmp, dst); err != nil {
		return 0, err
	}
	return n, fsync.Dir(filepath.Dir(dst))
}

// inDir reports whether the file path is in the directory dir, by its
// resolved directory (links followed) or, when the two exist, as the same
// directory.
func inDir(dir, path string) bool {
	d, err1 := filepath.EvalSymlinks(dir)
	p, err2 := filepath.EvalSymlinks(filepath.Dir(path))
	if err1 == nil && err2 == nil {
		if d == p {
			return true
		}
		di, err1 := os.Stat(d)
		pi, err2 := os.Stat(p)
		return err1 == nil && err2 == nil && os.SameFile(di, pi)
	}
	a, _ := filepath.Abs(dir)
	b, _ := filepath.Abs(filepath.Dir(path))
	return a == b
}

func writeBackup(dir string, w io.Writer) (int64, error) {
	sock := filepath.Join(dir, SocketName)
	if c, err := net.Dial("unix", sock); err == nil {
		defer c.Close()
		n, err := io.Copy(w, c)
		if err != nil {
			return n, fmt.Errorf("read the backup from the server: %w", err)
		}
		return n, nil
	}
	db, err := openFile(filepath.Join(dir, FileName), true)
	var inUse *InUseError
	if errors.As(err, &inUse) {
		return 0, fmt.Errorf("a server holds %s but does not answer on %s", inUse.Path, sock)
	}
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int64
	err = db.View(func(tx *bolt.Tx) error {
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// Restore makes the backup src the database under dir. The server must be
// stopped. src is checked first; a database it replaces is kept beside it
// as svcreg.db.replaced-TIME (never over a file of that name). It returns
// that name, "" if there was none.
func Restore(dir, src string) (replaced string, err error) {
	db, err := openFile(src, true)
	if err != nil {
		return "", fmt.Errorf("the backup cannot be restored: %w", err)
	}
	err = isSvcregDatabase(db)
	db.Close()
	if err != nil {
		return "", fmt.Errorf("the backup cannot be restored: %w", err)
	}
	path := filepath.Join(dir, FileName)
	var heads map[string]timeuuid.UUID
	if _, err := os.Stat(path); err == nil {
		// Only the lock matters here: the file may well be damaged.
		old, err := openBolt(path, true)
		var inUse *InUseError
		if errors.As(err, &inUse) {
			return "", fmt.Errorf("stop the server first: %w", err)
		}
		if old != nil {
			if verify(old) == nil {
				heads = feedHeads(old)
			}
			old.Close()
		}
		// Held until the restored file is in place: a server started
		// meanwhile waits for it, then finds the file it opened
		// replaced, and opens the restored one (openBolt).
		unlock, err := lockFile(path)
		if errors.As(err, &inUse) {
			return "", fmt.Errorf("stop the server first: %w", err)
		}
		if err != nil {
			return "", err
		}
		defer unlock()
		removeLeftovers(dir, FileName+".new-*")
		replaced = path + ".replaced-" + time.Now().UTC().Format("20060102T150405.000000000Z")
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if err := fsync.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	// A new file of a name no one chose before (O_EXCL), written through
	// the descriptor that created it: the data directory is the server's
	// user's to write, and a link it planted at a name known in advance
	// would have a restore run as root overwrite the link's target.
	f, err := os.CreateTemp(dir, FileName+".new-*")
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	if err := copyTo(src, f); err != nil {
		os.Remove(tmp)
		return "", err
	}
	// The restored file belongs to whoever owns the database it replaces
	// (or the data directory), not to the user running the restore.
	owner := path
	if replaced == "" {
		owner = dir
	}
	if err := keepOwner(tmp, owner); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("give the restored database the owner of %s: %w", owner, err)
	}
	if err := restartFeeds(tmp, time.Now(), heads); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("the backup cannot be restored: %w", err)
	}
	if replaced != "" {
		// A link, not a rename: it fails rather than replace a file of
		// that name, and the database stays in place until the restored
		// one replaces it.
		if err := linkNew(path, replaced); err != nil {
			os.Remove(tmp)
			return "", fmt.Errorf("keep the database it replaces: %w", err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return replaced, fsync.Dir(dir)
}

// restartFeeds starts the feed of every account in the database file at
// path afresh at the time at, or just past the account's head in the
// backup or in heads (those of the database it replaces), if a clock ahead
// wrote them: its head and its oldest marker that still counts move
// there, so that a marker given out before gets 410 markerExpired (but the
// id of an event the backup holds: see Events) and its client (a watcher)
// lists the registry again. Without this, a marker past the restored
// feed's end reads as a quiet stretch of the feed, and its watcher keeps
// the services and values the restore undid (until its periodic list).
func restartFeeds(path string, at time.Time, heads map[string]timeuuid.UUID) error {
	db, err := openFile(path, false)
	if err != nil {
		return err
	}
	id := timeuuid.Low(at)
	err = db.Update(func(tx *bolt.Tx) error {
		tenants := tx.Bucket(bTenants)
		if tenants == nil {
			return nil
		}
		return tenants.ForEachBucket(func(name []byte) error {
			b := tenants.Bucket(name)
			var acct store.AccountRecord
			if err := json.Unmarshal(b.Get(kAccount), &acct); err != nil {
				return fmt.Errorf("account %q: %w", name, err)
			}
			start := id
			replaced := heads[string(name)]
			if timeuuid.Compare(replaced, timeuuid.Low(later(at, acct.Head.Time()).Add(maxHeadAhead))) > 0 {
				// A clock far ahead, or a damaged record: the restored
				// feed does not go there for good (nor retention, by
				// age, with it).
				replaced = timeuuid.UUID{}
			}
			for _, h := range []timeuuid.UUID{acct.Head, replaced} {
				// Past h.Next() too: the marker a list gave out then.
				if past := h.Next().Next(); !h.IsZero() && timeuuid.Compare(past, start) > 0 {
					start = past
				}
			}
			acct.Head, acct.Pruned = start, start
			return putJSON(b, string(kAccount), acct)
		})
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}

// maxHeadAhead is how far ahead of the restoring clock (or of the backup's
// head) the replaced database's head may be for the restored feed to start
// past it: a clock a little ahead, not one years ahead.
const maxHeadAhead = time.Hour

// later is the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// feedHeads returns the head of every account's feed in db, a database
// verify found sound; an account whose record does not decode has none.
func feedHeads(db *bolt.DB) map[string]timeuuid.UUID {
	heads := map[string]timeuuid.UUID{}
	db.View(func(tx *bolt.Tx) error {
		tenants := tx.Bucket(bTenants)
		if tenants == nil {
			return nil
		}
		return tenants.ForEachBucket(func(name []byte) error {
			var acct store.AccountRecord
			if json.Unmarshal(tenants.Bucket(name).Get(kAccount), &acct) == nil {
				heads[string(name)] = acct.Head
			}
			return nil
		})
	})
	return heads
}

// isSvcregDatabase reports why db, a sound bbolt file, is not a database
// svcreg wrote: every one has the meta bucket with its token secret, and
// the tenants bucket. Restored, another program's bbolt file (or an empty
// one) would start an empty registry under a new secret.
func isSvcregDatabase(db *bolt.DB) error {
	return db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bMeta)
		if meta == nil || meta.Get(kSecret) == nil || tx.Bucket(bTenants) == nil {
			return fmt.Errorf("%s is a bbolt file but not a svcreg database (it has no svcreg metadata); give a file svcreg server --backup wrote", db.Path())
		}
		return nil
	})
}

// leftoverAge is how long a temporary copy has not been written to before
// it counts as left by a compaction or restore that was killed.
const leftoverAge = time.Minute

// removeLeftovers removes the files of dir matching pattern (the temporary
// copies of a compaction or a restore, each as large as a database) that
// were not written to for leftoverAge: a compaction or restore killed
// before it could remove its copy left them. Called with the database's
// lock held, which keeps the others out; the age spares a copy being
// written all the same (a restore into a data directory without a
// database takes no lock).
func removeLeftovers(dir, pattern string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if ok, _ := filepath.Match(pattern, e.Name()); !ok || !e.Type().IsRegular() {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) >= leftoverAge {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// copyTo copies the file src into out, and closes out.
func copyTo(src string, out *os.File) error {
	in, err := os.Open(src)
	if err != nil {
		out.Close()
		return err
	}
	defer in.Close()
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// Compact rewrites the database under dir without its free pages, which a
// bbolt file never gives back by itself, and returns its size before and
// the rewritten copy's. The server must be stopped. The copy is checked,
// and replaces the file only if it is smaller: a file with nothing to give
// back (bbolt grows a file in steps, so a small one's copy can be larger)
// is left as it was.
func Compact(dir string) (before, after int64, err error) {
	path := filepath.Join(dir, FileName)
	// Stat first: openFile would create a missing file.
	if _, err := os.Stat(path); err != nil {
		return 0, 0, err
	}
	src, err := openFile(path, false)
	if err != nil {
		return 0, 0, err
	}
	defer src.Close()
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, err
	}
	// src's lock keeps every other compaction and restore out: a copy
	// that one left is of one that was killed, as large as the database.
	removeLeftovers(dir, FileName+".compact-*")
	// A new file of a name no one chose before (O_EXCL), as a restore's.
	f, err := os.CreateTemp(dir, FileName+".compact-*")
	if err != nil {
		return 0, 0, err
	}
	tmp := f.Name()
	f.Close()
	defer os.Remove(tmp)
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: lockTimeout, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return 0, 0, err
	}
	if err := bolt.Compact(dst, src, 64<<20); err != nil {
		dst.Close()
		return 0, 0, fmt.Errorf("compact %s: %w", path, err)
	}
	if err := dst.Close(); err != nil {
		return 0, 0, err
	}
	check, err := openFile(tmp, true)
	if err != nil {
		return 0, 0, fmt.Errorf("the compacted copy is not sound, %s is left as it was: %w", path, err)
	}
	check.Close()
	nfi, err := os.Stat(tmp)
	if err != nil {
		return 0, 0, err
	}
	if nfi.Size() >= fi.Size() {
		return fi.Size(), nfi.Size(), nil
	}
	if err := keepOwner(tmp, path); err != nil {
		return 0, 0, fmt.Errorf("give the compacted copy the owner of %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return 0, 0, err
	}
	return fi.Size(), nfi.Size(), fsync.Dir(dir)
}

// backupStall is how long a backup may go without its reader taking
// anything: a backup holds a read transaction, and one that never ends
// would keep the database from growing.
const backupStall = 30 * time.Second

// progressWriter writes to c, failing a write the reader does not take
// within backupStall.
type progressWriter struct{ c net.Conn }

func (w *progressWriter) Write(p []byte) (int, error) {
	w.c.SetWriteDeadline(time.Now().Add(backupStall))
	return w.c.Write(p)
}
