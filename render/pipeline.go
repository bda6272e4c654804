package render

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/svcreg/svcreg/internal/fsperm"
	"github.com/svcreg/svcreg/internal/retry"
	"github.com/svcreg/svcreg/watcher"
)

// Failure is one group's failed step.
type Failure struct {
	Group string
	Step  Step
	Err   error
}

func (f Failure) Error() string { return fmt.Sprintf("%s %s: %v", f.Step, f.Group, f.Err) }

func (f Failure) Unwrap() error { return f.Err }

// PassResult is what a pass did.
type PassResult struct {
	// Installed counts the groups whose files were installed.
	Installed int
	Failures  []Failure
	// RetryAt, when not zero, is when a group held back by its
	// min_reload_interval may go ahead, or when an output whose check
	// failed is checked again; run another pass then.
	RetryAt time.Time
	// Stopped: the pass's context ended before a group's change went
	// through (while it waited for its splay or for the changes applied
	// ahead of it); that change was not installed.
	Stopped bool
}

// Worst returns the failure of the latest step, or nil.
func (r PassResult) Worst() *Failure {
	var w *Failure
	for i := range r.Failures {
		if w == nil || r.Failures[i].Step > w.Step {
			w = &r.Failures[i]
		}
	}
	return w
}

// Renderer runs passes. It is used by one goroutine at a time (the render
// loop); Health may be read concurrently.
type Renderer struct {
	Log     *slog.Logger
	Metrics *Metrics
	Health  *Health
	// Status, if set, collects what the status page shows.
	Status *Status
	// Dry prints what would change to DryOut and writes and runs nothing.
	Dry    bool
	DryOut io.Writer
	// NoReload installs checked files but runs no reload command: for a
	// first deploy, before the load balancer runs.
	NoReload bool
	// Child, with --exec, is the command that groups with a reload_signal
	// reload by signalling.
	Child *Exec
	// StateDir, if set, is the directory where the spelling endpointsBy
	// kept of each name that differs only in case is saved once a
	// group has rendered, before its files go live, one file a
	// destination, and read at a template's first render, so that a
	// Renderer started anew keeps it too. Print reads it; Dry
	// does not write it. Empty: it is remembered in memory only.
	StateDir string

	now        func() time.Time
	lastReload map[string]time.Time // by group
	// reloadDue are the groups whose installed files no reload has taken
	// since a reload of them failed (see rollBack): a pass with nothing
	// to change reloads them.
	reloadDue map[string]bool
	// duePending are the groups of reloadDue whose reload-pending files
	// say so (see lookForPending).
	duePending map[string]bool
	// execWait spaces the passes that wait for the --exec command to
	// start before a due reload (reloadDueFiles).
	execWait     retry.Backoff
	splayDelay   func(max time.Duration) time.Duration
	runtimes     runtimes
	hadFile      destinations
	stateFiles   stateFiles
	failedChecks failedChecks
	locks        destLocks
}

// stopped is what passGroup answers for a group whose change a stop cut
// short before it went through (while it waited for its splay or for the
// changes applied ahead of it): no outcome, not a failure
// (PassResult.Stopped).
var stopped = &Failure{Err: context.Canceled}

// destinations are those a Renderer found a file at or installed one at.
// min_instances keeps such a file, and keeps guarding it once it is
// deleted: only a destination that never had one (a first deploy) gets a
// render that min_instances refused. A path is known by one spelling
// (filepath.Clean), so a config read again with conf.d/./a.conf for
// conf.d/a.conf finds it.
type destinations struct {
	mu sync.Mutex
	m  map[string]bool
}

func (d *destinations) set(path string, had bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = map[string]bool{}
	}
	if had {
		d.m[filepath.Clean(path)] = true
	} else {
		delete(d.m, filepath.Clean(path))
	}
}

func (d *destinations) had(path string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.m[filepath.Clean(path)]
}

// NewRenderer returns a Renderer; nil fields get working defaults.
func NewRenderer(log *slog.Logger, m *Metrics, h *Health) *Renderer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	if h == nil {
		h = NewHealth()
	}
	return &Renderer{Log: log, Metrics: m, Health: h, DryOut: os.Stdout, now: time.Now, lastReload: map[string]time.Time{}, reloadDue: map[string]bool{}, duePending: map[string]bool{}, runtimes: newRuntimes(),
		execWait: retry.Backoff{Min: time.Second, Max: time.Minute}}
}

// switchSet carries what the Renderer keeps by group over from old to
// next, a reload of the configuration: a group of next that shares a
// destination with groups of old (renamed, or made of theirs), or their
// name, keeps the latest of their reload times, so that min_reload_interval still holds;
// the groups next has no more are forgotten, and what /healthz and the
// status page say of them goes, as do the lock files of the destinations
// it has no more.
func (r *Renderer) switchSet(old, next *Set) {
	last := map[string]time.Time{} // by destination
	due := map[string]bool{}       // by destination
	for _, g := range old.Groups {
		at, ok := r.lastReload[g.Name]
		for _, t := range g.Templates {
			if ok {
				last[t.Destination] = at
			}
			if r.reloadDue[g.Name] {
				due[t.Destination] = true
			}
		}
	}
	reloaded, stillDue := map[string]time.Time{}, map[string]bool{}
	for _, g := range next.Groups {
		if at, ok := r.lastReload[g.Name]; ok {
			reloaded[g.Name] = at
		}
		for _, t := range g.Templates {
			if at, ok := last[t.Destination]; ok && at.After(reloaded[g.Name]) {
				reloaded[g.Name] = at
			}
			if due[t.Destination] {
				stillDue[g.Name] = true
			}
		}
	}
	r.lastReload, r.reloadDue = reloaded, stillDue
	// A renamed group's pending files are taken for another renderer's
	// until it writes them itself: reloaded once more rather than not at
	// all.
	maps.DeleteFunc(r.duePending, func(name string, _ bool) bool { return !stillDue[name] })
	r.runtimes.carryLooked(old, next)
	r.Health.keep(next)
	r.Status.keep(next)
	// The lock files of the destinations next has no more would stay for
	// ever; their files stay, as the load balancer may still include
	// them, and so do their reload-pending files, which may be another
	// renderer's due reload. Dry writes (and removes) nothing.
	if r.Dry {
		return
	}
	kept := map[string]bool{}
	for _, g := range next.Groups {
		for _, t := range g.Templates {
			kept[t.Destination] = true
		}
	}
	for _, g := range old.Groups {
		for _, t := range g.Templates {
			if !kept[t.Destination] {
				forgetDestination(t.Destination)
			}
		}
	}
}

// Pass renders every template of set on snap and, for each group whose
// output changed, stages, checks, installs and reloads it. It never installs
// from an unsynced snapshot.
func (r *Renderer) Pass(ctx context.Context, set *Set, snap *watcher.Snapshot) (res PassResult) {
	if snap == nil || !snap.Synced {
		return res
	}
	start := time.Now()
	for _, g := range set.Groups {
		installed, retryAt, f := r.passGroup(ctx, g, snap)
		if f == stopped {
			res.Stopped = true // no outcome: the change did not go through
			continue
		}
		if f != nil || retryAt.IsZero() { // a group held back has no outcome yet
			r.Health.passed(g.Name, f, r.now())
		}
		if installed {
			res.Installed++
		}
		if f != nil {
			res.Failures = append(res.Failures, *f)
		}
		if !retryAt.IsZero() && (res.RetryAt.IsZero() || retryAt.Before(res.RetryAt)) {
			res.RetryAt = retryAt
		}
	}
	r.Metrics.passSeconds.Observe(time.Since(start).Seconds())
	return res
}

// file is one template's output in a pass.
type file struct {
	t        *Template
	out      []byte
	old      []byte
	existed  bool
	link     string // the destination was a symbolic link to this (see readInstalled)
	dangling bool   // that link's target does not exist
	info     fs.FileInfo
	changed  bool
	mode     os.FileMode
	owner    fileOwner
	staged   string
	replaced bool // installed over the old content
	// hadFile is whether the Renderer knew the destination to have had a
	// file before this install (see destinations): a restore that removes
	// the new file puts that back.
	hadFile bool
}

// passGroup takes one group through the steps of a pass: render, then,
// when the output changed, stage, check, install and reload. A step that
// fails ends the group's pass. A change its runtime APIs can make is
// applied and handed to the group's checker, which checks and installs it
// after the pass (ahead.go).
func (r *Renderer) passGroup(ctx context.Context, g *Group, snap *watcher.Snapshot) (installed bool, retryAt time.Time, _ *Failure) {
	// Another renderer on the same destinations takes its pass first;
	// the installed files are read after it.
	if !r.Dry {
		release, f := r.lockGroup(ctx, g)
		if f == stopped {
			return false, time.Time{}, stopped
		}
		if f != nil {
			return false, time.Time{}, r.failed(f)
		}
		defer release()
	}
	// The files applied ahead of their check are what the live state is,
	// and what a change applies on: they stay so while the pass renders
	// and applies.
	ah := r.ahead(g)
	ah.mu.Lock()
	unlock := sync.OnceFunc(ah.mu.Unlock)
	defer unlock()
	if !r.Dry {
		r.lookForPending(g)
	}
	files, f := r.renderGroup(ctx, g, snap, ah.applied)
	if f != nil {
		f = r.failed(f)
		if r.due(g) && ah.applied == nil && ctx.Err() == nil {
			// The installed files go live whatever the registry's data
			// renders to now (unless stopping: a stop waits for no
			// reload of its own). A reload that fails too is the pass's
			// failure, the later step (--once's exit 8): the load
			// balancer is without the installed files. Both are logged.
			retryAt, rf := r.reloadDueFiles(ctx, g)
			return false, retryAt, cmp.Or(rf, f)
		}
		return false, time.Time{}, f
	}
	r.Health.stepOK(g.Name, StepRender, r.now())
	r.Status.rendered(g.Name, files, snap, r.now())
	// Saved before the files go live: a crash once they have must not
	// leave the next start to choose the spellings again.
	r.saveSpellings(g.Templates)
	if !slices.ContainsFunc(files, func(f *file) bool { return f.changed }) {
		ah.checkFirst = false // nothing left of the change that failed
		if r.due(g) && ah.applied == nil {
			retryAt, f := r.reloadDueFiles(ctx, g)
			return false, retryAt, f
		}
		r.reconcileRuntime(ctx, g, files)
		return false, time.Time{}, nil
	}
	// A change a runtime API can make is applied without a reload, before
	// the check: the new servers take requests at once, and a failed
	// check or install reverts the live state to the installed file.
	rt := r.planRuntime(g, files)
	if r.due(g) {
		// The installed files are not live: a reload makes them so,
		// with the change.
		rt = nil
	}
	if rt.applies() {
		// The files it does not change must be live as installed too;
		// a reload would make them so.
		r.reconcileRuntime(ctx, g, files)
	}
	if r.Dry {
		r.printDry(files)
		rt.printDry(r.DryOut)
		return false, time.Time{}, nil
	}
	// After a change applied ahead failed its check or install, the next
	// one is checked and installed first, then applied.
	var afterInstall *runtimePass
	if ah.checkFirst && rt.applies() {
		r.Log.Info("the last change applied through the runtime API failed its check or install: checking this one before it goes live", "group", g.Name)
		afterInstall, rt = rt, nil
	}
	if next, held := r.heldBack(g, cmp.Or(afterInstall, rt)); held {
		return false, next, nil
	}
	// The splay spreads a fleet's reloads; a change applied through a
	// runtime API reloads nothing, and is not held back.
	if afterInstall == nil && !rt.applies() {
		if err := r.splay(ctx, g); err != nil {
			return false, time.Time{}, stopped
		}
	}
	applied := !r.NoReload && r.applyRuntime(ctx, g, rt)
	if applied {
		r.observeSince(r.Metrics.eventToLive.WithLabelValues("runtime"), snap.ChangedAt)
		r.handAhead(ctx, g, ah, rt, files, snap)
		return false, time.Time{}, nil
	}
	// The change reloads: it comes after the changes applied before it,
	// on the files installed for them.
	failedApply := len(rt.tried()) > 0
	unlock()
	if r.waitAhead(ctx, g) {
		if ctx.Err() != nil {
			return false, time.Time{}, stopped
		}
		for _, fl := range files {
			if f := readInstalled(g, fl); f != nil {
				return false, time.Time{}, r.failed(f)
			}
		}
		if !failedApply && !slices.ContainsFunc(files, func(f *file) bool { return f.changed }) {
			return false, time.Time{}, nil
		}
	}

	// The output whose check just failed is not checked (nor its failure
	// logged) again before its backoff.
	if prev, next, same := r.failedChecks.unchanged(g, files, r.now()); same && !failedApply {
		r.Log.Debug("the output whose check failed is unchanged: checked again after its backoff", "group", g.Name, "at", next)
		return false, next, prev
	}
	defer removeStaged(files)
	f = stage(g, files)
	if f == nil {
		f = r.check(ctx, g, files)
		if f != nil && stoppedBy(ctx, f.Err) {
			// A stop cut the check short: no outcome, nothing installed.
			r.Log.Info("stopped during the check: nothing installed", "group", g.Name)
			if failedApply && !r.NoReload && g.reloads() {
				// The live state is what the failed apply left: the
				// installed files go live again (a stop waits for one
				// reload).
				r.reloadAgain(ctx, g)
			}
			return false, time.Time{}, stopped
		}
		r.failedChecks.checked(g, files, f, r.now())
	}
	marked := false
	if f == nil && !r.NoReload && g.reloads() {
		if err := markPending(files); err != nil {
			f = &Failure{g.Name, StepInstall, err}
		}
		marked = f == nil
	}
	if f == nil {
		f = r.installStaged(g, files)
	}
	if f != nil {
		if (failedApply || r.due(g) && !r.Child.waiting()) && !r.NoReload && g.reloads() {
			// The live state is what the failed apply left, or files no
			// reload took since one failed: the installed files are
			// reloaded (the pass's one reload).
			r.reloadAgain(ctx, g)
		}
		if marked && !r.due(g) {
			// Nothing left to reload: the files were put back.
			r.clearPending(g)
		}
		return false, time.Time{}, r.failed(f)
	}
	for _, fl := range files {
		r.hadFile.set(fl.t.Destination, true)
	}
	r.Health.stepOK(g.Name, StepInstall, r.now())
	r.Status.installed(g.Name, files, snap.ChangedAt, r.now())
	r.observeSince(r.Metrics.eventToInstall, snap.ChangedAt)
	ah.mu.Lock()
	ah.checkFirst = false
	ah.mu.Unlock()
	if !r.NoReload && r.applyRuntime(ctx, g, afterInstall) {
		r.observeSince(r.Metrics.eventToLive.WithLabelValues("runtime"), snap.ChangedAt)
		if !r.due(g) {
			r.clearPending(g)
		}
		return true, time.Time{}, nil
	}
	// Otherwise it reloads; so too when a runtime API failed to take the
	// live state to the installed files. Its outcome is known either way:
	// a failed reload put the previous files back (and reloaded them), or
	// left the new ones as the load balancer had nothing before (a first
	// deploy), and the next pass goes on from there.
	f = r.reloadGroup(ctx, g, files, snap.ChangedAt)
	if !r.due(g) && (f != nil || r.NoReload || !g.reloads()) {
		// Put back, or nothing reloads them (a reload that passed took
		// them with notDue); files left unreloaded stay due, their
		// reload-pending files with them.
		r.clearPending(g)
	}
	if f != nil {
		return false, time.Time{}, r.failed(f)
	}
	return true, time.Time{}, nil
}

// lookForPending compares, under g's lock, its reload-pending files with
// what this Renderer knows. One it did not leave (a stop between an
// install and the end of its reload, or a reload that failed and none
// passed since, this renderer's before a restart or another's) makes the
// installed files due: the group's pass reloads them, with its change if
// any, as after a failed reload. Where this Renderer wrote them for a due
// reload and they are gone, another renderer's reload took the files: not
// due any more. Without a reload to run (--no-reload, a group without
// one), they are left for a renderer that reloads.
func (r *Renderer) lookForPending(g *Group) {
	if r.NoReload || !g.reloads() || r.reloadDue[g.Name] && !r.duePending[g.Name] {
		return // nothing to find: no reload to run, or due with no files of its own to miss
	}
	pending := reloadPending(g)
	switch {
	case !r.reloadDue[g.Name] && pending:
		r.Log.Warn("no reload has taken the installed files since they were installed (their reload failed, or svcreg stopped before it ended): they are due one", "group", g.Name)
		r.reloadDue[g.Name] = true
		r.duePending[g.Name] = true
	case r.reloadDue[g.Name] && r.duePending[g.Name] && !pending:
		r.Log.Info("another renderer's reload took the installed files: their reload is not due any more", "group", g.Name)
		delete(r.reloadDue, g.Name)
		delete(r.duePending, g.Name)
	}
}

// reloadInstalled reloads g's installed files, saying why (msg), as
// nothing to restore; it returns the failure, reported.
func (r *Renderer) reloadInstalled(ctx context.Context, g *Group, msg string) *Failure {
	r.Log.Warn(msg, "group", g.Name)
	if f := r.reloadGroup(ctx, g, nil, time.Time{}); f != nil {
		return r.failed(f)
	}
	return nil
}

// due reports whether g's installed files wait for a reload (reloadDue);
// never in a dry run, which reloads nothing.
func (r *Renderer) due(g *Group) bool { return r.reloadDue[g.Name] && !r.Dry }

// markDue notes that g's installed files may not be live: a reload of
// them failed. A reload-pending file next to each of them says so to the
// next start, which reloads them too, as it does after a stop between an
// install and its reload.
func (r *Renderer) markDue(g *Group) {
	r.reloadDue[g.Name] = true
	if r.Dry {
		return
	}
	var failed error
	for _, t := range g.Templates {
		if err := touchPending(t.Destination); err != nil && failed == nil {
			failed = err
		}
	}
	if failed != nil {
		r.Log.Warn("cannot write the reload-pending file: a start before a reload passes may not reload the installed files", "group", g.Name, "err", failed)
	}
	// Written, they say whether another renderer's reload took the
	// files since (lookForPending).
	r.duePending[g.Name] = failed == nil
}

// notDue notes that g's installed files are live (a reload took them) or
// that nothing reloads them; their reload-pending files go.
func (r *Renderer) notDue(g *Group) {
	delete(r.reloadDue, g.Name)
	delete(r.duePending, g.Name)
	if !r.Dry {
		r.clearPending(g)
	}
}

// reloadDueFiles reloads g's installed files, which no reload has taken
// since one failed (reloadDue), in a pass with nothing to change (or
// whose render failed); not
// sooner than min_reload_interval after the last reload (the pass says
// when to come back). A reload that fails stays due.
func (r *Renderer) reloadDueFiles(ctx context.Context, g *Group) (retryAt time.Time, _ *Failure) {
	if r.NoReload || !g.reloads() {
		r.notDue(g)
		return time.Time{}, nil
	}
	if r.Child.waiting() {
		if g.ReloadSignal != 0 {
			// The --exec command has not started (or is stopping): it
			// reads the installed files when it starts.
			r.notDue(g)
			return time.Time{}, nil
		}
		// A load balancer of its own, reloaded by a command: after the
		// --exec command has started, which waits for a pass without a
		// failure; looked for again at a backoff (1 s to 1 min), so
		// that another group's failures do not make a pass a second.
		return r.now().Add(r.execWait.Next()), nil
	}
	r.execWait.Reset()
	if next, held := r.heldBack(g, nil); held {
		return next, nil
	}
	return time.Time{}, r.reloadInstalled(ctx, g, "the installed files were not taken by a reload since one failed: reloading them")
}

// observeSince records the time since the watcher applied a change (at;
// zero when no change is known, and nothing is recorded).
func (r *Renderer) observeSince(o prometheus.Observer, at time.Time) {
	if !at.IsZero() {
		o.Observe(r.now().Sub(at).Seconds())
	}
}

// failed reports a group's failed step: in its health and in the log.
func (r *Renderer) failed(f *Failure) *Failure {
	r.Health.stepFailed(*f, r.now())
	r.Log.Error("template group failed", "group", f.Group, "step", f.Step.String(), "err", f.Err)
	return f
}

// renderGroup is the render step: it renders every template of g, reads
// the file each would replace, and says which changed. With applied
// (files applied ahead of their check), a change is one from them.
func (r *Renderer) renderGroup(ctx context.Context, g *Group, snap *watcher.Snapshot, applied []*file) ([]*file, *Failure) {
	files := make([]*file, len(g.Templates))
	// The warnings for renders installed despite min_instances wait for
	// the whole group: another file's guard may still keep it from going on.
	var unguarded []func()
	for i, t := range g.Templates {
		// A failure ends the pass before the later files are read:
		// they are still noted as there for min_instances.
		fail := func(f *Failure) ([]*file, *Failure) {
			r.noteFiles(g, g.Templates[i+1:])
			return nil, f
		}
		out, err := r.render(ctx, g, t, snap)
		files[i] = &file{t: t, out: out}
		var guard *GuardError
		if err != nil && !errors.As(err, &guard) {
			return fail(&Failure{g.Name, StepRender, err})
		}
		if f := readInstalled(g, files[i]); f != nil {
			return fail(f)
		}
		if files[i].keeps() {
			r.hadFile.set(t.Destination, true)
		}
		if guard != nil {
			// min_instances keeps an existing file from being emptied.
			// With none to keep (a first deploy, before any service has
			// registered), the render is installed: the load balancer
			// whose config includes the file could not start without it.
			switch {
			case files[i].keeps() || applied != nil:
				return fail(&Failure{g.Name, StepRender, fmt.Errorf("%w; keeping the old file %s", guard, t.Destination)})
			case r.hadFile.had(t.Destination):
				return fail(&Failure{g.Name, StepRender, fmt.Errorf("%w; %s, installed before, was deleted since: not installing this render in its place", guard, t.Destination)})
			}
			what := "installing this render anyway"
			if r.Dry {
				what = "it would be installed anyway"
			}
			none := "the destination does not exist yet"
			if files[i].dangling {
				none = "the destination is a symbolic link to a file that does not exist (" + strconv.Quote(files[i].link) + ")"
			}
			unguarded = append(unguarded, func() {
				if guard.spellings != nil {
					t.spellings.Store(guard.spellings)
				}
				r.Log.Warn("min_instances refused the render, but "+none+", so there is no old file to keep: "+what,
					"template", t.Name(), "group", g.Name, "destination", t.Destination, "err", guard)
			})
		}
		if applied != nil {
			files[i].old = applied[i].out
			files[i].changed = !bytes.Equal(files[i].old, out)
		}
	}
	// Each guarded render installed anyway keeps its spellings, once the
	// whole group goes on.
	for _, warn := range unguarded {
		warn()
	}
	return files, nil
}

// noteFiles notes, for min_instances, which of g's templates ts have a
// destination that holds a file or a link to one (file.keeps), as a
// pass that reads them does.
func (r *Renderer) noteFiles(g *Group, ts []*Template) {
	for _, t := range ts {
		if f := (&file{t: t}); readInstalled(g, f) == nil && f.keeps() {
			r.hadFile.set(t.Destination, true)
		}
	}
}

// readInstalled reads the file f would replace, and says whether f
// changes it. A destination that is a symbolic link is not followed: its
// target is neither read (into a diff, the status page or a backup, for
// anyone who can write the directory to point it at a file of root's) nor
// written; the rendered file replaces the link, as a new file would.
func readInstalled(g *Group, f *file) *Failure {
	t := f.t
	f.existed, f.old, f.info, f.link, f.dangling = false, nil, nil, "", false
	info, err := os.Lstat(t.Destination)
	switch {
	case err == nil && info.Mode()&fs.ModeSymlink != 0:
		if f.link, err = os.Readlink(t.Destination); err != nil {
			return &Failure{g.Name, StepInstall, fmt.Errorf("read the link %s: %w", t.Destination, err)}
		}
		// Whether the target exists is all that is asked of it.
		_, err = os.Stat(t.Destination)
		f.dangling = errors.Is(err, fs.ErrNotExist)
	case err == nil && !info.Mode().IsRegular():
		return &Failure{g.Name, StepInstall, fmt.Errorf("%s is not a regular file (%s): it cannot be replaced by a rendered file", t.Destination, fileKind(info.Mode()))}
	case err == nil:
		f.existed, f.info = true, info
		if f.old, err = readNoFollow(t.Destination); err != nil {
			return &Failure{g.Name, StepInstall, fmt.Errorf("read %s: %w", t.Destination, err)}
		}
	case !errors.Is(err, fs.ErrNotExist):
		return &Failure{g.Name, StepInstall, fmt.Errorf("stat %s: %w", t.Destination, err)}
	}
	f.changed = !f.existed || !bytes.Equal(f.old, f.out) || attrsDiffer(t.TemplateConfig, f.info)
	return nil
}

// keeps reports whether f's destination holds something min_instances
// keeps: a file, or a link to one. A link to nothing gives the program
// that reads it nothing to run on, as a missing file does.
func (f *file) keeps() bool {
	return f.existed || (f.link != "" && !f.dangling)
}

// heldBack says whether g's min_reload_interval holds its reload back,
// and until when. A change applied through runtime APIs is not held back.
func (r *Renderer) heldBack(g *Group, rt *runtimePass) (time.Time, bool) {
	last, ok := r.lastReload[g.Name]
	if !ok || rt.applies() || !g.reloads() || g.MinReloadInterval <= 0 {
		return time.Time{}, false
	}
	if next := last.Add(g.MinReloadInterval); r.now().Before(next) {
		r.Log.Debug("reload held back by min_reload_interval", "group", g.Name, "until", next)
		return next, true
	}
	return time.Time{}, false
}

// stage writes every changed file next to its destination, with the
// destination's mode and owner; its failure is the install step's.
func stage(g *Group, files []*file) *Failure {
	for _, f := range files {
		if !f.changed {
			continue
		}
		var err error
		if f.mode, f.owner, err = destinationMode(f.t.TemplateConfig, f.info); err != nil {
			return &Failure{g.Name, StepInstall, fmt.Errorf("%s: %w", f.t.Destination, err)}
		}
		if err := destinationDir(f.t.TemplateConfig); err != nil {
			return &Failure{g.Name, StepInstall, err}
		}
		f.staged = stagedName(f.t.Destination)
		if err := writeStaged(f.staged, f.out, f.mode, f.owner); err != nil {
			return &Failure{g.Name, StepInstall, fmt.Errorf("stage %s: %w", f.t.Destination, err)}
		}
	}
	return nil
}

// removeStaged removes the staged files that were not installed.
func removeStaged(files []*file) {
	for _, f := range files {
		if f.staged != "" {
			os.Remove(f.staged)
		}
	}
}

// check is the check step: it runs g's check command, if any, on the
// staged files.
func (r *Renderer) check(ctx context.Context, g *Group, files []*file) *Failure {
	if g.check == nil {
		return nil
	}
	cmd, err := g.checkCommand(checkDataFor(files))
	if err == nil {
		_, err = runCommand(ctx, cmd, g.CheckTimeout)
	}
	if !stoppedBy(ctx, err) { // a check a stop cut short has no result
		r.Metrics.checks.WithLabelValues(g.Name, result(err)).Inc()
	}
	if err != nil {
		var ce *CommandError
		if errors.As(err, &ce) {
			lines := stagedLines(ce.Output, files)
			r.hideOutput(g, files, "check", err)
			if lines != "" {
				err = fmt.Errorf("%w; %s", err, lines)
			}
		}
		return &Failure{g.Name, StepCheck, err}
	}
	r.Health.stepOK(g.Name, StepCheck, r.now())
	return nil
}

// hideOutput takes the output of a failed command of g's (its check or
// reload: nginx -t, haproxy -c and a reload that parses the files quote
// what they trip on) out of err, to the log alone, when a file of the
// group is not for every user to read: the pages without a login show
// the error.
func (r *Renderer) hideOutput(g *Group, files []*file, step string, err error) {
	var ce *CommandError
	if !errors.As(err, &ce) || !privateGroup(g, files) {
		return
	}
	r.Log.Warn(step+" output", "group", g.Name, "output", ce.Output)
	ce.Output = "(not shown: it may quote a file not every user may read; see the log)"
}

// privateGroup reports whether a file of g, as the check reads it, as
// installed, or as on disk now, is not for every user to read.
func privateGroup(g *Group, files []*file) bool {
	if slices.ContainsFunc(files, func(f *file) bool { return f.private() || f.replaced && privateMode(f.mode) }) {
		return true
	}
	for _, t := range g.Templates {
		if info, err := os.Lstat(t.Destination); err == nil && privateMode(info.Mode()) || closedDir(t.Destination) {
			return true
		}
	}
	return false
}

// private reports whether f, as the check reads it (staged, or installed
// when unchanged), is not for every user of the machine to read (perms =
// "0600": a secret from the configuration; or a destination in a
// directory they may not enter, such as /etc/ssl/private): nor are the
// pages without a login (the status page, /healthz), which then show none
// of it.
func (f *file) private() bool {
	if closedDir(f.t.Destination) {
		return true
	}
	if f.staged != "" {
		return privateMode(f.mode)
	}
	return f.info != nil && privateMode(f.info.Mode())
}

// privateMode reports whether a file of mode m is not for every user to
// read (file.private).
func privateMode(m os.FileMode) bool { return m.Perm()&0o004 == 0 }

// privateWhy says why a file of mode m at path is not for every user to
// read.
func privateWhy(path string, m os.FileMode) string {
	if privateMode(m) {
		return fmt.Sprintf("mode %04o", m.Perm())
	}
	if closedDir(path) {
		return "in a directory not every user may enter"
	}
	return "not readable by every user"
}

// closedDir reports whether a directory above the file at path, links
// resolved, is one that not every user may enter (search): they cannot
// read the file there, whatever its mode. One that cannot be found or
// read counts as closed.
func closedDir(path string) bool { return !fsperm.DirsSearchable(filepath.Dir(path)) }

// maxStagedLines bounds the lines of the rendered files a failed check's
// error quotes; maxStagedLine, the bytes of each.
const (
	maxStagedLines = 3
	maxStagedLine  = 200
)

// stagedLines quotes the lines of the staged files that a failed check's
// output points at, as FILE:LINE (nginx -t's "in FILE:LINE", haproxy -c's
// "[FILE:LINE]"): the staged files are removed after the check, so the
// error says what they held there. Quoted, since registry data fills them.
func stagedLines(output string, files []*file) string {
	var notes []string
	for _, f := range files {
		if f.staged == "" || len(notes) == maxStagedLines {
			continue
		}
		at := regexp.MustCompile(regexp.QuoteMeta(f.staged) + `:([0-9]{1,9})`)
		var lines [][]byte
		seen := map[int]bool{}
		for _, m := range at.FindAllStringSubmatch(output, -1) {
			n, _ := strconv.Atoi(m[1])
			if seen[n] || len(notes) == maxStagedLines {
				continue
			}
			seen[n] = true
			if lines == nil {
				lines = bytes.Split(f.out, []byte("\n"))
			}
			if n < 1 || n > len(lines) {
				continue
			}
			line := lines[n-1]
			if f.private() {
				notes = append(notes, fmt.Sprintf("line %d of the render of %s (staged as %s; %s: not shown)", n, f.t.Destination, filepath.Base(f.staged), privateWhy(f.t.Destination, f.mode)))
				continue
			}
			if len(line) > maxStagedLine {
				line = append(line[:maxStagedLine:maxStagedLine], "…"...)
			}
			notes = append(notes, fmt.Sprintf("line %d of the render of %s (staged as %s): %s", n, f.t.Destination, filepath.Base(f.staged), strconv.Quote(string(line))))
		}
	}
	return strings.Join(notes, "; ")
}

// installStaged is the install step: it backs up (with backup) and installs
// every staged file; when one fails, the ones installed are restored.
func (r *Renderer) installStaged(g *Group, files []*file) *Failure {
	for _, f := range files {
		if !f.changed {
			continue
		}
		if f.t.Backup && f.existed {
			mode, owner := f.oldMode()
			if err := replace(f.t.Destination+".bak", f.old, mode, owner); err != nil {
				r.restore(files, false)
				return &Failure{g.Name, StepInstall, fmt.Errorf("back up %s: %w", f.t.Destination, err)}
			}
		}
		f.hadFile = r.hadFile.had(f.t.Destination)
		inPlace, changed, err := install(f.staged, f.t.Destination, f.mode, f.owner)
		if err != nil {
			if changed {
				// Put back with the others: renamed over it, or partly
				// rewritten.
				f.staged, f.replaced = "", true
			}
			r.restore(files, false)
			return &Failure{g.Name, StepInstall, fmt.Errorf("install %s: %w", f.t.Destination, err)}
		}
		if inPlace {
			r.Log.Warn("destination cannot be replaced by rename (bind-mounted?); rewrote it in place, which is not atomic", "destination", f.t.Destination)
		}
		if f.link != "" {
			r.Log.Warn("destination was a symbolic link; the rendered file replaced it (a link's target is never read or written: set destination to the target to write it)",
				"destination", f.t.Destination, "link_target", f.link)
		}
		f.staged, f.replaced = "", true
		r.Metrics.installs.WithLabelValues(f.t.Name()).Inc()
		r.Log.Info("installed", "destination", f.t.Destination, "bytes", len(f.out), "group", g.Name)
	}
	return nil
}

// reloadGroup is the reload step: g reloads (unless NoReload). When the
// reload fails, the previous files are restored and reloaded. changedAt is
// the snapshot's, for the time to live.
func (r *Renderer) reloadGroup(ctx context.Context, g *Group, files []*file, changedAt time.Time) *Failure {
	if r.NoReload || !g.reloads() {
		return nil
	}
	skipped, err := r.reloadCounted(ctx, g)
	if err != nil {
		r.hideOutput(g, files, "reload", err)
		if files == nil { // installed files reloaded again: nothing to restore
			return &Failure{g.Name, StepReload, err}
		}
		return &Failure{g.Name, StepReload, r.rollBack(ctx, g, files, err)}
	}
	if skipped != "" {
		r.Log.Info("not reloaded: "+skipped, "group", g.Name)
		return nil
	}
	r.Health.stepOK(g.Name, StepReload, r.now())
	r.observeSince(r.Metrics.eventToLive.WithLabelValues("reload"), changedAt)
	r.Log.Info("reloaded", "group", g.Name)
	return nil
}

// reloadAgain reloads g's installed files over a live state they are
// not (what a failed runtime apply left, or files no reload took since
// one failed); a reload that fails leaves them due.
func (r *Renderer) reloadAgain(ctx context.Context, g *Group) {
	if _, err := r.reloadCounted(ctx, g); err != nil {
		r.Log.Error("reload of the installed files failed", "group", g.Name, "err", err)
		r.markDue(g)
	}
}

// stoppedBy reports whether err is a stop's (ctx's cancel) that cut a
// step short, rather than the step's own failure just before the stop.
func stoppedBy(ctx context.Context, err error) bool {
	return ctx.Err() != nil && errors.Is(err, context.Canceled)
}

// reloadCounted reloads g as a pass's reload step does: the time of the
// reload (for min_reload_interval), the status page and the reloads metric
// count it. A reload skipped (see reload) is not counted.
func (r *Renderer) reloadCounted(ctx context.Context, g *Group) (skipped string, _ error) {
	skipped, err := r.reload(ctx, g)
	if skipped != "" && err == nil {
		r.notDue(g) // the command reads the files when it starts
		return skipped, nil
	}
	r.lastReload[g.Name] = r.now()
	if err == nil {
		r.notDue(g)
	}
	r.Status.reloaded(g.Name, r.now())
	r.Metrics.reloads.WithLabelValues(g.Name, result(err)).Inc()
	return "", err
}

// rollBack restores the previous files after a failed reload and, when it
// put any back, reloads them; it returns the reload's error, saying what
// it did. A file that did not exist before and passed the check stays:
// removing it cannot help the running load balancer, and would keep one
// that is not running yet (a first deploy) from starting with a config
// that includes it. A new file without a check is removed. When no
// previous file was put back (only new files removed or kept), the load
// balancer's files are the ones it was running before the pass (or the
// new, checked ones it could not reload): reloading again would only run
// the failed reload once more, so it is not run. Nor is it when the
// reload signal was not sent (the command still runs the files put back)
// or when svcreg is stopping (a stop waits for one reload, not two).
func (r *Renderer) rollBack(ctx context.Context, g *Group, files []*file, err error) error {
	rb := r.restore(files, g.check != nil)
	// The load balancer may not run the installed files (due): new files
	// were kept, previous ones could not be put back, or the reload of
	// those put back failed; unless a reload of them passed, or none was
	// sent (the command runs the files put back, or is not running): then
	// they are live.
	due, live := len(rb.kept) > 0 || len(rb.failed) > 0, false
	defer func() {
		switch {
		case due:
			r.markDue(g)
		case live:
			r.notDue(g)
		}
	}()
	switch {
	case len(rb.restored) == 0:
	case errors.Is(err, errSignalNotHandled):
		// Nothing reached the command: it runs the files put back.
		err = fmt.Errorf("%w; restored the previous files, which the command still runs", err)
	case ctx.Err() != nil:
		// Stopping: the failed reload ran to its end; another is not
		// started, and the files are as the load balancer last took them
		// unless the failed reload took them in part.
		err = fmt.Errorf("%w; restored the previous files, not reloaded: svcreg is stopping (the load balancer may run the new ones, if the failed reload took them)", err)
	default:
		switch skipped, rerr := r.reload(ctx, g); {
		case rerr != nil:
			r.hideOutput(g, files, "reload", rerr)
			err, due = fmt.Errorf("%w; restored the previous files, and reloading them failed too: %v", err, rerr), true
		case skipped != "":
			err, due, live = fmt.Errorf("%w; restored the previous files, not reloaded: %s", err, skipped), false, len(rb.failed) == 0
		default:
			err, due, live = fmt.Errorf("%w; restored the previous files and reloaded them", err), false, len(rb.failed) == 0
		}
	}
	if len(rb.removed) > 0 {
		err = fmt.Errorf("%w; removed the new files (%s): they did not exist before, and no check command passed them", err, strings.Join(rb.removed, ", "))
	}
	if len(rb.failed) > 0 {
		err = fmt.Errorf("%w; could not restore %s (see the log)", err, strings.Join(rb.failed, ", "))
	}
	switch {
	case len(rb.kept) > 0 && len(rb.restored)+len(rb.removed)+len(rb.failed) == 0:
		return fmt.Errorf("%w; kept the new, checked files (%s), which the next pass with nothing to change reloads: there was nothing to restore (a first install: start the load balancer, or use --no-reload)", err, strings.Join(rb.kept, ", "))
	case len(rb.kept) > 0:
		err = fmt.Errorf("%w; kept the new, checked files %s", err, strings.Join(rb.kept, ", "))
	}
	if len(rb.restored) == 0 {
		err = fmt.Errorf("%w; no previous file was restored, so the reload was not run again", err)
	}
	return err
}

// rolledBack is what restore did, by destination.
type rolledBack struct {
	// restored had their previous content (or link) put back; removed
	// did not exist before and were removed; kept did not exist before
	// and stay; failed could not be restored or removed.
	restored, removed, kept, failed []string
}

// restore puts back the previous content of every file installed in this
// pass, and removes the ones that did not exist unless keepNew is set.
func (r *Renderer) restore(files []*file, keepNew bool) rolledBack {
	var rb rolledBack
	for _, f := range files {
		if !f.replaced {
			continue
		}
		if !f.existed && f.link == "" && keepNew {
			rb.kept = append(rb.kept, f.t.Destination)
			continue
		}
		var err error
		done := &rb.restored
		switch {
		case f.existed:
			mode, owner := f.oldMode()
			err = replace(f.t.Destination, f.old, mode, owner)
		case f.link != "":
			err = relink(f.t.Destination, f.link)
		default:
			err, done = os.Remove(f.t.Destination), &rb.removed
			if err == nil {
				// As if not installed: a first deploy stays one, and a
				// destination whose file was deleted stays guarded.
				r.hadFile.set(f.t.Destination, f.hadFile)
			}
		}
		if err != nil {
			r.Log.Error("restore previous file", "destination", f.t.Destination, "err", err)
			rb.failed = append(rb.failed, f.t.Destination)
			continue
		}
		f.replaced = false
		*done = append(*done, f.t.Destination)
	}
	return rb
}

// oldMode is the mode and owner of the file f replaces (it existed), for
// its content wherever it is written again (a backup, a restore): not the
// template's perms, which may let more users read it than it had.
func (f *file) oldMode() (os.FileMode, fileOwner) {
	mode, owner, _ := destinationMode(TemplateConfig{}, f.info) // no perms, user or group to fail
	return mode, owner
}

func checkDataFor(files []*file) checkData {
	var d checkData
	for _, f := range files {
		path := f.t.Destination
		if f.staged != "" {
			path = f.staged
			if d.Staged == "" {
				d.Staged, d.Destination = f.staged, f.t.Destination
			}
		}
		d.Files = append(d.Files, checkFile{Source: f.t.Name(), Destination: f.t.Destination, Staged: path})
	}
	return d
}

func (r *Renderer) printDry(files []*file) {
	for _, f := range files {
		if !f.changed {
			continue
		}
		fmt.Fprintf(r.DryOut, "--- %s (would write %d bytes)\n", f.t.Destination, len(f.out))
		fmt.Fprint(r.DryOut, unifiedDiff(string(f.old), string(f.out)))
	}
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

// fileKind names the type of a file that is not a regular one.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "mode " + m.Type().String()
}
