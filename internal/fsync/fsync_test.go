package fsync

import (
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
