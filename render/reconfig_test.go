package render

import (
	"slices"
	"testing"
	"time"
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
