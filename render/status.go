package render

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/svcreg/svcreg/watcher"
)

// StatusWindow is how far back Status keeps renders, installs and reloads.
const StatusWindow = time.Hour

// maxStatusDiff bounds the diff kept of a group's last install.
const maxStatusDiff = 64 << 10

// A diff for the status page is computed on every install, so its cost is
// bounded: files larger than statusDiffBytes together, or changes of more
// than statusDiffEdits lines, are summarised instead (the diff's memory
// grows with the square of the edits).
const (
	statusDiffBytes = 4 << 20
	statusDiffEdits = 400
)

// statusDiff is a unified diff from a to b, or a one-line summary when
// that would cost too much.
func statusDiff(a, b []byte) string {
	const tooLarge = "too large a change to show"
	if len(a)+len(b) > statusDiffBytes {
		return diffSummary(a, b, tooLarge)
	}
	ops, ok := lineEdits(splitLines(string(a)), splitLines(string(b)), statusDiffEdits)
	if !ok {
		return diffSummary(a, b, tooLarge)
	}
	return formatHunks(ops, 3)
}

// diffSummary is a change from a to b as line and byte counts, and why
// it is not shown.
func diffSummary(a, b []byte, why string) string {
	return fmt.Sprintf("@@ %d lines, %d bytes -> %d lines, %d bytes @@ (%s)\n",
		bytes.Count(a, []byte("\n")), len(a), bytes.Count(b, []byte("\n")), len(b), why)
}

// Status collects what the status page shows beyond Health: each template's
// last render and install, the diff of each group's last installed change,
// the size of the snapshot rendered last, and the times of the last hour's
// renders, installs (with their event-to-install latency) and reloads.
// The render loop feeds it; the page reads it concurrently. A nil *Status
// records nothing.
type Status struct {
	mu       sync.Mutex
	now      func() time.Time
	groups   map[string]*groupStatus
	order    []string
	renders  []time.Time
	installs []InstallSample
	services int
	values   int
}

type groupStatus struct {
	templates map[string]*TemplateStatus // by destination
	diff      string
	diffAt    time.Time
	reloads   []time.Time
}

// TemplateStatus is one template's last render and install.
type TemplateStatus struct {
	Name        string
	Destination string
	RenderedAt  time.Time
	Bytes       int
	InstalledAt time.Time
}

// InstallSample is one group's install and how long after the registry
// change it reflects it happened (zero when that is not known).
type InstallSample struct {
	At      time.Time
	Group   string
	Latency time.Duration
}

// GroupStatus is one reload group as the status page shows it.
type GroupStatus struct {
	Name      string
	Templates []TemplateStatus
	// Diff is a unified diff of the group's last installed change, per
	// file; DiffAt is when it was installed.
	Diff    string
	DiffAt  time.Time
	Reloads int // in the last StatusWindow
}

// StatusReport is a copy of a Status at one moment.
type StatusReport struct {
	At       time.Time
	Groups   []GroupStatus
	Renders  []time.Time     // in the last StatusWindow, oldest first
	Installs []InstallSample // in the last StatusWindow, oldest first
	// Services and ConfigValues count the snapshot rendered last.
	Services, ConfigValues int
}

// NewStatus returns an empty Status.
func NewStatus() *Status {
	return &Status{now: time.Now, groups: map[string]*groupStatus{}}
}

// group returns a group's status, made on first use; s.mu must be held.
func (s *Status) group(name string) *groupStatus {
	g := s.groups[name]
	if g == nil {
		g = &groupStatus{templates: map[string]*TemplateStatus{}}
		s.groups[name] = g
		s.order = append(s.order, name)
	}
	return g
}

func (g *groupStatus) template(t *Template) *TemplateStatus {
	ts := g.templates[t.Destination]
	if ts == nil {
		ts = &TemplateStatus{Name: t.Name(), Destination: t.Destination}
		g.templates[t.Destination] = ts
	}
	return ts
}

// keep forgets the groups that are not set's, and the templates no
// longer in their group, as Health.keep does.
func (s *Status) keep(set *Set) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	dests := set.templatesBy(func(t *Template) string { return t.Destination })
	s.order = slices.DeleteFunc(s.order, func(name string) bool {
		d, ok := dests[name]
		if !ok {
			delete(s.groups, name)
			return true
		}
		for dest := range s.groups[name].templates {
			if !d[dest] {
				delete(s.groups[name].templates, dest)
			}
		}
		return false
	})
}

// rendered records a group's successful render of snap.
func (s *Status) rendered(group string, files []*file, snap *watcher.Snapshot, at time.Time) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.group(group)
	for _, f := range files {
		ts := g.template(f.t)
		ts.RenderedAt, ts.Bytes = at, len(f.out)
	}
	s.renders = append(prune(s.renders, at), at)
	s.services, s.values = len(snap.Services()), len(snap.ConfigValues(""))
}

// installed records a group's install of its changed files; changedAt is
// when the snapshot they reflect last changed (zero if unknown).
func (s *Status) installed(group string, files []*file, changedAt, at time.Time) {
	if s == nil {
		return
	}
	var diff strings.Builder
	for _, f := range files {
		if !f.changed {
			continue
		}
		diff.WriteString("--- " + f.t.Destination + "\n+++ " + f.t.Destination + "\n")
		// Not shown where the file installed, as it is now (file.private),
		// or the one it replaced was not for every user to read: a
		// perms = "0600" taken out of the config shows the old file's
		// lines otherwise.
		mode := f.mode
		if !privateMode(mode) && f.info != nil {
			mode = f.info.Mode()
		}
		if privateMode(mode) || closedDir(f.t.Destination) {
			diff.WriteString(diffSummary(f.old, f.out, privateWhy(f.t.Destination, mode)+": not shown"))
			continue
		}
		diff.WriteString(statusDiff(f.old, f.out))
	}
	d := diff.String()
	if len(d) > maxStatusDiff {
		d = strings.ToValidUTF8(d[:maxStatusDiff], "") + "\n[diff cut at 64 KiB]\n"
	}
	var latency time.Duration
	if !changedAt.IsZero() {
		latency = at.Sub(changedAt)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.group(group)
	for _, f := range files {
		if f.changed {
			g.template(f.t).InstalledAt = at
		}
	}
	g.diff, g.diffAt = d, at
	i := 0
	for i < len(s.installs) && at.Sub(s.installs[i].At) > StatusWindow {
		i++
	}
	s.installs = append(s.installs[i:], InstallSample{At: at, Group: group, Latency: latency})
}

// reloaded records a run of a group's reload command.
func (s *Status) reloaded(group string, at time.Time) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.group(group)
	g.reloads = append(prune(g.reloads, at), at)
}

// prune drops the times older than StatusWindow before now.
func prune(ts []time.Time, now time.Time) []time.Time {
	i := 0
	for i < len(ts) && now.Sub(ts[i]) > StatusWindow {
		i++
	}
	return ts[i:]
}

// Report returns a copy of the status, groups in the order first seen.
func (s *Status) Report() StatusReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	r := StatusReport{At: now, Services: s.services, ConfigValues: s.values,
		Renders: slices.Clone(prune(s.renders, now))}
	for _, in := range s.installs {
		if now.Sub(in.At) <= StatusWindow {
			r.Installs = append(r.Installs, in)
		}
	}
	for _, name := range s.order {
		g := s.groups[name]
		gs := GroupStatus{Name: name, Diff: g.diff, DiffAt: g.diffAt, Reloads: len(prune(g.reloads, now))}
		for _, t := range g.templates {
			gs.Templates = append(gs.Templates, *t)
		}
		slices.SortFunc(gs.Templates, func(a, b TemplateStatus) int { return strings.Compare(a.Destination, b.Destination) })
		r.Groups = append(r.Groups, gs)
	}
	return r
}
