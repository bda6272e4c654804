package render

import (
	"context"
	"os"
	"path/filepath"
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
