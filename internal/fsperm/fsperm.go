// Package fsperm tells what every local user of the machine may reach.
package fsperm

import (
	"os"
	"path/filepath"
)

// DirsSearchable reports whether dir and every directory above it, links
// resolved, are ones every local user may search (o+x): a file there
// that every user may read (o+r) is one they can read. A directory that
// cannot be resolved or looked at counts as one they may not search.
func DirsSearchable(dir string) bool {
	abs, err := filepath.Abs(dir)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return false
	}
	for d := abs; ; d = filepath.Dir(d) {
		if di, err := os.Stat(d); err != nil || di.Mode().Perm()&0o001 == 0 {
			return false
		}
		if d == filepath.Dir(d) {
			return true
		}
	}
}
