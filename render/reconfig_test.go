package render

import (
	"slices"
	"testing"
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
