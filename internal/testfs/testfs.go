// Package testfs holds file-system helpers for tests.
package testfs

import (
	"os"
	"path/filepath"
	"testing"
)

// SearchableTempDir is a t.TempDir that every local user can search, as
// can the directory above it (the test's own, which t.TempDir makes
// 0700): a file of mode 0644 in it is one they can read, whose content the
// pages without a login may show.
func SearchableTempDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
