package render

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/svcreg/svcreg/internal/flockwait"
)

// lockWait is how long a pass of g waits for another process's lock on a
// destination before it fails (and is tried again after its backoff):
// another renderer (on the same configuration, as a daemon and --once
// are) holds it for one pass of the group, its splay, its check, and its
// reload and a rollback's, each bounded; 2 minutes more for the render,
// the install and changes applied ahead.
func lockWait(g *Group) time.Duration {
	return 2*time.Minute + g.Splay + g.CheckTimeout + 2*g.ReloadTimeout
}

// lockName is the lock file of dest, next to it.
func lockName(dest string) string { return besideName(dest, "lock") }

// lockDestinations takes an exclusive lock (flock) on the lock file of
// each destination of g, in the order of their names, and returns them
// (closing them releases the locks). Two renderers on one destination (a
// daemon, and --once in a deploy script) so take their passes in turn:
// without it, one could stage over the other's staged file between its
// check and its install, and install what no check saw. A destination
// whose directory does not exist yet has nothing to guard, unless
// create_dest_dirs makes it: then it is made first, and locked. A lock
// another process holds is waited for, up to maxLockWait, or until ctx
// ends (stopped). A lock file the renderer may not create (a read-only
// directory) is gone without.
func lockDestinations(ctx context.Context, log *slog.Logger, g *Group) ([]*os.File, *Failure) {
	var names []string
	for _, t := range g.Templates {
		_, err := os.Stat(filepath.Dir(t.Destination))
		if errors.Is(err, fs.ErrNotExist) && t.CreateDestDirs {
			// Made now rather than at the stage: two renderers that both
			// make it would each stage, check and install without the
			// other's lock. One that cannot be made fails the stage.
			err = destinationDir(t.TemplateConfig)
		}
		if err == nil {
			names = append(names, lockName(t.Destination))
		}
	}
	slices.Sort(names)
	var held []*os.File
	for _, name := range names {
		f, err := lockFile(ctx, log, g, name)
		if err != nil {
			closeAll(held)
			if ctx.Err() != nil {
				return nil, stopped
			}
			return nil, &Failure{g.Name, StepInstall, err}
		}
		if f != nil {
			held = append(held, f)
		}
	}
	return held, nil
}

// closeAll unlocks and closes files. Unlocked first: a child being
// forked meanwhile holds a copy of each descriptor until it execs, and
// the lock lasts while any copy is open, so a lock left to the close
// could still be held when this process takes it again.
func closeAll(files []*os.File) {
	for _, f := range files {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}
}

// destLocks are the destination locks a Renderer holds, by group. A
// group's pass and the install of a change applied ahead of its check
// (ahead.go), which the pass may wait for, share the group's: the first
// takes it, the other joins, and it is released when both are done.
type destLocks struct {
	mu     sync.Mutex
	groups map[string]*groupLock
}

// groupLock is one group's: held (a semaphore, so that a wait for it
// ends with its context) is full while it is being taken or let go, refs
// counts its holders, files are the locked files.
type groupLock struct {
	held  chan struct{}
	refs  int
	files []*os.File
}

// lockGroup takes g's destination locks, or joins this Renderer's hold
// of them, and returns the function that lets go of them.
func (r *Renderer) lockGroup(ctx context.Context, g *Group) (release func(), _ *Failure) {
	r.locks.mu.Lock()
	if r.locks.groups == nil {
		r.locks.groups = map[string]*groupLock{}
	}
	gl := r.locks.groups[g.Name]
	if gl == nil {
		gl = &groupLock{held: make(chan struct{}, 1)}
		r.locks.groups[g.Name] = gl
	}
	r.locks.mu.Unlock()
	// Another caller may be waiting for another process's lock, up to
	// lockWait: a stop ends this wait for it too. A free one is taken
	// whatever the context, as lockFile takes a free flock.
	select {
	case gl.held <- struct{}{}:
	default:
		select {
		case gl.held <- struct{}{}:
		case <-ctx.Done():
			return nil, stopped
		}
	}
	defer func() { <-gl.held }()
	if gl.refs == 0 {
		files, f := lockDestinations(ctx, r.Log, g)
		if f != nil {
			return nil, f
		}
		gl.files = files
	}
	gl.refs++
	return sync.OnceFunc(func() {
		gl.held <- struct{}{}
		defer func() { <-gl.held }()
		if gl.refs--; gl.refs == 0 {
			closeAll(gl.files)
			gl.files = nil
		}
	}), nil
}

// lockFile opens (creating it) and locks the lock file name; nil, and no
// error, where the renderer may not create it. A lock file removed (see
// forgetDestination) between its open and its lock is opened again: the lock
// of a file no longer at name guards nothing.
func lockFile(ctx context.Context, log *slog.Logger, g *Group, name string) (*os.File, error) {
	for range 3 {
		f, err := lockFileOnce(ctx, log, g, name)
		if f == nil || err != nil || isAt(f, name) {
			return f, err
		}
		closeAll([]*os.File{f})
	}
	return nil, fmt.Errorf("lock %s: the file locked is not the one at its name, three times over (something removes or replaces it)", name)
}

// isAt reports whether the open file f is the one at name.
func isAt(f *os.File, name string) bool {
	have, err := f.Stat()
	if err != nil {
		return false
	}
	now, err := os.Lstat(name)
	return err == nil && os.SameFile(have, now)
}

// forgetDestination removes the lock file of dest, a destination that is
// no longer the configuration's, unless another process holds it: taken
// without waiting, and removed while held, so that whoever opened it
// before sees it gone once it has the lock (lockFile), and opens it anew.
// Its reload-pending file stays: another renderer of dest may have a
// reload of it due (one left behind makes a renderer that takes dest
// again reload it once).
func forgetDestination(dest string) {
	name := lockName(dest)
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return
	}
	defer closeAll([]*os.File{f})
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil && isAt(f, name) {
		os.Remove(name)
	}
}

// lockFileOnce is lockFile's open and lock of name.
func lockFileOnce(ctx context.Context, log *slog.Logger, g *Group, name string) (*os.File, error) {
	// The owner's alone: flock needs only a descriptor, so any user who
	// could open it (a file of mode 0644 in a directory every user may
	// search, as /etc/nginx/conf.d is) could hold it, and hold up every
	// pass, for as long as they liked. Not through a symbolic link,
	// which could name any file.
	f, err := os.OpenFile(name, os.O_RDONLY|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			err = fmt.Errorf("%w: the lock file is a symbolic link; remove it", err)
		}
		if errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
			if unix.Access(filepath.Dir(name), unix.W_OK) == nil {
				// Another user's lock file, in a directory this one
				// may install in: going on without it would install
				// what only the other's check saw.
				return nil, fmt.Errorf("lock %s: %w: the lock file is another user's; run the renderers of a destination as one user", name, err)
			}
			// A directory the renderer may not write: no other renderer
			// of its user can install there either, and a pass that has
			// nothing to install goes on as before.
			return nil, nil
		}
		return nil, fmt.Errorf("lock file: %w", err)
	}
	// One an earlier version made (0644) is made the owner's alone.
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) == os.Geteuid() {
			f.Chmod(fi.Mode().Perm() &^ 0o077)
		}
	}
	wait := lockWait(g)
	deadline := time.Now().Add(wait)
	err = flockwait.Lock(ctx, f, deadline, func() {
		log.Info("another process is installing this destination (another svcreg template on it?); waiting for its pass to end", "group", g.Name, "lock", name)
	})
	switch {
	case err == nil:
		return f, nil
	case errors.Is(err, flockwait.ErrHeld):
		err = fmt.Errorf("another process has held the lock %s for %s: another svcreg template on the same destination, still in its pass (or stuck in it; stop it)", name, wait)
	case ctx.Err() == nil:
		err = fmt.Errorf("lock %s: %w", name, err)
	}
	f.Close()
	return nil, err
}

// pendingName is the file next to dest that says a reload of it is due:
// written before a changed file is installed, and kept while no reload
// has taken the installed files (one failed: see markDue); removed once
// a reload has. One found by a Renderer that did not leave it (a crash,
// SIGKILL, or a restart while a reload kept failing) makes the installed
// files due, even when nothing changed: without it, the load balancer
// ran the old files until the next change.
func pendingName(dest string) string { return besideName(dest, "reload-pending") }

// markPending writes the reload-pending file of each changed file. The
// install's sync of the directory, after, makes it last.
func markPending(files []*file) error {
	for _, f := range files {
		if !f.changed {
			continue
		}
		if err := touchPending(f.t.Destination); err != nil {
			return err
		}
	}
	return nil
}

// touchPending writes dest's reload-pending file, never following a
// symbolic link there.
func touchPending(dest string) error {
	p, err := os.OpenFile(pendingName(dest), os.O_WRONLY|os.O_CREATE|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return fmt.Errorf("reload-pending file: %w", err)
	}
	return p.Close()
}

// reloadPending reports whether a reload of g's files is due from
// before (a reload-pending file of one of them is there).
func reloadPending(g *Group) bool {
	for _, t := range g.Templates {
		if _, err := os.Lstat(pendingName(t.Destination)); err == nil {
			return true
		}
	}
	return false
}

// clearPending removes the reload-pending files of g's destinations.
func (r *Renderer) clearPending(g *Group) {
	for _, t := range g.Templates {
		if err := os.Remove(pendingName(t.Destination)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			r.Log.Warn("cannot remove the reload-pending file: the next start reloads again", "group", g.Name, "err", err)
		}
	}
}
