package boltstore

import (
	"errors"
	"fmt"
	"github.com/svcreg/svcreg/internal/fsync"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// DamagedError says that a database file cannot be used: what is wrong
// with it. The store never starts over such a file, nor over an empty one.
type DamagedError struct {
	Path   string
	Reason string
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("the database %s is damaged: %s", e.Path, e.Reason)
}

// InUseError says another process holds the database file.
type InUseError struct{ Path string }

func (e *InUseError) Error() string {
	return fmt.Sprintf("open %s: another process holds it (is a server already running on this data directory?)", e.Path)
}

// lockTimeout is how long opening waits for another process's lock.
const lockTimeout = 2 * time.Second

// openFile opens the database file at path and checks it from end to end
// (see verify). A missing file is created, under a temporary name renamed
// into place once it is a complete empty database, so that an empty file
// at path is never one the store left: it is reported as damaged instead
// of being silently started over.
func openFile(path string, readOnly bool) (*bolt.DB, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !readOnly:
		if err := createFile(path); err != nil {
			return nil, err
		}
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("open %s: %w", path, err)
	case err != nil:
		return nil, err
	case fi.IsDir():
		return nil, &DamagedError{Path: path, Reason: "it is a directory"}
	case fi.Size() == 0:
		return nil, &DamagedError{Path: path, Reason: "it is empty (0 bytes), so whatever it held is lost"}
	}
	db, err := openBolt(path, readOnly)
	if err != nil {
		return nil, err
	}
	if err := verify(db); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// createFile makes an empty database at path, unless one is there by
// then. It links the new file into place rather than rename it: another
// process that also found no database (a second server started at once)
// may have created one and opened it, and renamed over, that file would
// be one no later start reads, with the two servers each holding a file
// of its own.
func createFile(path string) error {
	// A name of its own (O_EXCL): the other process's temporary file is
	// not this one's to remove or replace.
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".new-*")
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	tmp := f.Name()
	f.Close()
	defer os.Remove(tmp)
	// bbolt makes an empty file a database.
	db, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	if err := linkNew(tmp, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create %s: %w", path, err)
	}
	return fsync.Dir(filepath.Dir(path))
}

// linkNew gives the file old the name new too, failing (fs.ErrExist)
// rather than replace a file of that name. On a file system without hard
// links it renames old to new, once the name is seen free.
func linkNew(old, new string) error {
	err := os.Link(old, new)
	if err == nil || errors.Is(err, fs.ErrExist) {
		return err
	}
	if _, serr := os.Lstat(new); !errors.Is(serr, fs.ErrNotExist) {
		return err
	}
	return os.Rename(old, new)
}

// openBolt opens the file with bbolt, turning its errors, panics and
// faults (it reads the meta pages and the free list) on a damaged file
// into a DamagedError.
//
// bbolt opens the file, then waits for its lock; meanwhile a restore or a
// compaction holding the lock may rename another file to path. The file
// locked is then one no longer at path, where what the store writes is
// never read again: openBolt opens path again until the file it has
// locked is the one there.
func openBolt(path string, readOnly bool) (*bolt.DB, error) {
	for range 10 {
		db, f, err := openBoltOnce(path, readOnly)
		if err != nil {
			return nil, err
		}
		here, err := os.Stat(path)
		if err != nil {
			db.Close()
			return nil, err
		}
		locked, err := f.Stat()
		if err != nil {
			db.Close()
			return nil, err
		}
		if os.SameFile(here, locked) {
			return db, nil
		}
		db.Close()
	}
	return nil, fmt.Errorf("open %s: it was replaced each time while its lock was awaited", path)
}

// openBoltOnce is one try of openBolt. It returns the file bbolt opened
// and locked.
func openBoltOnce(path string, readOnly bool) (db *bolt.DB, file *os.File, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			db, file, err = nil, nil, &DamagedError{Path: path, Reason: fmt.Sprint(r)}
		}
	}()
	// The first file bbolt opens is the one it locks; it opens the path
	// again for each backup (Tx.WriteTo).
	var first atomic.Pointer[os.File]
	open := func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		if err == nil {
			first.CompareAndSwap(nil, f)
		}
		return f, err
	}
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout, ReadOnly: readOnly, FreelistType: bolt.FreelistMapType, OpenFile: open})
	switch {
	case err == nil:
		return db, first.Load(), nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, nil, &InUseError{Path: path}
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		return nil, nil, &DamagedError{Path: path, Reason: err.Error()}
	}
	return nil, nil, fmt.Errorf("open %s: %w", path, err)
}

// verify checks the whole file before anything reads it: that it is as
// long as its pages say (reading a page past the end of a truncated file
// faults), that its page tree stays within its pages (checkPages), then
// bbolt's consistency check of every page, bucket and key. Any fault or
// panic on the way is a DamagedError, never a crash.
func verify(db *bolt.DB) (err error) {
	path := db.Path()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = &DamagedError{Path: path, Reason: fmt.Sprint(r)}
		}
	}()
	return db.View(func(tx *bolt.Tx) error {
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		if need := tx.Size(); fi.Size() < need {
			return &DamagedError{Path: path, Reason: fmt.Sprintf("it is truncated: %d bytes, but its pages need %d", fi.Size(), need)}
		}
		pageSize := db.Info().PageSize
		if err := checkPages(path, pageSize, uint64(tx.Size())/uint64(pageSize), uint64(tx.Cursor().Bucket().Root()), uint64(tx.ID())); err != nil {
			return &DamagedError{Path: path, Reason: err.Error()}
		}
		var problems []string
		for err := range tx.Check() {
			if len(problems) < 3 {
				problems = append(problems, strings.ReplaceAll(err.Error(), "\n", " "))
			}
		}
		if len(problems) > 0 {
			return &DamagedError{Path: path, Reason: strings.Join(problems, "; ")}
		}
		return nil
	})
}

// Check opens the database under dir read-only, checks it from end to end
// and returns its size. It fails while a server holds the file.
func Check(dir string) (size int64, err error) {
	return CheckFile(filepath.Join(dir, FileName))
}

// Held reports whether a server holds the database under dir (its lock).
func Held(dir string) bool {
	db, err := openBolt(filepath.Join(dir, FileName), true)
	if db != nil {
		db.Close()
	}
	var inUse *InUseError
	return errors.As(err, &inUse)
}

// CheckFile is Check of the database file at path (a backup, say).
func CheckFile(path string) (size int64, err error) {
	db, err := openFile(path, true)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	if err := db.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil }); err != nil {
		return 0, err
	}
	// What the server reads at its start must decode too: bbolt keeps
	// no checksums of the values, and a file whose pages are sound may
	// still hold a record the server would refuse to start on.
	if err := loadTenants(db, time.Now(), func(*tenant) {}); err != nil {
		return 0, err
	}
	return size, nil
}

// WriteBackup writes a consistent copy of the database to w, from one read
// transaction, while writers go on.
func (s *Store) WriteBackup(w io.Writer) (int64, error) {
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}
