package fsync

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDir(t *testing.T) {
	if err := Dir(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if err := Dir(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("a missing directory synced")
	}
}

func TestMkdirAll(t *testing.T) {
	base := t.TempDir()
	deep := filepath.Join(base, "a", "b", "c")
	for range 2 { // the second time, everything is there
		if err := MkdirAll(deep, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{"a", "a/b", "a/b/c"} {
			fi, err := os.Stat(filepath.Join(base, d))
			if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
				t.Fatalf("%s: %v, %v; want a directory with mode 0700", d, fi, err)
			}
		}
	}
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{file, filepath.Join(file, "sub")} {
		if err := MkdirAll(p, 0o700); err == nil {
			t.Errorf("MkdirAll(%s) where a file is: no error", p)
		}
	}
}
