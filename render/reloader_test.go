package render

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/retry"
	"github.com/svcreg/svcreg/internal/testprog"
)

// watchingReloader returns a Reloader that starts from the Set load
// gives and sends on sets, with its WatchFiles running until the test
// ends; before, adjust (if not nil) is called with it.
func watchingReloader(t *testing.T, load func() (Config, error), sets chan<- *Set, adjust func(*Reloader)) *Reloader {
	t.Helper()
	cfg, err := load()
	if err != nil {
		t.Fatal(err)
	}
	first, err := NewSet(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := NewReloader(nil, load, sets, first)
	if adjust != nil {
		adjust(r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { r.WatchFiles(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return r
}

// Two reloads close together that change the template files: the file
// watch follows the second list, however the reloads and the watcher's
// restart interleave, so a change to a file of the newest Set reloads.
func TestReloaderFollowsTheNewestFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := func(name string) string { return writeFile(t, dir, name+".tmpl", name) }
	files := map[string]string{"a": src("a"), "b": src("b"), "c": src("c")}
	var which atomic.Value
	which.Store("a")
	load := func() (Config, error) {
		c := Config{Templates: []TemplateConfig{{Source: files[which.Load().(string)], Destination: filepath.Join(dir, "out")}}}
		return c, c.Normalize()
	}
	sets := make(chan *Set)
	r := watchingReloader(t, load, sets, nil)
	ctx := t.Context()
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	got := make(chan []string, 100)
	wg.Go(func() {
		for {
			select {
			case s := <-sets:
				got <- s.Sources()
			case <-ctx.Done():
				return
			}
		}
	})

	for round := range 3 {
		which.Store("b")
		r.Reload(ctx, "SIGHUP")
		which.Store("c")
		r.Reload(ctx, "SIGHUP")
		for range 2 {
			<-got
		}
		// A change to c.tmpl must reload; the bound only stops a broken test.
		deadline := time.Now().Add(20 * time.Second)
	wait:
		for {
			os.WriteFile(files["c"], []byte("c"), 0o644)
			select {
			case s := <-got:
				if !slices.Equal(s, []string{files["c"]}) {
					t.Fatalf("round %d: reloaded %q", round, s)
				}
				break wait
			case <-time.After(300 * time.Millisecond):
				if time.Now().After(deadline) {
					t.Fatalf("round %d: a change to the newest Set's template did not reload", round)
				}
			}
		}
		// Let the reloads of further writes settle.
		for settled := false; !settled; {
			select {
			case <-got:
			case <-time.After(time.Second):
				settled = true
			}
		}
	}
}

// The kernel's queue of file events overflows (many files made in the
// templates' directory while the reload waited for the render loop): the
// watch goes on, and a later edit of a template still reloads.
func TestReloaderWatchesOnAfterAnEventOverflow(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tmpl := writeFile(t, dir, "a.tmpl", "a")
	load := func() (Config, error) {
		c := Config{Templates: []TemplateConfig{{Source: tmpl, Destination: filepath.Join(t.TempDir(), "out")}}}
		return c, c.Normalize()
	}
	sets := make(chan *Set)
	watchingReloader(t, load, sets, nil)
	// reloaded writes the template until a reload comes.
	reloaded := func(what string) {
		t.Helper()
		deadline := time.Now().Add(4 * recheckEvery)
		for {
			os.WriteFile(tmpl, []byte(what), 0o644)
			select {
			case <-sets:
				return
			case <-time.After(300 * time.Millisecond):
				if time.Now().After(deadline) {
					t.Fatalf("a change of the template (%s) did not reload", what)
				}
			}
		}
	}
	reloaded("b")
	// The reload of this change waits for the loop: meanwhile more
	// events come than the kernel queues (16384 by default).
	os.WriteFile(tmpl, []byte("c"), 0o644)
	time.Sleep(500 * time.Millisecond)
	var n int
	if b, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events"); err == nil {
		fmt.Sscan(string(b), &n)
	}
	if n == 0 || n > 100000 {
		testprog.SkipOrFail(t, fmt.Sprintf("this test overflows the kernel's inotify queue by making more files than it holds, and this machine's /proc/sys/fs/inotify/max_queued_events is %d (unreadable, or past 100000)", n), "")
	}
	for i := range n + 100 {
		f, err := os.Create(filepath.Join(dir, strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	select {
	case <-sets:
	case <-time.After(10 * time.Second):
		t.Fatal("the change did not reload")
	}
	// Drain what the overflow made reload.
	for settled := false; !settled; {
		select {
		case <-sets:
		case <-time.After(time.Second):
			settled = true
		}
	}
	reloaded("d")
}

// The templates' directory is not there when the watch starts (a deploy
// that puts a new one in place of the old): the watch is tried again,
// and an edit of the template in the new directory reloads.
func TestReloaderWatchesOnceTheDirectoryIsBack(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	dir := filepath.Join(base, "templates")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tmpl := writeFile(t, dir, "a.tmpl", "a")
	load := func() (Config, error) {
		c := Config{Templates: []TemplateConfig{{Source: tmpl, Destination: filepath.Join(base, "out")}}}
		return c, c.Normalize()
	}
	sets := make(chan *Set, 100)
	watchingReloader(t, load, sets, func(r *Reloader) {
		if err := os.Rename(dir, dir+".old"); err != nil {
			t.Fatal(err)
		}
		r.retry = retry.Backoff{Min: 50 * time.Millisecond, Max: 200 * time.Millisecond}
	})
	time.Sleep(200 * time.Millisecond)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "a.tmpl", "b")
	deadline := time.Now().Add(4 * recheckEvery)
	for {
		select {
		case <-sets:
			// Read once the watch is back; a later edit reloads too.
			for len(sets) > 0 {
				<-sets
			}
			writeFile(t, dir, "a.tmpl", "c")
			select {
			case <-sets:
				return
			case <-time.After(4 * recheckEvery):
				t.Fatal("an edit of the template in the new directory did not reload")
			}
		case <-time.After(100 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("the template in the new directory was not read")
			}
		}
	}
}
