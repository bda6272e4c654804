package fsperm_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/svcreg/svcreg/internal/fsperm"
	"github.com/svcreg/svcreg/internal/testfs"
)

func TestDirsSearchable(t *testing.T) {
	open := testfs.SearchableTempDir(t)
	closed := filepath.Join(open, "closed")
	if err := os.Mkdir(closed, 0o700); err != nil {
		t.Fatal(err)
	}
	inner := filepath.Join(closed, "inner")
	if err := os.Mkdir(inner, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(open, "link")
	if err := os.Symlink(inner, link); err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]bool{open: true, closed: false, inner: false, link: false, filepath.Join(open, "missing"): false} {
		if got := fsperm.DirsSearchable(dir); got != want {
			t.Errorf("DirsSearchable(%s) = %v, want %v", dir, got, want)
		}
	}
}
