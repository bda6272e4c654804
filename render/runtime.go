package render

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/svcreg/svcreg/render/runtime"
	"github.com/svcreg/svcreg/render/runtime/haproxy"
)

// runtimeAdapters are the load balancer runtime APIs a template can name
// with runtime = "...". Adding one needs an adapter package and a line
// here; the pipeline does not change.
var runtimeAdapters = map[string]runtime.Factory{
	"haproxy": haproxy.New,
}

// checkRuntimes checks the runtime settings of the templates: a known
// runtime, a socket, and a reload (command or signal) in the group for the
// changes the runtime API cannot make.
func checkRuntimes(ts []TemplateConfig, groups []*groupSettings) error {
	for _, g := range groups {
		for _, i := range g.templates {
			t := ts[i]
			if t.Runtime == "" {
				if t.RuntimeSocket != "" || t.RuntimeDrainTimeout != 0 {
					return fmt.Errorf("template %s: runtime_socket and runtime_drain_timeout need runtime = \"haproxy\"", t.Name())
				}
				continue
			}
			if _, ok := runtimeAdapters[t.Runtime]; !ok {
				return fmt.Errorf("template %s: runtime %q is not one of: %s", t.Name(), t.Runtime, strings.Join(runtimeNames(), ", "))
			}
			if g.reload == "" && g.reloadSignal == "" {
				return fmt.Errorf("template %s: runtime %q needs a reload (a command or reload_signal) for the changes its runtime API cannot make", t.Name(), t.Runtime)
			}
			if _, err := t.runtimeAdapter(nil); err != nil {
				return fmt.Errorf("template %s: %w", t.Name(), err)
			}
		}
	}
	return nil
}

func runtimeNames() []string {
	var names []string
	for n := range runtimeAdapters {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func (t TemplateConfig) runtimeAdapter(log *slog.Logger) (runtime.Adapter, error) {
	return t.runtimeAdapterGo(log, nil)
}

func (t TemplateConfig) runtimeAdapterGo(log *slog.Logger, goFn func(context.Context, func(context.Context) error)) (runtime.Adapter, error) {
	return runtimeAdapters[t.Runtime](runtime.Settings{Socket: t.RuntimeSocket, DrainTimeout: t.RuntimeDrainTimeout.D(), Log: log, Go: goFn})
}

// runtimes are the runtime adapters of the templates, kept from pass to
// pass with the work they leave running (drains, and the checks and
// installs of the files applied ahead of them), and that work's failures.
type runtimes struct {
	adapters map[string]runtime.Adapter // by group, destination and settings
	// looked are the runtime files (by group and destination) whose live
	// state svcreg has taken in hand since it started: a change applied
	// from a fresh read of it, a reload of the group, or reconcileRuntime.
	looked   map[string]bool
	ahead    map[string]*ahead // by group; used by the loop only
	wg       sync.WaitGroup
	mu       sync.Mutex
	failures []backgroundFailure
	// failed is signalled when a failure is added.
	failed chan struct{}
	// retry is signalled when files applied ahead failed their check or
	// install (see ahead.checkFirst).
	retry chan struct{}
}

// backgroundFailure is a runtime API failure in the work a pass left
// running (a drain, or the revert after a failed check of files applied
// ahead of it): the group reloads.
type backgroundFailure struct {
	group, destination, runtime string
	err                         error
}

func newRuntimes() runtimes {
	return runtimes{adapters: map[string]runtime.Adapter{}, looked: map[string]bool{}, ahead: map[string]*ahead{}, failed: make(chan struct{}, 1), retry: make(chan struct{}, 1)}
}

// aheadFailed tells the loop that files applied ahead failed their check
// or install.
func (rs *runtimes) aheadFailed() {
	select {
	case rs.retry <- struct{}{}:
	default:
	}
}

// lookedKey is the key of t's file in runtimes.looked: new runtime
// settings (a configuration reloaded) leave it as it was, since the live
// state is the one svcreg has kept in step.
func lookedKey(g *Group, t *Template) string { return g.Name + "\x00" + t.Destination }

// adapter returns the adapter of t in group g.
func (r *Renderer) adapter(g *Group, t *Template) (runtime.Adapter, error) {
	key := strings.Join([]string{g.Name, t.Destination, t.Runtime, t.RuntimeSocket, t.RuntimeDrainTimeout.D().String()}, "\x00")
	if a := r.runtimes.adapters[key]; a != nil {
		return a, nil
	}
	rs := &r.runtimes
	a, err := t.runtimeAdapterGo(r.Log.With("group", g.Name), func(ctx context.Context, run func(context.Context) error) {
		rs.wg.Go(func() {
			if err := run(ctx); err != nil && ctx.Err() == nil {
				rs.fail(backgroundFailure{g.Name, t.Destination, t.Runtime, err})
			}
		})
	})
	if err != nil {
		return nil, err
	}
	r.runtimes.adapters[key] = a
	return a, nil
}

// fail records a failure of background work and signals the loop, whose
// Fallback reloads the group.
func (rs *runtimes) fail(bf backgroundFailure) {
	rs.mu.Lock()
	rs.failures = append(rs.failures, bf)
	rs.mu.Unlock()
	select {
	case rs.failed <- struct{}{}:
	default:
	}
}

// reset drops the work the adapters of g left running: a reload makes
// the live state the files'. Also the work of adapters of g's files made
// under another group's name (one a reload of the configuration renamed,
// or whose files it moved into g), which would otherwise act on the new
// process.
func (rs *runtimes) reset(g *Group) {
	for k, a := range rs.adapters {
		b, ok := a.(runtime.Background)
		if !ok {
			continue
		}
		group, rest, _ := strings.Cut(k, "\x00")
		dest, _, _ := strings.Cut(rest, "\x00")
		if group == g.Name || slices.ContainsFunc(g.Templates, func(t *Template) bool { return t.Destination == dest }) {
			b.Reset()
		}
	}
}

// carryLooked notes the runtime files of next's groups that svcreg took
// in hand under another group of old (a reload group renamed, or files
// moved into another) as taken in hand: their live state is the one this
// run kept in step, which reconcileRuntime would take for what an earlier
// run left, and take again through the runtime API (or a reload).
func (rs *runtimes) carryLooked(old, next *Set) {
	looked := map[string]bool{} // by destination
	for _, g := range old.Groups {
		for _, t := range g.Templates {
			if rs.looked[lookedKey(g, t)] {
				looked[t.Destination] = true
			}
		}
	}
	for _, g := range next.Groups {
		for _, t := range g.Templates {
			if looked[t.Destination] {
				rs.looked[lookedKey(g, t)] = true
			}
		}
	}
}

// reloaded notes that g's files are live as installed: a reload of the
// group was confirmed.
func (rs *runtimes) reloaded(g *Group) {
	for _, t := range g.Templates {
		if t.Runtime != "" {
			rs.looked[lookedKey(g, t)] = true
		}
	}
}

// takeFailures returns the failures of the background work since the last
// call.
func (rs *runtimes) takeFailures() []backgroundFailure {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	f := rs.failures
	rs.failures = nil
	return f
}

// RuntimeFailed is signalled when work a pass left running (a drain)
// failed; the loop then calls Fallback.
func (r *Renderer) RuntimeFailed() <-chan struct{} { return r.runtimes.failed }

// AheadFailed is signalled when the check or install of files applied
// ahead through the runtime APIs failed and the live state went back to
// the installed files: a pass is to run again after a backoff, which
// checks the change before it goes live.
func (r *Renderer) AheadFailed() <-chan struct{} { return r.runtimes.retry }

// Settle waits until the work the passes left running is done (drains;
// the checks and installs of the files applied ahead of them), then falls
// back from its failures; --once calls it before it exits. It returns the
// groups the background work installed and the failures.
func (r *Renderer) Settle(ctx context.Context, set *Set) PassResult {
	r.runtimes.wg.Wait()
	var res PassResult
	res.Installed, res.Failures = r.runtimes.settledAhead()
	res.Failures = append(res.Failures, r.Fallback(ctx, set)...)
	return res
}

// Fallback reloads the groups whose background runtime work failed: their
// live state may not be their installed files'. The installed files were
// checked; a group whose files applied ahead are still being checked
// reloads once they are installed (or the live state reverted).
func (r *Renderer) Fallback(ctx context.Context, set *Set) []Failure {
	var failures []Failure
	// One reload a group, however many of its files failed.
	var groups []*Group
	for _, bf := range r.runtimes.takeFailures() {
		i := slices.IndexFunc(set.Groups, func(g *Group) bool { return g.Name == bf.group })
		if i < 0 {
			// A group renamed by a new configuration: its file's group
			// now, if the file is still the configuration's.
			i = slices.IndexFunc(set.Groups, func(g *Group) bool {
				return slices.ContainsFunc(g.Templates, func(t *Template) bool { return t.Destination == bf.destination })
			})
		}
		if i < 0 {
			continue // gone with a new configuration
		}
		g := set.Groups[i]
		r.runtimeFailed(g, bf.destination, bf.runtime, bf.err)
		if !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	for _, g := range groups {
		r.waitAhead(ctx, g)
		if r.NoReload || !g.reloads() {
			continue
		}
		f := r.fallbackReload(ctx, g)
		if f == stopped {
			continue
		}
		if f != nil {
			failures = append(failures, *f)
		}
		r.Health.passed(g.Name, f, r.now())
	}
	return failures
}

// fallbackReload is Fallback's reload of g, holding the group's
// destination locks as a pass does: another renderer's pass (a --once)
// does not install between, and the reload-pending files this reload
// leaves or removes are its own, not the other's due reload.
func (r *Renderer) fallbackReload(ctx context.Context, g *Group) *Failure {
	release, f := r.lockGroup(ctx, g)
	if f != nil {
		// Not reloaded: the live state is not the files', which a
		// later pass (or the next start) reloads.
		r.markDue(g)
		if f == stopped {
			return f
		}
		// Nothing was to be installed: the failure is the reload's, which
		// the installed files still wait for (--once's exit 8).
		return r.failed(&Failure{g.Name, StepReload, fmt.Errorf("not reloaded: %w", f.Err)})
	}
	defer release()
	skipped, err := r.reloadCounted(ctx, g)
	switch {
	case err != nil:
		r.hideOutput(g, nil, "reload", err)
		r.markDue(g) // the live state is not the files'
		return r.failed(&Failure{g.Name, StepReload, err})
	case skipped != "":
		r.Log.Info("not reloaded: "+skipped, "group", g.Name)
	default:
		r.Health.stepOK(g.Name, StepReload, r.now())
		r.Log.Info("reloaded", "group", g.Name)
	}
	return nil
}

// reconcileRuntime makes the live state of g's runtime files that did not
// change their installed content, the first time svcreg looks at them
// after its start, unless the group reloads (which does it). An earlier
// run may have left it otherwise: it died with a change applied ahead of
// a file it then never installed, and the registry went back meanwhile,
// so that there is nothing to apply; or it stopped with drains under
// way, whose servers stay in drain state. The differences are applied
// through the runtime API (a server the file does not have is drained
// and deleted); when that fails, the group reloads, as after a failed
// drain (Fallback). Nothing answering the runtime API is no failure: the
// load balancer loads the installed files when it starts.
//
// With Dry it reads the live state and prints what it would send.
func (r *Renderer) reconcileRuntime(ctx context.Context, g *Group, files []*file) {
	if r.NoReload || (g.ReloadSignal != 0 && !r.Child.started()) {
		return
	}
	for _, f := range files {
		if f.t.Runtime == "" || !f.existed || f.changed || r.runtimes.looked[lookedKey(g, f.t)] {
			continue
		}
		r.runtimes.looked[lookedKey(g, f.t)] = true
		rc := r.reconciler(g, f.t)
		if rc == nil {
			continue
		}
		if r.Dry {
			r.printDryReconcile(ctx, f.t, rc, f.old)
			continue
		}
		start := time.Now()
		sent, err := rc.Reconcile(ctx, f.old)
		switch {
		case errors.Is(err, runtime.ErrUnreachable):
			r.Log.Info("nothing answers the runtime API; the load balancer loads the installed file when it starts", "group", g.Name, "destination", f.t.Destination, "err", err)
		case err != nil:
			r.runtimes.fail(backgroundFailure{g.Name, f.t.Destination, f.t.Runtime, fmt.Errorf("the live state, as the last run left it, could not be made the installed file's: %w", err)})
		case len(sent) > 0:
			r.reconciled(g, f.t.Destination, sent, time.Since(start), "the live state was not the installed file's (a change or drains under way when svcreg last stopped); it is again", "at start")
		default:
			r.Log.Debug("the live state is the installed file's", "group", g.Name, "destination", f.t.Destination)
		}
	}
}

// reconcileReloaded reads the live state of g's runtime files after a
// confirmed reload and makes it the installed files' where it differs. A
// reload loads the files, but HAProxy also takes servers' states back
// from a server-state file (load-server-state-from-file): a server's
// address and port, and a drain or maintenance set through the runtime
// API, over what the file says. Nothing answering is no failure (the load
// balancer loads the files when it starts); nor, to keep a reload from
// following another, is a difference the runtime API cannot make: it is
// logged, and shown on /healthz.
func (r *Renderer) reconcileReloaded(ctx context.Context, g *Group) {
	for _, t := range g.Templates {
		if t.Runtime == "" {
			continue
		}
		rc := r.reconciler(g, t)
		if rc == nil {
			continue
		}
		installed, err := os.ReadFile(t.Destination)
		if err != nil {
			continue
		}
		start := time.Now()
		sent, err := rc.Reconcile(ctx, installed)
		switch {
		case errors.Is(err, runtime.ErrUnreachable):
		case err != nil:
			r.Log.Error("after the reload, the live state is not the installed file's, and the runtime API could not make it so (a server-state file?)", "group", g.Name, "destination", t.Destination, "err", err)
			r.Health.recordRuntime(g.Name, RuntimeHealth{At: r.now(), Outcome: "reload", Reason: fmt.Sprintf("%s: the live state after the reload is not the file's: %v", t.Destination, err)})
		case len(sent) > 0:
			r.reconciled(g, t.Destination, sent, time.Since(start), "after the reload, the live state was not the installed file's (a server-state file loaded at the reload?); it is again", "after the reload")
		}
	}
}

// reconciler is the adapter of t's runtime if it can read and make the
// live state (runtime.Reconciler), or nil.
func (r *Renderer) reconciler(g *Group, t *Template) runtime.Reconciler {
	a, err := r.adapter(g, t)
	if err != nil {
		return nil // checkRuntimes checked the settings
	}
	rc, _ := a.(runtime.Reconciler)
	return rc
}

// reconciled logs, counts and shows on /healthz the commands sent to make
// the live state of dest the installed file's (when: "at start", "after
// the reload").
func (r *Renderer) reconciled(g *Group, dest string, sent []string, took time.Duration, msg, when string) {
	const shown = 8
	r.Log.Warn(msg, "group", g.Name, "destination", dest,
		"commands", len(sent), "first", strings.Join(sent[:min(len(sent), shown)], "; "), "took", took)
	r.Metrics.runtime.passes.WithLabelValues(g.Name, "reconciled").Inc()
	r.Health.recordRuntime(g.Name, RuntimeHealth{At: r.now(), Outcome: "reconciled", Reason: fmt.Sprintf("%s: %d commands %s", dest, len(sent), when)})
}

// printDryReconcile prints what reconcileRuntime would send to make the
// live state of t's installed file (installed) the file's, if anything.
func (r *Renderer) printDryReconcile(ctx context.Context, t *Template, rc runtime.Reconciler, installed []byte) {
	cmds, err := rc.ReconcileCommands(ctx, installed)
	switch {
	case errors.Is(err, runtime.ErrUnreachable):
		fmt.Fprintf(r.DryOut, "--- %s: nothing answers the %s runtime API at %s; the load balancer loads the installed file when it starts\n", t.Destination, t.Runtime, t.RuntimeSocket)
	case err != nil:
		fmt.Fprintf(r.DryOut, "--- %s: would reload: the live state could not be made the installed file's: %v\n", t.Destination, err)
	case len(cmds) > 0:
		printCommands(r.DryOut, t, "the live state is not the installed file's", cmds)
	}
}

// printCommands prints, for --dry, the commands a pass would send to t's
// runtime API, after a line that names t's file and says why.
func printCommands(w io.Writer, t *Template, why string, cmds []string) {
	fmt.Fprintf(w, "--- %s: %s; would send to the %s runtime API at %s:\n", t.Destination, why, t.Runtime, t.RuntimeSocket)
	for _, c := range cmds {
		fmt.Fprintf(w, "    %s\n", c)
	}
}

// runtimePass is how a group's change goes through runtime APIs: plans
// to apply, or why the change needs a reload.
type runtimePass struct {
	plans  []runtimePlan
	reload error // the change needs a reload: why
	// applied counts the plans Apply was called for.
	applied int
}

// tried returns the plans Apply was called for.
func (rp *runtimePass) tried() []runtimePlan {
	if rp == nil {
		return nil
	}
	return rp.plans[:rp.applied]
}

type runtimePlan struct {
	t *Template
	runtime.Plan
	adapter runtime.Adapter
}

// applies says whether the pass goes through runtime APIs only.
func (rp *runtimePass) applies() bool { return rp != nil && rp.reload == nil }

// planRuntime plans the group's changed files through their runtime APIs.
// It returns nil when a changed file has no runtime (the group reloads as
// usual), and a pass with a reason to reload when a file did not exist or
// holds a change its runtime API cannot make.
func (r *Renderer) planRuntime(g *Group, files []*file) *runtimePass {
	rp := &runtimePass{}
	for _, f := range files {
		if !f.changed {
			continue
		}
		if f.t.Runtime == "" {
			return nil
		}
		if !f.existed {
			rp.reload = runtime.Reloadf("%s is new", f.t.Destination)
			return rp
		}
		a, err := r.adapter(g, f.t)
		var p runtime.Plan
		if err == nil {
			p, err = a.Plan(f.old, f.out)
		}
		if err != nil {
			rp.reload = fmt.Errorf("%s: %w", f.t.Destination, err)
			return rp
		}
		rp.plans = append(rp.plans, runtimePlan{f.t, p, a})
	}
	if len(rp.plans) == 0 {
		return nil
	}
	return rp
}

// printDry prints the commands the pass would send, or why it would
// reload.
func (rp *runtimePass) printDry(w io.Writer) {
	switch {
	case rp == nil:
	case rp.reload != nil:
		fmt.Fprintf(w, "--- would reload: %v\n", rp.reload)
	default:
		for _, p := range rp.plans {
			printCommands(w, p.t, "no reload", p.Commands())
		}
	}
}

// applyRuntime applies the new files through their runtime APIs, before
// they are checked and installed. It reports false when the group must
// reload: there is no runtime, the change needs a reload, or a runtime API
// failed (then the reload makes the load balancer's live state the
// installed files').
func (r *Renderer) applyRuntime(ctx context.Context, g *Group, rp *runtimePass) bool {
	if rp == nil {
		return false
	}
	if g.ReloadSignal != 0 && !r.Child.started() {
		// Its runtime API is the command's: nothing answers it yet.
		r.Log.Info("the command has not started yet; it reads the installed files when it starts", "group", g.Name)
		return false
	}
	if rp.reload != nil {
		r.Log.Info("the change needs a reload", "group", g.Name, "why", rp.reload)
		r.Metrics.runtime.passes.WithLabelValues(g.Name, "reload").Inc()
		r.Health.recordRuntime(g.Name, RuntimeHealth{At: r.now(), Outcome: "reload", Reason: rp.reload.Error()})
		return false
	}
	start := time.Now()
	// A stop does not cut an apply's commands short (the adapter runs
	// them to the end: cut between a command and its read-back, an apply
	// would leave a live change that neither the checker reverts nor a
	// reload undoes), but ends the drains it leaves. The checker, which
	// the stop cuts short too, then takes the live state back to the
	// installed files.
	for _, p := range rp.plans {
		rp.applied++
		if err := p.Apply(ctx); err != nil {
			r.runtimeFailed(g, p.t.Destination, p.t.Runtime, err)
			return false
		}
		// Its Apply started from a fresh read of the live state.
		r.runtimes.looked[lookedKey(g, p.t)] = true
	}
	r.Metrics.runtime.passes.WithLabelValues(g.Name, "applied").Inc()
	r.Health.recordRuntime(g.Name, RuntimeHealth{At: r.now(), Outcome: "applied"})
	r.Log.Info("applied through the runtime API, no reload", "group", g.Name, "took", time.Since(start))
	return true
}

// runtimeFailed records a runtime API failure, after which the group
// reloads.
func (r *Renderer) runtimeFailed(g *Group, destination, rt string, err error) {
	step := "other"
	var f *runtime.Failure
	if errors.As(err, &f) {
		step = f.Step
	}
	r.Log.Warn("runtime API failed; reloading instead", "group", g.Name, "destination", destination, "runtime", rt, "err", err)
	r.Metrics.runtime.passes.WithLabelValues(g.Name, "fallback").Inc()
	r.Metrics.runtime.failures.WithLabelValues(g.Name, step).Inc()
	r.Health.recordRuntime(g.Name, RuntimeHealth{At: r.now(), Outcome: "fallback", Reason: err.Error()})
}

// revertOnStop bounds a revert after the stop cut a pass short.
const revertOnStop = 10 * time.Second

// revertRuntime takes the live state back to the installed files after
// plans were applied through the runtime APIs ahead of files whose check
// or install then failed (why). When that fails too, it returns the
// failure: the caller reloads the installed files.
func (r *Renderer) revertRuntime(ctx context.Context, g *Group, plans []runtimePlan, why *Failure) *backgroundFailure {
	if len(plans) == 0 {
		return nil
	}
	if ctx.Err() != nil {
		// Stopping cut the check short: the live state still goes back.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), revertOnStop)
		defer cancel()
	}
	for _, p := range plans {
		if err := p.Revert(ctx); err != nil {
			r.Log.Warn("the change went through the runtime API and then failed; restoring the live state failed too, so the installed files are reloaded", "group", g.Name, "destination", p.t.Destination, "failed", why.Step.String(), "err", err)
			return &backgroundFailure{g.Name, p.t.Destination, p.t.Runtime, err}
		}
	}
	r.Log.Warn("the change went through the runtime API and then failed; the live state is the installed files' again", "group", g.Name, "failed", why.Step.String())
	r.Health.recordRuntime(g.Name, RuntimeHealth{At: r.now(), Outcome: "reverted", Reason: why.Error()})
	r.Metrics.runtime.passes.WithLabelValues(g.Name, "reverted").Inc()
	return nil
}

// RuntimeHealth is how a group's last change went through its runtime
// API.
type RuntimeHealth struct {
	At time.Time `json:"at"`
	// Outcome is applied (through the runtime API, without a reload),
	// reload (the change needed a reload), fallback (the runtime API
	// failed, so the group reloaded), reverted (the change was applied,
	// then its check or install failed, and the live state was taken back
	// to the installed files) or reconciled (the live state was not the
	// installed files' when svcreg started, and the runtime API made it
	// so).
	Outcome string `json:"outcome"`
	Reason  string `json:"reason,omitempty"`
	// Fallbacks counts the fallbacks since the start.
	Fallbacks int `json:"fallbacks"`
	// LastFallback is the last fallback's time and reason.
	LastFallback *StepResult `json:"last_fallback,omitempty"`
}

func (h *Health) recordRuntime(group string, rh RuntimeHealth) {
	h.mu.Lock()
	defer h.mu.Unlock()
	g := h.groups[group]
	if g == nil {
		g = &GroupHealth{}
		h.groups[group] = g
	}
	if g.Runtime != nil {
		rh.Fallbacks, rh.LastFallback = g.Runtime.Fallbacks, g.Runtime.LastFallback
	}
	if rh.Outcome == "fallback" {
		rh.Fallbacks++
		rh.LastFallback = &StepResult{At: rh.At, Error: rh.Reason}
	}
	g.Runtime = &rh
}

// runtimeMetrics count how changes went through runtime APIs.
type runtimeMetrics struct {
	passes   *prometheus.CounterVec
	failures *prometheus.CounterVec
}

func newRuntimeMetrics(r prometheus.Registerer) *runtimeMetrics {
	m := &runtimeMetrics{
		passes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "svcreg_template_runtime_passes_total",
			Help: "Changes of templates with a runtime, by reload group and outcome: applied (through the runtime API, no reload), reload (the change needed one), fallback (the runtime API failed; reloaded), reverted (applied, then the check or install failed; the live state was taken back to the installed files), reconciled (at start or after a reload, the live state was not the installed files'; the runtime API made it so).",
		}, []string{"group", "outcome"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "svcreg_template_runtime_failures_total",
			Help: "Runtime API failures that made a group reload, by reload group and step (connect, command, drain, verify).",
		}, []string{"group", "step"}),
	}
	if r != nil {
		r.MustRegister(m.passes, m.failures)
	}
	return m
}
