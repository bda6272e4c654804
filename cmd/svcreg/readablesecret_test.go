package main

import (
	"os"
	"path/filepath"
	"testing"
)

// Whether others can read a secret file is a matter of the file's own
// directories, not of those of a link to it: a file every local user can
// read is warned of when --users names it through a link in a directory
// they cannot search, and one in a directory they cannot search is not
// when the link is in one they can.
func TestReadableByOthersThroughALink(t *testing.T) {
	t.Parallel()
	open, closed := searchableTempDir(t), t.TempDir()
	if err := os.Chmod(closed, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		real, link string
		want       bool
	}{
		{filepath.Join(open, "users.toml"), filepath.Join(closed, "users.toml"), true},
		{filepath.Join(closed, "tls.key"), filepath.Join(open, "tls.key"), false},
	} {
		if err := os.WriteFile(c.real, []byte("secret\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(c.real, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(c.real, c.link); err != nil {
			t.Fatal(err)
		}
		if _, got := readableByOthers(c.link); got != c.want {
			t.Errorf("readableByOthers(%s, a link to %s) = %t; want %t", c.link, c.real, got, c.want)
		}
	}
}

// searchableTempDir is a t.TempDir that every local user can search, as
// can the directory above it (the test's own, which is 0700): a file of
// mode 0644 in it is one they can read.
func searchableTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
