package render

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/svcreg/svcreg/internal/retry"
)

// maxLockWait is how long a pass waits for another process's lock on a
// destination before it fails (and is tried again after its backoff).
// Another renderer holds it for one pass: a render, a check, an install
// and a reload, each bounded, and the splay.
const maxLockWait = 2 * time.Minute

// lockName is the lock file of dest: next to it, named so that an
// "include conf.d/*" never picks it up.
func lockName(dest string) string {
	return filepath.Join(filepath.Dir(dest), "."+filepath.Base(dest)+".svcreg-lock")
}

// lockDestinations takes an exclusive lock (flock) on the lock file of
// each destination of g, in the order of their names, and returns the
// function that releases them. Two renderers on one destination (a
// daemon, and --once in a deploy script) so take their passes in turn:
// without it, one could stage over the other's staged file between its
// check and its install, and install what no check saw. A destination
// whose directory does not exist yet has nothing to guard. A lock
// another process holds is waited for, up to maxLockWait, or until ctx
// ends (stopped).
func lockDestinations(ctx context.Context, log *slog.Logger, g *Group) (release func(), _ *Failure) {
	var names []string
	for _, t := range g.Templates {
		if _, err := os.Stat(filepath.Dir(t.Destination)); err == nil {
			names = append(names, lockName(t.Destination))
		}
	}
	slices.Sort(names)
	var held []*os.File
	release = func() {
		for _, f := range held {
			f.Close() // releases its lock
		}
	}
	for _, name := range names {
		f, err := lockFile(ctx, log, g, name)
		if err != nil {
			release()
			if ctx.Err() != nil {
				return nil, stopped
			}
			return nil, &Failure{g.Name, StepInstall, err}
		}
		held = append(held, f)
	}
	return release, nil
}

// lockFile opens (creating it) and locks the lock file name.
func lockFile(ctx context.Context, log *slog.Logger, g *Group, name string) (*os.File, error) {
	// Read-only: another user's renderer (0644) may lock it too. Not
	// through a symbolic link, which could name any file.
	f, err := os.OpenFile(name, os.O_RDONLY|os.O_CREATE|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			err = fmt.Errorf("%w: the lock file is a symbolic link; remove it", err)
		}
		return nil, fmt.Errorf("lock file: %w", err)
	}
	deadline := time.Now().Add(maxLockWait)
	wait, logged := 20*time.Millisecond, false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("another process has held the lock %s for %s: another svcreg template on the same destination, still in its pass (or stuck in it; stop it)", name, maxLockWait)
		}
		if !logged {
			log.Info("another process is installing this destination (another svcreg template on it?); waiting for its pass to end", "group", g.Name, "lock", name)
			logged = true
		}
		if err := retry.Sleep(ctx, retry.Jitter(wait, 0.2)); err != nil {
			f.Close()
			return nil, err
		}
		wait = min(2*wait, time.Second)
	}
}
