package render

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/svcreg/svcreg/render/runtime"
	"github.com/svcreg/svcreg/watcher"
)

// ahead is a group's files that went through its runtime APIs ahead of
// their check and install. The render loop applies a change and hands its
// files over; one goroutine per group checks and installs the latest files
// handed over, skipping those a later change replaced, so that later
// changes are applied while an earlier file is being checked. The
// installed files are always checked ones; when the check or install of
// the latest files fails, the live state goes back to the installed files.
type ahead struct {
	// mu is held while the live state or the installed files change: a
	// pass's apply (and the render that reads what it applies on), and
	// the checker's install or revert.
	mu sync.Mutex
	// applied are the files the live state was last taken to, while the
	// checker has not caught up with them; nil: the installed files.
	applied []*file
	// next are the latest applied files the checker has not picked up.
	next *aheadFiles
	// idle is closed when the checker is done; nil when none runs.
	idle chan struct{}
	// failure is the latest files' failed check or install, for Settle;
	// installed counts the files the checker installed since the last
	// Settle.
	failure   *Failure
	installed int
	// checkFirst says the latest files applied ahead failed their check
	// or install, and the live state went back to the installed files:
	// the group's next change is checked and installed before it goes
	// live, and reloads (the loop runs a pass again for it after its
	// Retry backoff), so that a check that keeps failing does not take
	// the live state to the change and back on every try.
	checkFirst bool
}

// aheadFiles are a pass's files, applied through the runtime APIs, with
// the adapters of the files that have a runtime API (for a revert).
type aheadFiles struct {
	files     []*file
	adapters  []runtime.Adapter // by file; nil for a file without a runtime API
	changedAt time.Time         // the snapshot's
	// appliedTo are the processes the changes were applied to, one for
	// each runtime socket whose adapter can tell: one that is gone by the
	// time the files are installed took the change with it (see
	// installAhead).
	appliedTo []appliedTo
}

// appliedTo is the process that answered a runtime socket, t's, when a
// pass's changes were applied through it.
type appliedTo struct {
	t       *Template
	api     runtime.Instances
	process string
}

// ahead returns g's ahead, made on first use.
func (r *Renderer) ahead(g *Group) *ahead {
	ah := r.runtimes.ahead[g.Name]
	if ah == nil {
		ah = &ahead{}
		r.runtimes.ahead[g.Name] = ah
	}
	return ah
}

// handAhead hands the files a pass applied to the group's checker, and
// starts it if it is not running. ah.mu is held.
func (r *Renderer) handAhead(ctx context.Context, g *Group, ah *ahead, rp *runtimePass, files []*file, snap *watcher.Snapshot) {
	af := &aheadFiles{files: make([]*file, len(files)), adapters: make([]runtime.Adapter, len(files)), changedAt: snap.ChangedAt}
	asked := map[string]bool{} // each socket once
	for i, f := range files {
		af.files[i] = &file{t: f.t, out: f.out}
		if p := slices.IndexFunc(rp.plans, func(p runtimePlan) bool { return p.t == f.t }); p >= 0 {
			af.adapters[i] = rp.plans[p].adapter
			if api, ok := af.adapters[i].(runtime.Instances); ok && !asked[f.t.RuntimeSocket] {
				asked[f.t.RuntimeSocket] = true
				if process, _ := api.Instance(ctx); process != "" {
					af.appliedTo = append(af.appliedTo, appliedTo{f.t, api, process})
				}
			}
		} else if f.t.Runtime != "" {
			// Unchanged by this pass, but an earlier one may have applied
			// a change to it that is not installed yet: a revert covers
			// it too.
			af.adapters[i], _ = r.adapter(g, f.t)
		}
	}
	ah.applied, ah.next = af.files, af
	if ah.idle != nil {
		return
	}
	idle := make(chan struct{})
	ah.idle = idle
	r.runtimes.wg.Go(func() {
		defer close(idle)
		r.checkAhead(ctx, g, ah)
	})
}

// checkAhead checks and installs the latest files handed over until there
// are none left.
func (r *Renderer) checkAhead(ctx context.Context, g *Group, ah *ahead) {
	for {
		ah.mu.Lock()
		af := ah.next
		ah.next = nil
		if af == nil {
			ah.idle = nil
			ah.mu.Unlock()
			return
		}
		ah.mu.Unlock()
		r.installAhead(ctx, g, ah, af)
	}
}

// installAhead takes applied files through check and install. When they
// fail and no later change was applied, the live state goes back to the
// installed files; a later change is checked next.
func (r *Renderer) installAhead(ctx context.Context, g *Group, ah *ahead, af *aheadFiles) {
	files := af.files
	defer removeStaged(files)
	// The pass that applied the change may hold the group's locks, and
	// wait for this install: it joins that hold.
	release, lf := r.lockGroup(ctx, g)
	if lf == nil {
		defer release()
	} else if lf == stopped {
		lf = &Failure{g.Name, StepInstall, errors.New("stopped while waiting for another process's lock on the destinations")}
	}
	// Read whatever the lock's outcome: a failure reverts the live state
	// to the installed files, which the revert's plans compare with.
	var f *Failure
	for _, fl := range files {
		if f = readInstalled(g, fl); f != nil {
			break
		}
	}
	f = cmp.Or(f, lf)
	if f == nil {
		f = stage(g, files)
	}
	if f == nil {
		f = r.check(ctx, g, files)
	}
	installed := false
	// After the unlock below: a round trip to the load balancer, which the
	// next pass's apply need not wait for.
	defer func() {
		if installed {
			r.reloadedMeanwhile(ctx, g, af)
		}
	}()
	ah.mu.Lock()
	defer ah.mu.Unlock()
	if f == nil {
		f = r.installStaged(g, files)
	}
	latest := ah.next == nil
	if latest {
		ah.applied = nil
	}
	ah.failure = f
	if f != nil {
		if stoppedBy(ctx, f.Err) {
			// A stop cut the check short: no failure of the change's, and
			// the live state goes back to the installed files below.
			r.Log.Info("stopped during the check of a change applied ahead: taking it back out of the live state", "group", g.Name)
		} else {
			r.Health.passed(g.Name, r.failed(f), r.now())
		}
		if !latest {
			r.Log.Info("a later change was applied meanwhile; checking it next", "group", g.Name)
			return
		}
		ah.checkFirst = true
		defer r.runtimes.aheadFailed()
		var plans []runtimePlan
		for i, fl := range files {
			if fl.changed && af.adapters[i] != nil {
				p, err := af.adapters[i].Plan(fl.old, fl.out)
				if err != nil {
					r.runtimes.fail(backgroundFailure{g.Name, fl.t.Destination, fl.t.Runtime, err})
					return
				}
				plans = append(plans, runtimePlan{fl.t, p, af.adapters[i]})
			}
		}
		if bf := r.revertRuntime(ctx, g, plans, f); bf != nil {
			// The loop's Fallback reloads the installed files.
			r.runtimes.fail(*bf)
		}
		return
	}
	if !slices.ContainsFunc(files, func(f *file) bool { return f.changed }) {
		return // a later change took the files back to the installed ones
	}
	for _, fl := range files {
		r.hadFile.set(fl.t.Destination, true)
	}
	ah.installed++
	r.Health.stepOK(g.Name, StepInstall, r.now())
	r.Status.installed(g.Name, files, af.changedAt, r.now())
	r.observeSince(r.Metrics.eventToInstall, af.changedAt)
	r.Health.passed(g.Name, nil, r.now())
	installed = true
}

// reloadedMeanwhile has the group reloaded (by the loop's Fallback) when a
// process a change was applied to no longer answers its runtime API once
// the change is installed: the load balancer was reloaded meanwhile (by
// an operator, a package upgrade, a signal passed on to an --exec child),
// from the files installed before, and the live state lacks the change
// while the installed file holds it; no later pass would see a
// difference to apply.
func (r *Renderer) reloadedMeanwhile(ctx context.Context, g *Group, af *aheadFiles) {
	for _, at := range af.appliedTo {
		now, err := at.api.Instance(ctx)
		if err != nil || now == at.process {
			continue
		}
		r.runtimes.fail(backgroundFailure{g.Name, at.t.Destination, at.t.Runtime,
			fmt.Errorf("the change was applied through the runtime API to process %s, and %s answers now (reloaded meanwhile, from the files installed before): reloading, to load the installed file", at.process, now)})
		return
	}
}

// waitAhead waits until g's checker is done (its last files installed, or
// the live state reverted): a change that reloads comes after the changes
// applied before it. It reports whether it waited.
func (r *Renderer) waitAhead(ctx context.Context, g *Group) bool {
	ah := r.runtimes.ahead[g.Name]
	return ah != nil && ah.wait(ctx)
}

// WaitAhead waits until the checkers of every group are done: a new
// template set renders on the installed files.
func (r *Renderer) WaitAhead(ctx context.Context) {
	for _, ah := range r.runtimes.ahead {
		if ah.wait(ctx); ctx.Err() != nil {
			return
		}
	}
}

// wait waits until the checker is done, or ctx is; it reports whether a
// checker was running.
func (ah *ahead) wait(ctx context.Context) bool {
	ah.mu.Lock()
	idle := ah.idle
	ah.mu.Unlock()
	if idle == nil {
		return false
	}
	select {
	case <-idle:
	case <-ctx.Done():
	}
	return true
}

// settledAhead returns, once the checkers are done, how many groups they
// installed and the latest failure of each group.
func (rs *runtimes) settledAhead() (installed int, failures []Failure) {
	for _, name := range slices.Sorted(maps.Keys(rs.ahead)) {
		ah := rs.ahead[name]
		ah.mu.Lock()
		if ah.failure != nil {
			failures = append(failures, *ah.failure)
		} else if ah.installed > 0 {
			installed++
		}
		ah.installed, ah.failure = 0, nil
		ah.mu.Unlock()
	}
	return installed, failures
}
