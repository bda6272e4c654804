package boltstore

import (
	"os"
	"path/filepath"
	"testing"
)

// Two servers started together on a new data directory both find no
// database and create one: the second must not rename its over the one
// the first has opened, or both run, each on a file of its own.
func TestCreateFileReplacesNone(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), FileName)
	if err := createFile(path); err != nil {
		t.Fatal(err)
	}
	first, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := createFile(path); err != nil {
		t.Fatal(err)
	}
	now, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(first, now) {
		t.Fatal("a second create replaced the database in place")
	}
	left, _ := filepath.Glob(path + ".new*")
	if len(left) > 0 {
		t.Fatalf("left behind: %v", left)
	}
}
