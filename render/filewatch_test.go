package render

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestWatchFilesSeesWriteAndRename(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tmpl := writeFile(t, dir, "a.tmpl", "one")
	writeFile(t, dir, "unrelated", "x")
	changes := make(chan struct{}, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- WatchFiles(ctx, []string{tmpl}, 20*time.Millisecond, func() { changes <- struct{}{} }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	// The watch is set up asynchronously: write until a write is seen.
	for seen := false; !seen; {
		writeFile(t, dir, "a.tmpl", "two")
		select {
		case <-changes:
			seen = true
		case <-time.After(200 * time.Millisecond):
		}
	}
	// An editor's save: write a new file, rename it over the template.
	tmp := filepath.Join(dir, ".a.tmpl.swp")
	if err := os.WriteFile(tmp, []byte("three"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, tmpl); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a rename over the template to be seen", func() bool {
		select {
		case <-changes:
			return true
		default:
			return false
		}
	})
}

// watchChanges starts WatchFiles on files and returns its calls; the
// watch is set up once prime, repeated, has been seen.
func watchChanges(t *testing.T, files []string, prime func()) <-chan struct{} {
	t.Helper()
	changes := make(chan struct{}, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- WatchFiles(ctx, files, 20*time.Millisecond, func() { changes <- struct{}{} }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	for seen := false; !seen; {
		prime()
		select {
		case <-changes:
			seen = true
		case <-time.After(200 * time.Millisecond):
		}
	}
	return changes
}

// seenWithin drains changes and reports whether one came within d.
func seenWithin(changes <-chan struct{}, d time.Duration) bool {
	select {
	case <-changes:
		for len(changes) > 0 {
			<-changes
		}
		return true
	case <-time.After(d):
		return false
	}
}

func TestWatchFilesFollowsAReplacedDirectory(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	dir := filepath.Join(base, "templates")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tmpl := writeFile(t, dir, "a.tmpl", "one")
	changes := watchChanges(t, []string{tmpl}, func() { writeFile(t, dir, "a.tmpl", "two") })
	// A deploy that puts a new directory of templates in place of the
	// old one.
	if err := os.Rename(dir, filepath.Join(base, "templates.old")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "a.tmpl", "three")
	if !seenWithin(changes, 3*recheckEvery) {
		t.Fatal("the template of a directory put in place of the watched one is not seen")
	}
	// And an edit in the new directory, later.
	writeFile(t, dir, "a.tmpl", "four!")
	if !seenWithin(changes, 3*recheckEvery) {
		t.Fatal("an edit in a directory put in place of the watched one is not seen")
	}
}

func TestWatchFilesSeesALinkedDirectorySwapped(t *testing.T) {
	t.Parallel()
	// A Kubernetes ConfigMap volume: a.tmpl -> ..data/a.tmpl, ..data ->
	// ..v1; an update writes ..v2 and renames a new ..data link over it.
	dir := t.TempDir()
	version := func(v string) {
		d := filepath.Join(dir, "..v"+v)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, d, "a.tmpl", "template "+v)
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(filepath.Base(d), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("1")
	tmpl := filepath.Join(dir, "a.tmpl")
	if err := os.Symlink(filepath.Join("..data", "a.tmpl"), tmpl); err != nil {
		t.Fatal(err)
	}
	n := 1
	changes := watchChanges(t, []string{tmpl}, func() {
		n++
		version(strconv.Itoa(n))
	})
	n++
	version(strconv.Itoa(n))
	if !seenWithin(changes, 3*recheckEvery) {
		t.Fatal("an update of a linked directory is not seen")
	}
	// A file written through the link, in place.
	writeFile(t, filepath.Join(dir, "..v"+strconv.Itoa(n)), "a.tmpl", "edited in place")
	if !seenWithin(changes, 3*recheckEvery) {
		t.Fatal("a write to the file a template links to is not seen")
	}
}
