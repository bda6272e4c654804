package render

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

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
	cfg, _ := load()
	first, err := NewSet(cfg)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	sets := make(chan *Set)
	r := NewReloader(nil, load, sets, first)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() { r.WatchFiles(ctx) })
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
