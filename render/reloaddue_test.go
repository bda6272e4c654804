package render

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/svcreg/svcreg/watcher"
)

// web is a snapshot of one service web-N tagged www at 10.0.0.N.
func web(n int) *watcher.Snapshot {
	return snapshot(svc(fmt.Sprintf("web-%d", n), []string{"www"}, map[string]string{"ip": fmt.Sprintf("10.0.0.%d", n)}))
}

// A template added to a group (by a reload of the config) renders a new
// file; when the group's reload fails, the new file, checked, stays, and
// the next pass with nothing changed reloads it, rather than leave the
// load balancer without it until the next change.
func TestKeptNewFileIsReloadedByTheNextPass(t *testing.T) {
	t.Parallel()
	g := newGroup(t, "a\n")
	b := filepath.Join(g.dir, "b.conf")
	failed := filepath.Join(g.dir, "failed-once")
	reload := "if [ ! -e " + failed + " ]; then touch " + failed + "; exit 1; fi; echo reload >> " + g.log
	writeFile(t, g.dir, "out.conf", "a\n") // installed and loaded before
	set := newSet(t,
		TemplateConfig{Source: g.src, Destination: g.dest, ReloadGroup: "lb", Check: "true", Reload: reload},
		TemplateConfig{Contents: "b\n", Destination: b, ReloadGroup: "lb", Check: "true", Reload: reload})
	ctx := context.Background()
	if res := g.r.Pass(ctx, set, snapshot()); res.Worst() == nil || res.Worst().Step != StepReload {
		t.Fatalf("first pass: %+v; want its reload to fail", res)
	}
	if got := contents(b); got != "b\n" {
		t.Fatalf("the new, checked file holds %q; want it kept", got)
	}
	for range 2 {
		if res := g.r.Pass(ctx, set, snapshot()); res.Failures != nil {
			t.Fatalf("a pass with nothing changed: %+v", res)
		}
	}
	if n := g.reloads(t); n != 1 {
		t.Errorf("%d reloads after the failed one; want 1: the kept file reloaded once", n)
	}
}

// A reload that failed and whose rollback's reload failed too leaves the
// installed files to be reloaded by the next pass with nothing changed,
// held to min_reload_interval like any reload; a change meanwhile is
// installed and reloads as usual, one reload a pass.
func TestReloadDueAfterAFailedRollback(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("the next pass", func(t *testing.T) {
		t.Parallel()
		g, set := dueAfterAFailedRollback(t, "true", 2)
		if res := g.r.Pass(ctx, set, web(1)); res.Worst() == nil || res.Worst().Step != StepReload || g.reloads(t) != 4 {
			t.Fatalf("a pass with nothing changed: %+v, %d reloads; want the installed files reloaded again, and failed", res, g.reloads(t))
		}
		writeFile(t, g.dir, "ok", "")
		for range 2 {
			if res := g.r.Pass(ctx, set, web(1)); res.Failures != nil || g.reloads(t) != 5 {
				t.Fatalf("the reload passing: %+v, %d reloads; want one that passes, then none", res, g.reloads(t))
			}
		}
	})
	t.Run("min_reload_interval", func(t *testing.T) {
		t.Parallel()
		g := newGroup(t, upstreams)
		now := time.Now()
		g.r.now = func() time.Time { return now }
		set := g.set(t, TemplateConfig{Check: "true", Reload: "echo reload >> " + g.log + "; exit 1", MinReloadInterval: Duration(time.Hour)})
		firstDeployFails(t, g, set)
		for range 3 {
			if res := g.r.Pass(ctx, set, web(1)); res.Failures != nil || !res.RetryAt.Equal(now.Add(time.Hour)) {
				t.Errorf("a pass within the interval: %+v; want the reload held back to the interval's end", res)
			}
		}
		if n := g.reloads(t); n != 1 {
			t.Errorf("%d reloads within min_reload_interval; want 1", n)
		}
		now = now.Add(2 * time.Hour)
		// The change's reload, and its rollback's.
		if res := g.r.Pass(ctx, set, web(2)); res.Worst() == nil || res.Worst().Step != StepReload || g.reloads(t) != 3 {
			t.Errorf("a change after the interval: %+v, %d reloads; want it installed, reloaded and rolled back", res, g.reloads(t))
		}
	})
}

// While the installed files wait for a reload, a change a runtime API
// could make reloads instead: the reload makes the installed files live,
// with the change.
func TestReloadDueTakesTheChangeThroughAReload(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := installedA(t)
	s.r.reloadDue = map[string]bool{s.set.Groups[0].Name: true}
	before := len(lineCount(s.reloads))
	if res := s.r.Pass(ctx, s.set, snapshot(httpSvc("a", "9001", ""), httpSvc("b", "9002", ""))); len(res.Failures) > 0 || res.Installed != 1 {
		t.Fatalf("pass: %+v", res)
	}
	if n := len(lineCount(s.reloads)); n != before+1 {
		t.Errorf("%d reloads for the change; want 1, not the runtime API", n-before)
	}
	if s.r.reloadDue[s.set.Groups[0].Name] {
		t.Error("the reload passed, and the group's files are still due one")
	}
}

// dueAfterAFailedRollback makes a group (with check) whose installed
// files wait for a reload: web-1 installed and reloaded, then web-n's
// reload failed, and so did the reload of web-1's file put back. The
// reload passes once the file "ok" is in the group's directory again.
func dueAfterAFailedRollback(t *testing.T, check string, n int) (*group, *Set) {
	t.Helper()
	ctx := context.Background()
	g := newGroup(t, upstreams)
	set := g.setReloadingWhenOK(t, TemplateConfig{Check: check})
	writeFile(t, g.dir, "ok", "")
	if res := g.r.Pass(ctx, set, web(1)); res.Failures != nil {
		t.Fatalf("first pass: %+v", res)
	}
	removeFile(t, filepath.Join(g.dir, "ok"))
	if res := g.r.Pass(ctx, set, web(n)); res.Worst() == nil || res.Worst().Step != StepReload || g.reloads(t) != 3 {
		t.Fatalf("second pass: %+v, %d reloads; want the reload and the rollback's failed", res, g.reloads(t))
	}
	return g, set
}

// removeFile removes path.
func removeFile(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

// With --exec and a reload command (not a signal), a first deploy's
// reload fails until the command runs; the command starts after a pass
// without a failure, and reads the installed files then: a due reload is
// not run before it has started. Otherwise no pass would be without a
// failure, and the command would never start.
func TestReloadDueWaitsForTheExecCommand(t *testing.T) {
	dir := t.TempDir()
	command := CommandLine{"true"}
	ex := &Exec{Command: command}
	if err := ex.Prepare(); err != nil {
		t.Fatal(err)
	}
	defer ex.Close()
	g := newGroup(t, upstreams)
	set := g.set(t, TemplateConfig{Check: "true", Reload: "echo reload >> " + g.log + "; [ -e " + filepath.Join(dir, "up") + " ]"})
	g.r.Child = ex
	ctx := context.Background()
	firstDeployFails(t, g, set)
	res := g.r.Pass(ctx, set, web(1))
	ex.Passed(res)
	select {
	case <-ex.ready:
	default:
		t.Fatalf("no pass without a failure: the command would never start (%d reloads)", g.reloads(t))
	}
	if n := g.reloads(t); n != 1 {
		t.Errorf("%d reloads; want 1: none before the command has started", n)
	}
	// The group's load balancer is not the command (a reload command,
	// not a signal): its files are still due, after the command starts.
	if !g.r.reloadDue[set.Groups[0].Name] || res.RetryAt.IsZero() {
		t.Errorf("due %t, retry at %v; want the reload still due, and a pass to come", g.r.reloadDue[set.Groups[0].Name], res.RetryAt)
	}
}

// A reload after the runtime API's background work failed (Fallback)
// that fails leaves the installed files due a reload: the next pass with
// nothing changed reloads them, rather than report the group passed.
func TestFailedFallbackLeavesTheReloadDue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := newGroup(t, upstreams)
	set := g.setReloadingWhenOK(t, TemplateConfig{Check: "true"})
	writeFile(t, g.dir, "ok", "")
	if res := g.r.Pass(ctx, set, web(1)); res.Failures != nil {
		t.Fatalf("first pass: %+v", res)
	}
	removeFile(t, filepath.Join(g.dir, "ok"))
	g.r.runtimes.fail(backgroundFailure{set.Groups[0].Name, g.dest, "haproxy", errors.New("drain failed")})
	if fs := g.r.Fallback(ctx, set); len(fs) != 1 || g.reloads(t) != 2 {
		t.Fatalf("Fallback: %v, %d reloads; want its reload failed", fs, g.reloads(t))
	}
	writeFile(t, g.dir, "ok", "")
	if res := g.r.Pass(ctx, set, web(1)); res.Failures != nil || g.reloads(t) != 3 {
		t.Errorf("the next pass with nothing changed: %+v, %d reloads; want the installed files reloaded", res, g.reloads(t))
	}
}

// A change whose check fails, while the installed files wait for a
// reload, reloads them: that pass's one reload. Otherwise a registry
// that kept producing output that fails the check would keep them from
// the load balancer. And a rollback's reload that passes takes them too:
// no reload follows in the next pass with nothing to change.
func TestReloadDueWithFailingChecksAndRollbacks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("a failing check", func(t *testing.T) {
		t.Parallel()
		g, set := dueAfterAFailedRollback(t, "! grep -q 10.0.0.2 {{.Staged}}", 3)
		writeFile(t, g.dir, "ok", "")
		if res := g.r.Pass(ctx, set, web(2)); res.Worst() == nil || res.Worst().Step != StepCheck || g.reloads(t) != 4 {
			t.Fatalf("a change that fails its check: %+v, %d reloads; want the check failed, and the installed files reloaded", res, g.reloads(t))
		}
		if res := g.r.Pass(ctx, set, web(1)); res.Failures != nil || g.reloads(t) != 4 {
			t.Errorf("a pass with nothing changed after: %+v, %d reloads; want no more", res, g.reloads(t))
		}
	})
	t.Run("a rollback that passes", func(t *testing.T) {
		t.Parallel()
		g := newGroup(t, upstreams)
		// Reloads 2, 3 and 4 fail.
		reload := "echo reload >> " + g.log + `; case $(wc -l < ` + g.log + `) in 2|3|4) exit 1;; esac`
		set := g.set(t, TemplateConfig{Check: "true", Reload: reload})
		for i, tc := range []struct {
			n, reloads int
			ok         bool
		}{
			{1, 1, true},  // installed, reloaded
			{2, 3, false}, // its reload fails, and the rollback's: due
			{3, 5, false}, // its reload fails, the rollback's passes
			{1, 5, true},  // nothing to change, and nothing due
		} {
			res := g.r.Pass(ctx, set, web(tc.n))
			if (res.Failures == nil) != tc.ok || g.reloads(t) != tc.reloads {
				t.Fatalf("pass %d: %+v, %d reloads; want ok %t, %d reloads", i+1, res, g.reloads(t), tc.ok, tc.reloads)
			}
		}
	})
}

// A group a reload of the config renames keeps its due reload.
func TestRenamedGroupKeepsItsDueReload(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := newGroup(t, upstreams)
	tc := TemplateConfig{Check: "true", Reload: g.reloadWhenOK(), ReloadGroup: "old"}
	set := g.set(t, tc)
	firstDeployFails(t, g, set)
	tc.ReloadGroup = "new"
	next := g.set(t, tc)
	g.r.switchSet(set, next)
	writeFile(t, g.dir, "ok", "")
	if res := g.r.Pass(ctx, next, web(1)); res.Failures != nil || g.reloads(t) != 2 {
		t.Errorf("the renamed group's pass with nothing changed: %+v, %d reloads; want the due reload run", res, g.reloads(t))
	}
}

// The daemon's loop runs the reload a failed fallback reload left due:
// a pass after the backoff, with no change to bring it. Before, nothing
// came until the registry changed.
func TestFailedFallbackIsRetriedByTheLoop(t *testing.T) {
	t.Parallel()
	g := newGroup(t, upstreams)
	set := g.setReloadingWhenOK(t, TemplateConfig{Check: "true"})
	writeFile(t, g.dir, "ok", "")
	src, _ := startLoop(t, g, set)
	src.Put(web(1))
	waitFor(t, "the first install's reload", func() bool { return g.reloads(t) == 1 })
	removeFile(t, filepath.Join(g.dir, "ok"))
	g.r.runtimes.fail(backgroundFailure{set.Groups[0].Name, g.dest, "haproxy", errors.New("drain failed")})
	waitFor(t, "the fallback's reload", func() bool { return g.reloads(t) == 2 })
	writeFile(t, g.dir, "ok", "")
	waitFor(t, "the due reload", func() bool { return g.reloads(t) == 3 })
}

// While a due reload waits for the --exec command to start, the passes
// that look for it come at a backoff, not every second.
func TestReloadDueWaitsForTheExecCommandAtABackoff(t *testing.T) {
	ex := &Exec{Command: CommandLine{"true"}}
	if err := ex.Prepare(); err != nil {
		t.Fatal(err)
	}
	defer ex.Close()
	g := newGroup(t, upstreams)
	now := time.Now()
	g.r.now = func() time.Time { return now }
	set := g.set(t, TemplateConfig{Check: "true", Reload: "echo reload >> " + g.log + "; exit 1"})
	g.r.Child = ex
	if res := g.r.Pass(context.Background(), set, web(1)); res.Worst() == nil {
		t.Fatalf("first pass: %+v; want its reload to fail", res)
	}
	var waits []time.Duration
	for range 5 {
		res := g.r.Pass(context.Background(), set, web(1))
		waits = append(waits, res.RetryAt.Sub(now))
	}
	if waits[4] < 8*time.Second {
		t.Errorf("the passes waiting for the command come after %v; want them backing off", waits)
	}
}

// A reload that no reload has passed since it failed is due across a
// restart too: its reload-pending file stays until one passes, and a
// Renderer started anew, with nothing changed, reloads the installed
// files. Before, the pending file went with the failed reload, and a
// restart left the load balancer without the files until the next
// change.
func TestReloadDueAcrossARestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("a kept new file", func(t *testing.T) {
		t.Parallel()
		g := newGroup(t, upstreams)
		set := g.setReloadingWhenOK(t, TemplateConfig{Check: "true"})
		firstDeployFails(t, g, set)
		if w := NewRenderer(nil, nil, nil).Pass(ctx, set, web(1)).Worst(); w == nil || w.Step != StepReload || g.reloads(t) != 2 {
			t.Fatalf("a start with nothing changed: %v, %d reloads; want the kept file's reload tried again, and failed", w, g.reloads(t))
		}
		writeFile(t, g.dir, "ok", "")
		if res := NewRenderer(nil, nil, nil).Pass(ctx, set, web(1)); res.Failures != nil || g.reloads(t) != 3 {
			t.Fatalf("a start, the load balancer up: %+v, %d reloads; want one reload that passes", res, g.reloads(t))
		}
		if _, err := os.Lstat(pendingName(g.dest)); err == nil {
			t.Error("the reload-pending file is left after the reload passed")
		}
		if res := NewRenderer(nil, nil, nil).Pass(ctx, set, web(1)); res.Failures != nil || g.reloads(t) != 3 {
			t.Fatalf("a start after the reload passed: %+v, %d reloads; want none", res, g.reloads(t))
		}
	})
	t.Run("a failed rollback", func(t *testing.T) {
		t.Parallel()
		g, set := dueAfterAFailedRollback(t, "true", 2)
		writeFile(t, g.dir, "ok", "")
		r := NewRenderer(nil, nil, nil)
		for range 2 {
			if res := r.Pass(ctx, set, web(1)); res.Failures != nil || g.reloads(t) != 4 {
				t.Fatalf("a start with nothing changed: %+v, %d reloads; want one that passes, then none", res, g.reloads(t))
			}
		}
	})
	t.Run("a change at the start", func(t *testing.T) {
		t.Parallel()
		g, set := dueAfterAFailedRollback(t, "true", 2)
		writeFile(t, g.dir, "ok", "")
		if res := NewRenderer(nil, nil, nil).Pass(ctx, set, web(3)); res.Failures != nil || res.Installed != 1 || g.reloads(t) != 4 {
			t.Fatalf("a start with a change: %+v, %d reloads; want the change installed and one reload", res, g.reloads(t))
		}
		if _, err := os.Lstat(pendingName(g.dest)); err == nil {
			t.Error("the reload-pending file is left after the reload passed")
		}
	})
}

// A pass whose render fails (here min_instances refusing an emptied
// registry) still reloads the installed files that are due: they go live
// whatever the registry renders to now.
func TestRenderFailureReloadsTheDueFiles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := newGroup(t, upstreams)
	set := g.setReloadingWhenOK(t, TemplateConfig{Check: "true", MinInstances: 1})
	firstDeployFails(t, g, set)
	writeFile(t, g.dir, "ok", "")
	if w := g.r.Pass(ctx, set, snapshot()).Worst(); w == nil || w.Step != StepRender || g.reloads(t) != 2 {
		t.Fatalf("a pass whose render is refused: %v, %d reloads; want the render's failure and the due files reloaded", w, g.reloads(t))
	}
	if w := g.r.Pass(ctx, set, snapshot()).Worst(); w == nil || w.Step != StepRender || g.reloads(t) != 2 {
		t.Fatalf("the next such pass: %v, %d reloads; want no reload", w, g.reloads(t))
	}
}

// A pass whose render fails and whose due reload fails too reports the
// reload's failure, the later step (--once's exit 8): the load balancer
// runs without the installed files, which a render's failure (5) would
// not say.
func TestRenderFailureWithAFailedDueReloadIsAReloadFailure(t *testing.T) {
	t.Parallel()
	g := newGroup(t, upstreams)
	set := g.setReloadingWhenOK(t, TemplateConfig{Check: "true", MinInstances: 1})
	firstDeployFails(t, g, set)
	if w := g.r.Pass(context.Background(), set, snapshot()).Worst(); w == nil || w.Step != StepReload || g.reloads(t) != 2 {
		t.Fatalf("a refused render with a due reload that fails: %v, %d reloads; want the reload's failure, after 2", w, g.reloads(t))
	}
}

// A stop that cuts a due group's render short runs no reload on its way
// out: a stop waits for no reload of its own.
func TestStopDuringADueGroupsRenderRunsNoReload(t *testing.T) {
	t.Parallel()
	g, set := dueAfterAFailedRollback(t, "true", 2)
	writeFile(t, g.dir, "ok", "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	g.r.Pass(ctx, set, web(1))
	if n := g.reloads(t); n != 3 {
		t.Errorf("a stop during the render ran %d reloads; want none", n-3)
	}
}

// Two renderers on one destination (a daemon, and a --once run): the
// reload the daemon's failed left due is taken by the other's reload,
// which removes the pending file, and the daemon does not reload again. A
// --once --no-reload run leaves the pending file, and the daemon's
// reload stays due.
func TestAnotherRenderersReloadTakesTheDueFiles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		noReload bool
		reloads  int // after the daemon's next pass
	}{
		{"the other reloads", false, 2},
		{"the other with --no-reload", true, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := newGroup(t, upstreams)
			set := g.setReloadingWhenOK(t, TemplateConfig{Check: "true"})
			firstDeployFails(t, g, set)
			writeFile(t, g.dir, "ok", "")
			other := NewRenderer(nil, nil, nil)
			other.NoReload = tc.noReload
			if res := other.Pass(ctx, set, web(1)); res.Failures != nil {
				t.Fatalf("the other renderer: %+v", res)
			}
			if _, err := os.Lstat(pendingName(g.dest)); (err == nil) != tc.noReload {
				t.Fatalf("after the other renderer, the pending file: %v; want it there only if it did not reload", err)
			}
			if res := g.r.Pass(ctx, set, web(1)); res.Failures != nil || g.reloads(t) != tc.reloads {
				t.Errorf("the daemon's next pass: %+v, %d reloads; want %d", res, g.reloads(t), tc.reloads)
			}
			if _, err := os.Lstat(pendingName(g.dest)); err == nil {
				t.Error("the pending file is left after a reload took the files")
			}
		})
	}
}

// A reload of the config that drops a destination removes its lock file,
// but not while another process's pass holds its lock, and never its
// reload-pending file, which may be another renderer's due reload (or a
// pass's between its install and its reload).
func TestDroppedDestinationKeepsItsPendingFile(t *testing.T) {
	t.Parallel()
	for _, held := range []bool{false, true} {
		g := newGroup(t, upstreams)
		other := newGroup(t, upstreams)
		set := newSet(t, TemplateConfig{Source: g.src, Destination: g.dest, Reload: "true"})
		next := newSet(t, TemplateConfig{Source: other.src, Destination: other.dest, Reload: "true"})
		writeFile(t, g.dir, filepath.Base(pendingName(g.dest)), "")
		writeFile(t, g.dir, filepath.Base(lockName(g.dest)), "")
		var lock *os.File
		if held {
			lock = holdLock(t, g.dest)
		}
		g.r.switchSet(set, next)
		if _, err := os.Lstat(lockName(g.dest)); (err == nil) != held {
			t.Errorf("the lock held by another process: %t; the lock file: %v", held, err)
		}
		if _, err := os.Lstat(pendingName(g.dest)); err != nil {
			t.Errorf("the lock held by another process: %t; the pending file went: %v", held, err)
		}
		if lock != nil {
			lock.Close()
		}
	}
}

// reloadWhenOK is a reload command that counts its runs in g's log and
// passes once the file "ok" is in g's directory.
func (g *group) reloadWhenOK() string {
	return "echo reload >> " + g.log + "; [ -e " + filepath.Join(g.dir, "ok") + " ]"
}

// setReloadingWhenOK is g's set of tc with reloadWhenOK for its reload.
func (g *group) setReloadingWhenOK(t *testing.T, tc TemplateConfig) *Set {
	tc.Reload = g.reloadWhenOK()
	return g.set(t, tc)
}

// firstDeployFails passes set on web-1 with g, whose reload must fail.
func firstDeployFails(t *testing.T, g *group, set *Set) {
	t.Helper()
	if w := g.r.Pass(context.Background(), set, web(1)).Worst(); w == nil || w.Step != StepReload {
		t.Fatalf("the first deploy: %v; want its reload failed", w)
	}
}
