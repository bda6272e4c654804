package render

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/fsnotify/fsnotify"
)

// recheckEvery is how often WatchFiles looks at the files without an
// event: a directory replaced (renamed away and made anew), or a symbolic
// link's target moved, is seen by no watch of the old one.
const recheckEvery = 2 * time.Second

// WatchFiles calls changed after any of files is written, created, renamed
// or removed, once no further change came for quiet. It watches the files'
// directories rather than the files, so that an editor that saves by writing
// a new file and renaming it over the old one is seen too, and the
// directories of the files they link to (a Kubernetes ConfigMap's files
// link through ..data, which an update points at a new directory). A
// change is a file that is another (or gone) or whose size or time of
// modification differs: the files are looked at after each burst of
// events, and every recheckEvery, and their directories watched anew, so
// that a directory renamed or replaced is followed; a change found so is
// taken once quiet has passed too, or once a look finds the files as the
// one before did, never while they may be in the middle of a write.
// Events the kernel dropped (its queue overflowed) are made up for by a
// look at the files. It returns when ctx is done.
func WatchFiles(ctx context.Context, files []string, quiet time.Duration, changed func()) error {
	return watchFiles(ctx, files, quiet, changed, nil)
}

// watchFiles is WatchFiles, calling watching (if not nil) once the
// directories are watched and the files' state taken: a change after it
// is seen.
func watchFiles(ctx context.Context, files []string, quiet time.Duration, changed, watching func()) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch template files: %w", err)
	}
	defer w.Close()
	var abs []string
	for _, f := range files {
		a, err := filepath.Abs(f)
		if err != nil {
			return err
		}
		abs = append(abs, a)
	}
	watched := map[string]os.FileInfo{}
	// rewatch watches the directories of the files and of their links'
	// targets, each the one now at its name.
	rewatch := func(first bool) error {
		var dirs []string
		for _, a := range abs {
			dirs = append(dirs, filepath.Dir(a))
			if r, err := filepath.EvalSymlinks(a); err == nil {
				dirs = append(dirs, filepath.Dir(r))
			}
		}
		for d, was := range watched {
			// A directory is another by its device and inode only: its
			// size and time change with every file made in it.
			if !slices.Contains(dirs, d) || !os.SameFile(stat(d), was) {
				w.Remove(d)
				delete(watched, d)
			}
		}
		for _, d := range dirs {
			if _, ok := watched[d]; ok {
				continue
			}
			info := stat(d)
			if err := w.Add(d); err != nil {
				if first && slices.ContainsFunc(abs, func(a string) bool { return filepath.Dir(a) == d }) {
					return fmt.Errorf("watch %s: %w", d, err)
				}
				continue // tried again at the next look
			}
			watched[d] = info
		}
		return nil
	}
	if err := rewatch(true); err != nil {
		return err
	}
	seen := stateOf(abs)
	if watching != nil {
		watching()
	}
	look := func() {
		rewatch(false)
		if now := stateOf(abs); !slices.EqualFunc(now, seen, unchanged) {
			seen = now
			changed()
		}
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	// waiting: the timer runs, a change came less than quiet ago. The
	// look every recheckEvery leaves a change to it then, unless the
	// files are as that look found them the time before (ticked): a file
	// saved in place (truncated, then written) may be between the two.
	waiting := false
	ticked := seen
	wait := func() { timer.Reset(quiet); waiting = true }
	ticker := time.NewTicker(recheckEvery)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename|fsnotify.Remove) != 0 {
				wait()
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// The kernel dropped events (a burst of them in a
				// watched directory): the files are looked at once
				// quiet has passed, and the watch goes on.
				wait()
				continue
			}
			return fmt.Errorf("watch template files: %w", err)
		case <-timer.C:
			waiting = false
			look()
		case <-ticker.C:
			rewatch(false)
			now := stateOf(abs)
			held := slices.EqualFunc(now, ticked, unchanged)
			ticked = now
			switch {
			case slices.EqualFunc(now, seen, unchanged):
			case held:
				// As they were a look ago: not being written (events
				// of other files of the directories may keep quiet
				// from ever passing).
				seen = now
				changed()
			case !waiting:
				// A change no event told of: taken once quiet has
				// passed too.
				wait()
			}
		}
	}
}

// stat is the file at path, links followed, or nil if there is none.
func stat(path string) os.FileInfo {
	info, err := os.Stat(path)
	if err != nil {
		return nil
	}
	return info
}

// stateOf is what files are now, links followed (stat).
func stateOf(files []string) []os.FileInfo {
	infos := make([]os.FileInfo, len(files))
	for i, f := range files {
		infos[i] = stat(f)
	}
	return infos
}

// unchanged reports whether a and b (stat) are one file, of one size and
// time of modification, or both none.
func unchanged(a, b os.FileInfo) bool {
	if a == nil || b == nil {
		return a == b
	}
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}
