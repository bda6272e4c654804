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

// An editor that saves in place (vim with backupcopy=yes, a shell's '>')
// truncates the template, then writes it: the look every recheckEvery
// must not take the file between the two, which the quiet wait after
// their events does not.
func TestWatchFilesWaitsForAnInPlaceWriteToEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const full = "upstream www { server 10.0.0.1:80; }\n"
	tmpl := writeFile(t, dir, "a.tmpl", full)
	read := make(chan string, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- WatchFiles(ctx, []string{tmpl}, time.Second, func() {
			b, _ := os.ReadFile(tmpl)
			read <- string(b)
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	// Saves 100 ms apart, each truncating the file 80 ms before writing
	// it: there is always an event less than quiet ago (a second, so
	// that a loaded machine's pauses do not make a slow write of it).
	for end := time.Now().Add(3 * recheckEvery); time.Now().Before(end); {
		if err := os.Truncate(tmpl, 0); err != nil {
			t.Fatal(err)
		}
		time.Sleep(80 * time.Millisecond)
		if err := os.WriteFile(tmpl, []byte(full), 0o644); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond)
	for len(read) > 0 {
		if got := <-read; got != full {
			t.Fatalf("the template was taken half-written: %q", got)
		}
	}
}

// Another file in the templates' directory is written without pause (a
// log): its events never leave quiet to pass, and an edit of the
// template is still seen, once it holds still.
func TestWatchFilesSeesAnEditAmidAnotherFilesWrites(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tmpl := writeFile(t, dir, "a.tmpl", "one")
	changes := watchChanges(t, []string{tmpl}, func() { writeFile(t, dir, "a.tmpl", "two") })
	stop := make(chan struct{})
	noisy := make(chan struct{})
	go func() {
		defer close(noisy)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
				os.WriteFile(filepath.Join(dir, "log"), []byte(strconv.Itoa(i)), 0o644)
			}
		}
	}()
	defer func() { close(stop); <-noisy }()
	time.Sleep(100 * time.Millisecond)
	for len(changes) > 0 {
		<-changes
	}
	writeFile(t, dir, "a.tmpl", "three")
	if !seenWithin(changes, 3*recheckEvery) {
		t.Fatal("an edit of the template is not seen while another file of its directory is written")
	}
}
