package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/svcreg/svcreg/internal/testfs"
)

// Whether others can read a secret file is a matter of the file's own
// directories, not of those of a link to it: a file every local user can
// read is warned of when --users names it through a link in a directory
// they cannot search, and one in a directory they cannot search is not
// when the link is in one they can.
func TestReadableByOthersThroughALink(t *testing.T) {
	t.Parallel()
	open, closed := testfs.SearchableTempDir(t), t.TempDir()
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
