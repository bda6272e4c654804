package render

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/svcreg/svcreg/render/runtime"
)

// A group renamed (or removed) by a reload of the config is gone from
// /healthz and /readyz: its last pass, which failed, no longer holds
// /readyz at failing.
func TestRenamedGroupLeavesHealth(t *testing.T) {
	t.Parallel()
	g := newGroup(t, `{{len services}}`)
	set := g.set(t, TemplateConfig{ReloadGroup: "old", Check: "exit 1"})
	src, sets := startLoop(t, g, set)
	src.Put(counting(1))
	waitFor(t, "the failed check", func() bool {
		return slices.Equal(g.r.Health.Report(0).Failing, []string{"old"})
	})
	sets <- g.set(t, TemplateConfig{ReloadGroup: "new"})
	waitFor(t, "the new group's install", func() bool { return contents(g.dest) == "1" })
	rep := g.r.Health.Report(0)
	if len(rep.Failing) != 0 {
		t.Errorf("failing %v after the failing group was renamed; want none", rep.Failing)
	}
	if _, ok := rep.Groups["old"]; ok {
		t.Errorf("/healthz still reports the group that is gone: %v", rep.Groups["old"])
	}
}

// A group renamed by a reload of the config keeps its
// min_reload_interval: its next reload waits for the interval since the
// last one under its old name.
func TestRenamedGroupKeepsMinReloadInterval(t *testing.T) {
	t.Parallel()
	g := newGroup(t, `{{len services}}`)
	reload := "echo reload >> " + g.log
	set := g.set(t, TemplateConfig{ReloadGroup: "old", Reload: reload, MinReloadInterval: Duration(time.Hour)})
	src, sets := startLoop(t, g, set)
	src.Put(counting(1))
	waitFor(t, "the first reload", func() bool { return g.reloads(t) == 1 })
	writeFile(t, g.dir, "t.tmpl", `new {{len services}}`)
	sets <- g.set(t, TemplateConfig{ReloadGroup: "new", Reload: reload, MinReloadInterval: Duration(time.Hour)})
	waitFor(t, "the renamed group's render", func() bool {
		rep := g.r.Health.Report(0)
		return rep.Groups["new"] != nil && rep.Groups["new"].Render != nil
	})
	time.Sleep(100 * time.Millisecond)
	if n := g.reloads(t); n != 1 {
		t.Errorf("%d reloads; want 1: the renamed group reloaded within its min_reload_interval", n)
	}
}

// backgroundAdapter is an adapter with background work, which counts its
// resets.
type backgroundAdapter struct{ resets int }

func (a *backgroundAdapter) Plan(installed, rendered []byte) (runtime.Plan, error) {
	return nil, runtime.Reloadf("not planned here")
}
func (a *backgroundAdapter) Reset() { a.resets++ }

// The background work (a drain) of a runtime file whose reload group a
// reload of the config renamed is the renamed group's: its reload resets
// it, as it does its own, rather than leave it to act on the new process,
// and its failure reloads the renamed group. Before, both went by the
// old name: the work was not reset, and its failure was dropped as a
// group's that is gone.
func TestRenamedGroupTakesItsFilesBackgroundWork(t *testing.T) {
	t.Parallel()
	g := newGroup(t, "a\n")
	writeFile(t, g.dir, "out.conf", "a\n")
	set := newSet(t, TemplateConfig{Source: g.src, Destination: g.dest, ReloadGroup: "new", Reload: "echo reload >> " + g.log})
	a := &backgroundAdapter{}
	g.r.runtimes.adapters[strings.Join([]string{"old", g.dest, "haproxy", "/run/haproxy.sock", "0s"}, "\x00")] = a
	g.r.runtimes.reset(set.Groups[0])
	if a.resets != 1 {
		t.Errorf("the old name's background work was reset %d times by the renamed group's reload; want 1", a.resets)
	}
	g.r.runtimes.fail(backgroundFailure{"old", g.dest, "haproxy", errors.New("drain failed")})
	if fs := g.r.Fallback(context.Background(), set); fs != nil || g.reloads(t) != 1 {
		t.Errorf("after the old name's background work failed: %v, %d reloads; want the renamed group reloaded once", fs, g.reloads(t))
	}
}

// A destination a reload of the config removes (or renames) leaves no
// lock file of svcreg's behind, unless another process holds it; the
// destination itself stays.
func TestRemovedDestinationLeavesNoLockFile(t *testing.T) {
	t.Parallel()
	g := newGroup(t, `{{len services}}`)
	held := filepath.Join(g.dir, "held.conf")
	set := newSet(t, TemplateConfig{Source: g.src, Destination: g.dest}, TemplateConfig{Source: g.src, Destination: held})
	src, sets := startLoop(t, g, set)
	src.Put(counting(1))
	waitFor(t, "the first install", func() bool { return contents(g.dest) == "1" && contents(held) == "1" })
	other := holdLock(t, held)
	defer other.Close()
	moved := filepath.Join(g.dir, "moved.conf")
	sets <- newSet(t, TemplateConfig{Source: g.src, Destination: moved})
	waitFor(t, "the new destination's install", func() bool { return contents(moved) == "1" })
	if _, err := os.Lstat(lockName(g.dest)); err == nil {
		t.Errorf("the lock file of the removed destination %s is left behind", g.dest)
	}
	if _, err := os.Lstat(lockName(held)); err != nil {
		t.Errorf("the lock file another process holds was removed: %v", err)
	}
	if contents(g.dest) != "1" {
		t.Errorf("the removed destination's file went")
	}
}
