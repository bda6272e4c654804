package render

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/watcher"
)

// counting is a snapshot holding n www services.
func counting(n int) *watcher.Snapshot {
	var ss []registry.Service
	for i := 0; i < n; i++ {
		ss = append(ss, svc(fmt.Sprintf("s%04d", i), []string{"www"}, map[string]string{"ip": fmt.Sprint(i)}))
	}
	return snapshot(ss...)
}

func startLoop(t *testing.T, g *group, set *Set) (*watcher.Latest, chan *Set) {
	t.Helper()
	src := watcher.NewLatest()
	sets := make(chan *Set)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		(&Loop{Renderer: g.r, Source: src, Sets: sets}).Run(ctx, set)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return src, sets
}

// waitFor polls until cond holds; the timeout only bounds a broken test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 1000; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// The loop runs in a synctest bubble: its timers run on the bubble's clock,
// which moves only when every goroutine of the bubble waits, so the quiet
// spells take no real time and "nothing more is due" is exact.
func TestBurstIsDebounced(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := newGroup(t, `{{len services}}`)
		set := g.set(t, TemplateConfig{Reload: "echo reload >> " + g.log})
		set.Config.Wait = WaitConfig{Min: Duration(200 * time.Millisecond), Max: Duration(time.Hour)}
		src, _ := startLoop(t, g, set)

		src.Put(counting(0))
		waitFor(t, "the first render", func() bool { return g.reloads(t) == 1 })
		// 500 changes in a burst: the loop waits for a quiet spell, then
		// renders the newest snapshot.
		for i := 1; i <= 500; i++ {
			s := counting(0)
			s.Version = uint64(i)
			if i == 500 {
				s = counting(500)
				s.Version = 500
			}
			src.Put(s)
		}
		waitFor(t, "the burst's render", func() bool { return contents(g.dest) == "500" })
		time.Sleep(400 * time.Millisecond) // two quiet spells: nothing more is due
		synctest.Wait()
		if n := g.reloads(t); n != 2 {
			t.Fatalf("%d reloads for the first render and a burst of 500 changes; want 2", n)
		}
	})
}

func TestMaxWaitBoundsDebounce(t *testing.T) {
	t.Parallel()
	g := newGroup(t, `{{.Version}}`)
	set := g.set(t, TemplateConfig{})
	// Only the max deadline can end this debounce while changes keep coming.
	set.Config.Wait = WaitConfig{Min: Duration(time.Hour), Max: Duration(100 * time.Millisecond)}
	src, _ := startLoop(t, g, set)
	src.Put(counting(1))
	waitFor(t, "the first render", func() bool { return contents(g.dest) == "0" })
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for v := uint64(1); ; v++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			s := counting(1)
			s.Version = v
			src.Put(s)
		}
	}()
	waitFor(t, "a render while changes keep coming", func() bool { return contents(g.dest) != "0" })
}

func TestNewSetRendersAtOnce(t *testing.T) {
	t.Parallel()
	g := newGroup(t, `old`)
	set := g.set(t, TemplateConfig{})
	set.Config.Wait = WaitConfig{Min: Duration(time.Hour), Max: Duration(time.Hour)}
	src, sets := startLoop(t, g, set)
	src.Put(counting(1))
	waitFor(t, "the first render", func() bool { return contents(g.dest) == "old" })
	writeFile(t, g.dir, "t.tmpl", `new {{len services}}`)
	sets <- g.set(t, TemplateConfig{})
	waitFor(t, "the new template's render", func() bool { return strings.HasPrefix(contents(g.dest), "new 1") })
}

// A set sent to the loop renders with the spellings the last render of
// the one before kept, also when it was made (and handed the ones before
// on) while that render ran.
func TestNewSetKeepsTheLastSpellings(t *testing.T) {
	t.Parallel()
	g := newGroup(t, `{{range $b, $eps := endpointsBy "backend" services}}{{$b}} {{end}}`)
	set := g.set(t, TemplateConfig{})
	src, sets := startLoop(t, g, set)
	ep := func(id, backend string) registry.Service {
		return svc(id, nil, map[string]string{"ip": "10.0.0.1", "port": "80", "backend": backend})
	}
	writeFile(t, g.dir, "t.tmpl", `new:{{range $b, $eps := endpointsBy "backend" services}}{{$b}} {{end}}`)
	early := g.set(t, TemplateConfig{}) // made before the first render
	src.Put(snapshot(ep("a-1", "API")))
	waitFor(t, "the first render", func() bool { return contents(g.dest) == "API " })
	both := snapshot(ep("a-0", "api"), ep("a-1", "API"))
	both.Version = 2
	src.Put(both)
	sets <- early // renders at once, on the snapshot with both
	waitFor(t, "the new set's render", func() bool { return strings.HasPrefix(contents(g.dest), "new:") })
	if got := contents(g.dest); got != "new:API " {
		t.Errorf("rendered %q; want API kept", got)
	}
}

func TestRunOnceTimesOutWithoutSync(t *testing.T) {
	t.Parallel()
	g := newGroup(t, `x`)
	set := g.set(t, TemplateConfig{})
	_, err := (&Loop{Renderer: g.r, Source: watcher.NewLatest()}).RunOnce(context.Background(), set, 50*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), ErrSyncTimeout.Error()) {
		t.Fatalf("err = %v; want a sync timeout", err)
	}
}

// contents is a file's content, "" if it cannot be read.
func contents(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// A pass that failed is run again on the same snapshot, without a change
// from the registry: a reload that failed once (the load balancer was
// restarting) is followed by one that installs the change.
func TestFailedPassIsRetried(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := newGroup(t, `{{len services}}`)
		failed := filepath.Join(g.dir, "failed-once")
		// The first reload passes, the second fails, the others pass.
		set := g.set(t, TemplateConfig{Reload: "if [ -e " + g.log + " ] && [ ! -e " + failed + " ]; then touch " + failed + "; exit 1; fi; echo reload >> " + g.log})
		set.Config.Wait = WaitConfig{Min: Duration(10 * time.Millisecond), Max: Duration(50 * time.Millisecond)}
		src, _ := startLoop(t, g, set)
		src.Put(counting(1))
		waitFor(t, "the first render", func() bool { return g.reloads(t) == 1 })
		s := counting(2)
		s.Version = 1
		src.Put(s)
		// The first reload, the restored file's, the retry's.
		waitFor(t, "the change's reload retried", func() bool { return g.reloads(t) == 3 })
		if got := contents(g.dest); got != "2" {
			t.Errorf("after the retry the file holds %q; want the change, 2", got)
		}
	})
}

// Passes that keep failing are spaced by a doubling backoff, from 1s up
// to 1m with jitter: in 180 seconds, 8 to 12 checks (each delay is drawn
// from [d/2, d]).
func TestFailedPassBacksOff(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := newGroup(t, `{{len services}}`)
		set := g.set(t, TemplateConfig{Check: "echo check >> " + g.log + "; exit 1"})
		src, _ := startLoop(t, g, set)
		src.Put(counting(1))
		waitFor(t, "the first check", func() bool { return g.reloads(t) == 1 })
		time.Sleep(180 * time.Second)
		synctest.Wait()
		if n := g.reloads(t); n < 8 || n > 12 {
			t.Errorf("%d checks in 180 s; want 8 to 12", n)
		}
		if contents(g.dest) != "" {
			t.Errorf("a file that failed its check was installed: %q", contents(g.dest))
		}
	})
}
