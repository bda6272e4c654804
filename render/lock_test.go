package render

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Two renderers on one destination (a daemon, and --once in a deploy
// script) take their passes in turn: while another process holds the
// destination's lock, a pass neither stages, checks, installs nor
// reloads; once it is released, the pass goes on. Before, each staged
// over the other's staged file, and one installed what no check saw.
func TestPassWaitsForAnotherRenderersLock(t *testing.T) {
	t.Parallel()
	g := newGroup(t, upstreams)
	checked := filepath.Join(g.dir, "checked")
	set := g.set(t, TemplateConfig{Reload: "echo reload >> " + g.log, Check: "echo >> " + checked})
	writeFile(t, g.dir, filepath.Base(g.dest), "before\n")

	other := holdLock(t, g.dest)
	done := make(chan PassResult, 1)
	go func() {
		done <- g.r.Pass(context.Background(), set, snapshot(svc("web-1", []string{"www"}, map[string]string{"ip": "10.0.0.1"})))
	}()
	whileHeld(t, "the pass", done, func() {
		if _, err := os.Stat(checked); err == nil || readFile(t, g.dest) != "before\n" || g.reloads(t) != 0 {
			t.Fatal("the pass checked, installed or reloaded while another process held the lock")
		}
		if _, err := os.Stat(stagedName(g.dest)); err == nil {
			t.Fatal("the pass staged while another process held the lock")
		}
	})
	other.Close() // releases it
	res := <-done
	if len(res.Failures) != 0 || res.Installed != 1 {
		t.Fatalf("after the lock was released: %+v", res)
	}
	if got := readFile(t, g.dest); got != "server 10.0.0.1;\n" || g.reloads(t) != 1 {
		t.Errorf("installed %q, %d reloads; want the render, reloaded once", got, g.reloads(t))
	}
}

// A stop while the pass waits for the lock ends it with no outcome; a
// lock file that is a symbolic link is refused, and says to remove it.
func TestLockWaitEnds(t *testing.T) {
	t.Parallel()
	g := newGroup(t, upstreams)
	set := g.set(t, TemplateConfig{Reload: "echo reload >> " + g.log})
	other := holdLock(t, g.dest)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	if res := g.r.Pass(ctx, set, snapshot(svc("web-1", []string{"www"}, map[string]string{"ip": "10.0.0.1"}))); !res.Stopped || len(res.Failures) != 0 {
		t.Errorf("a stop while waiting for the lock: %+v, want stopped without a failure", res)
	}
	other.Close()

	l := newGroup(t, upstreams)
	lset := l.set(t, TemplateConfig{})
	if err := os.Symlink(filepath.Join(l.dir, "elsewhere"), lockName(l.dest)); err != nil {
		t.Fatal(err)
	}
	res := l.r.Pass(context.Background(), lset, snapshot(svc("web-1", []string{"www"}, map[string]string{"ip": "10.0.0.1"})))
	if w := res.Worst(); w == nil || w.Step != StepInstall || !strings.Contains(w.Error(), "the lock file is a symbolic link; remove it") {
		t.Errorf("a lock file that is a link: %v", w)
	}
	if _, err := os.Lstat(filepath.Join(l.dir, "elsewhere")); err == nil {
		t.Error("the link's target was created")
	}
}

// A caller waiting behind another in-process caller of the same group,
// itself waiting for another process's lock, stops when its own context
// ends. Before, it waited for the other caller, up to the lock wait
// (minutes).
func TestGroupLockWaitEndsWithItsContext(t *testing.T) {
	t.Parallel()
	g := newGroup(t, upstreams)
	group := g.set(t, TemplateConfig{}).Groups[0]
	other := holdLock(t, g.dest)
	firstCtx, stopFirst := context.WithCancel(context.Background())
	defer stopFirst()
	first := make(chan *Failure, 1)
	go func() {
		release, f := g.r.lockGroup(firstCtx, group)
		if release != nil {
			release()
		}
		first <- f
	}()
	// The first caller is in its wait for the other process once it has
	// the group's semaphore.
	g.r.locks.mu.Lock()
	for g.r.locks.groups[group.Name] == nil {
		g.r.locks.mu.Unlock()
		time.Sleep(time.Millisecond)
		g.r.locks.mu.Lock()
	}
	gl := g.r.locks.groups[group.Name]
	g.r.locks.mu.Unlock()
	for len(gl.held) == 0 {
		time.Sleep(time.Millisecond)
	}

	secondCtx, stopSecond := context.WithCancel(context.Background())
	second := make(chan *Failure, 1)
	go func() {
		release, f := g.r.lockGroup(secondCtx, group)
		if release != nil {
			release()
		}
		second <- f
	}()
	time.Sleep(20 * time.Millisecond)
	stopSecond()
	select {
	case f := <-second:
		if f != stopped {
			t.Errorf("the second caller, stopped: %v, want stopped", f)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second caller, stopped, still waits for the first")
	}
	select {
	case f := <-first:
		t.Fatalf("the first caller ended while the other process held the lock: %v", f)
	default:
	}
	other.Close()
	if f := <-first; f != nil {
		t.Errorf("the first caller, once the lock was released: %v", f)
	}
	// Let go of, the group's lock is taken again at once.
	release, f := g.r.lockGroup(context.Background(), group)
	if f != nil {
		t.Fatal(f)
	}
	release()
	if len(gl.held) != 0 || gl.refs != 0 || gl.files != nil {
		t.Errorf("after every release: %d held, %d refs, %d files", len(gl.held), gl.refs, len(gl.files))
	}
}

// holdLock takes dest's lock as another process would: on a descriptor
// of its own, as flock sees it. Closing it releases the lock.
func holdLock(t *testing.T, dest string) *os.File {
	t.Helper()
	f, err := os.OpenFile(lockName(dest), os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	return f
}

// A stop between an install and the end of its reload (a crash, a
// SIGKILL) leaves the reload-pending file: the next start reloads the
// installed files though nothing changed. Before, the load balancer ran
// the old files until the next change. The file is there while the reload
// runs, gone once it passed, and kept while it fails.
func TestReloadLeftPendingByAStop(t *testing.T) {
	t.Parallel()
	g := newGroup(t, upstreams)
	marker := pendingName(g.dest)
	// The reload notes whether the pending file is there as it runs.
	set := g.set(t, TemplateConfig{Reload: "test -e " + marker + " && echo reload >> " + g.log})
	snap := snapshot(svc("web-1", []string{"www"}, map[string]string{"ip": "10.0.0.1"}))
	if res := g.r.Pass(context.Background(), set, snap); len(res.Failures) != 0 || g.reloads(t) != 1 {
		t.Fatalf("the first install: %+v, %d reloads with the pending file there; want 1", res, g.reloads(t))
	}
	if _, err := os.Lstat(marker); err == nil {
		t.Fatal("the reload-pending file is left after the reload passed")
	}
	if res := NewRenderer(nil, nil, nil).Pass(context.Background(), set, snap); len(res.Failures) != 0 || g.reloads(t) != 1 {
		t.Fatalf("a start with nothing pending reloaded: %+v, %d reloads", res, g.reloads(t))
	}

	// The stop came after the install: the file is there, unreloaded.
	writeFile(t, g.dir, filepath.Base(marker), "")
	if res := NewRenderer(nil, nil, nil).Pass(context.Background(), set, snap); len(res.Failures) != 0 || g.reloads(t) != 2 {
		t.Fatalf("the next start: %+v, %d reloads; want the installed files reloaded", res, g.reloads(t))
	}
	if _, err := os.Lstat(marker); err == nil {
		t.Error("the reload-pending file is left after the pending reload passed")
	}

	// A pending reload that fails stays pending.
	failing := g.set(t, TemplateConfig{Reload: "exit 1"})
	writeFile(t, g.dir, filepath.Base(marker), "")
	if res := NewRenderer(nil, nil, nil).Pass(context.Background(), failing, snap); res.Worst() == nil || res.Worst().Step != StepReload {
		t.Fatalf("a failing pending reload: %+v", res)
	}
	if _, err := os.Lstat(marker); err != nil {
		t.Errorf("the reload-pending file went with a failed reload: %v", err)
	}
}

// A pass's own reload that fails takes the reload-pending file with it
// when the rollback leaves nothing unreloaded. A first deploy whose reload
// fails (the load balancer not running yet) keeps its checked file, which
// no reload has taken: its pending file stays, the next pass with nothing
// changed reloads it again (the loop's backoff spaces those passes), and
// once a reload passes, no more, and the pending file goes.
func TestFailedReloadIsNotLeftPending(t *testing.T) {
	t.Parallel()
	g := newGroup(t, "x\n")
	up := filepath.Join(g.dir, "up")
	set := g.set(t, TemplateConfig{Check: "grep -q x {{.Staged}}", Reload: "echo reload >> " + g.log + "; [ -e " + up + " ]"})
	if w := g.r.Pass(context.Background(), set, snapshot()).Worst(); w == nil || w.Step != StepReload {
		t.Fatalf("the first deploy: %v, want its reload failed", w)
	}
	if _, err := os.Lstat(pendingName(g.dest)); err != nil {
		t.Errorf("the kept file's reload-pending file went with the failed reload: %v", err)
	}
	for i := range 2 {
		if w := g.r.Pass(context.Background(), set, snapshot()).Worst(); w == nil || w.Step != StepReload || g.reloads(t) != i+2 {
			t.Fatalf("pass %d with nothing changed: %v, %d reloads; want the kept file's reload tried again, and failed", i+2, w, g.reloads(t))
		}
	}
	writeFile(t, g.dir, "up", "")
	for i := range 2 {
		if res := g.r.Pass(context.Background(), set, snapshot()); res.Failures != nil || g.reloads(t) != 4 {
			t.Fatalf("pass %d, the load balancer up: %+v, %d reloads; want one reload that passes, then none", i+4, res, g.reloads(t))
		}
	}
	if _, err := os.Lstat(pendingName(g.dest)); err == nil {
		t.Error("the reload-pending file is left after the reload passed")
	}

	// A reload whose rollback put the previous file back and reloaded
	// it leaves nothing pending.
	writeFile(t, g.dir, "t.tmpl", "y\n")
	changed := g.set(t, TemplateConfig{Check: "true", Reload: "echo reload >> " + g.log + "; grep -q x " + g.dest})
	if w := g.r.Pass(context.Background(), changed, snapshot()).Worst(); w == nil || w.Step != StepReload || g.reloads(t) != 6 {
		t.Fatalf("a change whose reload fails: %v, %d reloads; want it rolled back and reloaded", w, g.reloads(t))
	}
	if _, err := os.Lstat(pendingName(g.dest)); err == nil {
		t.Error("the reload-pending file is left after the rollback's reload passed")
	}
}

// A failed reload after a runtime API failure (Fallback, which Settle and
// the loop run) keeps its output to the log when a file of the group is
// not for every user, as the pass's reload does: /healthz and the status
// page have no login.
func TestFallbackReloadOutputHidden(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dest := filepath.Join(dir, "secret.conf")
	writeFile(t, dir, "secret.conf", "password hunter2;\n")
	if err := os.Chmod(dest, 0o600); err != nil {
		t.Fatal(err)
	}
	set := newSet(t, TemplateConfig{Destination: dest, Perms: "0600", ReloadGroup: "lb", Contents: "password x;\n",
		Reload: `echo "nginx: [emerg] unknown directive \"$(cat ` + dest + `)\""; exit 1`})
	r := NewRenderer(nil, nil, NewHealth())
	r.runtimes.fail(backgroundFailure{set.Groups[0].Name, dest, "haproxy", errors.New("drain failed")})
	fs := r.Fallback(context.Background(), set)
	if len(fs) != 1 || strings.Contains(fs[0].Err.Error(), "hunter2") || !strings.Contains(fs[0].Err.Error(), "not shown") {
		t.Errorf("the fallback's reload failure: %v; want its output not shown", fs)
	}
}

// The reload after a runtime API failure (Fallback) waits for another
// renderer's lock, as a pass does: it neither reloads while another
// renderer installs, nor removes the reload-pending file that renderer
// wrote, which may be its due reload.
func TestFallbackWaitsForAnotherRenderersLock(t *testing.T) {
	t.Parallel()
	g := newGroup(t, upstreams)
	set := g.set(t, TemplateConfig{Reload: "echo reload >> " + g.log})
	writeFile(t, g.dir, filepath.Base(g.dest), "before\n")
	other := holdLock(t, g.dest)
	writeFile(t, g.dir, filepath.Base(pendingName(g.dest)), "") // the other's
	g.r.runtimes.fail(backgroundFailure{set.Groups[0].Name, g.dest, "haproxy", errors.New("drain failed")})
	done := make(chan []Failure, 1)
	go func() { done <- g.r.Fallback(context.Background(), set) }()
	whileHeld(t, "the fallback", done, func() {
		if _, err := os.Lstat(pendingName(g.dest)); err != nil || g.reloads(t) != 0 {
			t.Fatalf("while another process held the lock: the pending file %v, %d reloads; want it there, no reload", err, g.reloads(t))
		}
	})
	other.Close()
	if fs := <-done; len(fs) != 0 || g.reloads(t) != 1 {
		t.Errorf("after the lock was released: %v, %d reloads; want one reload", fs, g.reloads(t))
	}
}

// A Fallback that cannot take the group's destination locks reloads
// nothing and fails at the reload, the step the installed files wait for
// (--once's exit 8), not at an install it had none of; the files stay due.
func TestFallbackLockFailureIsAReloadFailure(t *testing.T) {
	t.Parallel()
	g := newGroup(t, upstreams)
	set := g.set(t, TemplateConfig{Reload: "echo reload >> " + g.log})
	writeFile(t, g.dir, filepath.Base(g.dest), "before\n")
	if err := os.Symlink(filepath.Join(g.dir, "elsewhere"), lockName(g.dest)); err != nil {
		t.Fatal(err)
	}
	g.r.runtimes.fail(backgroundFailure{set.Groups[0].Name, g.dest, "haproxy", errors.New("drain failed")})
	fs := g.r.Fallback(context.Background(), set)
	if len(fs) != 1 || fs[0].Step != StepReload || g.reloads(t) != 0 {
		t.Fatalf("a fallback whose lock cannot be taken: %v, %d reloads; want one reload failure, no reload", fs, g.reloads(t))
	}
	if _, err := os.Lstat(pendingName(g.dest)); err != nil || !g.r.due(set.Groups[0]) {
		t.Errorf("the files are not left due a reload: %v", err)
	}
}

// whileHeld checks for 300 ms, while another process holds a lock, that
// what (a call reporting on done) has not ended, and that check passes.
func whileHeld[T any](t *testing.T, what string, done <-chan T, check func()) {
	t.Helper()
	for range 30 {
		time.Sleep(10 * time.Millisecond)
		select {
		case v := <-done:
			t.Fatalf("%s ended while another process held the lock: %+v", what, v)
		default:
		}
		check()
	}
}

// Two renderers on one destination whose directory create_dest_dirs
// makes take their passes in turn too. Before, neither locked a
// destination whose directory was not there yet: the first staged and
// checked its file, the second staged over it, and the first installed
// the second's, which the second's check then refused.
func TestPassLocksADestinationDirItMakes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dest := filepath.Join(dir, "sub", "out.conf")
	renderer := func(content, check string) (*Renderer, *Set) {
		src := writeFile(t, dir, content+".tmpl", content+"\n")
		return NewRenderer(nil, nil, nil), newSet(t, TemplateConfig{Source: src, Destination: dest, CreateDestDirs: true, Check: check})
	}
	first, firstSet := renderer("good", "sleep 0.5")
	second, secondSet := renderer("bad", "sleep 1; exit 1")
	snap := snapshot(svc("web-1", []string{"www"}, map[string]string{"ip": "10.0.0.1"}))
	done := make(chan PassResult, 1)
	go func() { done <- first.Pass(context.Background(), firstSet, snap) }()
	waitFor(t, "the first renderer's staged file", func() bool {
		_, err := os.Stat(stagedName(dest))
		return err == nil
	})
	res := second.Pass(context.Background(), secondSet, snap)
	if w := res.Worst(); w == nil || w.Step != StepCheck {
		t.Errorf("the second renderer's pass: %v; want its check failed", w)
	}
	if res := <-done; len(res.Failures) != 0 || res.Installed != 1 {
		t.Errorf("the first renderer's pass: %+v", res)
	}
	if got := readFile(t, dest); got != "good\n" {
		t.Errorf("installed %q; want the first renderer's checked file", got)
	}
}
