package render

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/svcreg/svcreg/watcher"
)

// Failure is one group's failed step.
type Failure struct {
	Group string
	Step  Step
	Err   error
}

func (f Failure) Error() string { return fmt.Sprintf("%s %s: %v", f.Step, f.Group, f.Err) }

// PassResult is what a pass did.
type PassResult struct {
	// Installed counts the groups whose files were installed.
	Installed int
	Failures  []Failure
	// RetryAt, when not zero, is when a group held back by its
	// min_reload_interval may go ahead; run another pass then.
	RetryAt time.Time
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

	now        func() time.Time
	lastReload map[string]time.Time // by group
	splayDelay func(max time.Duration) time.Duration
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
	return &Renderer{Log: log, Metrics: m, Health: h, DryOut: os.Stdout, now: time.Now, lastReload: map[string]time.Time{}}
}

// Pass renders every template of set on snap and, for each group whose
// output changed, stages, checks, installs and reloads it. It never installs
// from an unsynced snapshot.
func (r *Renderer) Pass(ctx context.Context, set *Set, snap *watcher.Snapshot) PassResult {
	var res PassResult
	if snap == nil || !snap.Synced {
		return res
	}
	start := time.Now()
	for _, g := range set.Groups {
		installed, retryAt, f := r.passGroup(ctx, g, snap)
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
	info     fs.FileInfo
	changed  bool
	mode     os.FileMode
	owner    fileOwner
	staged   string
	replaced bool // installed over the old content
}

func (r *Renderer) passGroup(ctx context.Context, g *Group, snap *watcher.Snapshot) (installed bool, retryAt time.Time, _ *Failure) {
	fail := func(step Step, err error) (bool, time.Time, *Failure) {
		f := Failure{Group: g.Name, Step: step, Err: err}
		r.Health.stepFailed(f, r.now())
		r.Log.Error("template group failed", "group", g.Name, "step", step.String(), "err", err)
		return false, time.Time{}, &f
	}

	files := make([]*file, len(g.Templates))
	anyChanged := false
	for i, t := range g.Templates {
		out, err := r.render(ctx, g, t, snap)
		if err != nil {
			return fail(StepRender, err)
		}
		f := &file{t: t, out: out}
		if f.info, err = os.Stat(t.Destination); err == nil {
			f.existed = true
			if f.old, err = os.ReadFile(t.Destination); err != nil {
				return fail(StepInstall, fmt.Errorf("read %s: %w", t.Destination, err))
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fail(StepInstall, fmt.Errorf("stat %s: %w", t.Destination, err))
		}
		f.changed = !f.existed || !bytes.Equal(f.old, f.out) || attrsDiffer(t.TemplateConfig, f.info)
		anyChanged = anyChanged || f.changed
		files[i] = f
	}
	r.Health.stepOK(g.Name, StepRender, r.now())
	r.Status.rendered(g.Name, files, snap, r.now())
	if !anyChanged {
		return false, time.Time{}, nil
	}
	// A change a runtime API can make is applied without a reload, after
	// the files are installed.
	rt := r.planRuntime(g, files)
	if r.Dry {
		r.printDry(files)
		rt.printDry(r.DryOut)
		return false, time.Time{}, nil
	}
	if last, ok := r.lastReload[g.Name]; ok && !rt.applies() && g.reloads() && g.MinReloadInterval > 0 {
		if next := last.Add(g.MinReloadInterval); r.now().Before(next) {
			r.Log.Debug("reload held back by min_reload_interval", "group", g.Name, "until", next)
			return false, next, nil
		}
	}

	if err := r.splay(ctx, g); err != nil {
		return false, time.Time{}, nil // stopping
	}

	// Stage every changed file next to its destination.
	defer func() {
		for _, f := range files {
			if f.staged != "" {
				os.Remove(f.staged)
			}
		}
	}()
	for _, f := range files {
		if !f.changed {
			continue
		}
		var err error
		if f.mode, f.owner, err = destinationMode(f.t.TemplateConfig, f.info); err != nil {
			return fail(StepInstall, fmt.Errorf("%s: %w", f.t.Destination, err))
		}
		if err := destinationDir(f.t.TemplateConfig); err != nil {
			return fail(StepInstall, err)
		}
		f.staged = stagedName(f.t.Destination)
		if err := writeStaged(f.staged, f.out, f.mode, f.owner); err != nil {
			return fail(StepInstall, fmt.Errorf("stage %s: %w", f.t.Destination, err))
		}
	}

	if g.check != nil {
		cmd, err := g.checkCommand(checkDataFor(files))
		if err == nil {
			_, err = runCommand(ctx, cmd, g.CheckTimeout)
		}
		r.Metrics.checks.WithLabelValues(g.Name, result(err)).Inc()
		if err != nil {
			return fail(StepCheck, err)
		}
		r.Health.stepOK(g.Name, StepCheck, r.now())
	}

	for _, f := range files {
		if !f.changed {
			continue
		}
		if f.t.Backup && f.existed {
			if err := replace(f.t.Destination+".bak", f.old, f.mode, f.owner); err != nil {
				r.restore(files, false)
				return fail(StepInstall, fmt.Errorf("back up %s: %w", f.t.Destination, err))
			}
		}
		inPlace, err := install(f.staged, f.t.Destination)
		if err != nil {
			r.restore(files, false)
			return fail(StepInstall, fmt.Errorf("install %s: %w", f.t.Destination, err))
		}
		if inPlace {
			r.Log.Warn("destination cannot be replaced by rename (bind-mounted?); rewrote it in place, which is not atomic", "destination", f.t.Destination)
		}
		f.staged, f.replaced = "", true
		r.Metrics.installs.WithLabelValues(f.t.Name()).Inc()
		r.Log.Info("installed", "destination", f.t.Destination, "bytes", len(f.out), "group", g.Name)
	}
	r.Health.stepOK(g.Name, StepInstall, r.now())
	r.Status.installed(g.Name, files, snap.ChangedAt, r.now())
	if !snap.ChangedAt.IsZero() {
		r.Metrics.eventToInstall.Observe(r.now().Sub(snap.ChangedAt).Seconds())
	}

	if !r.NoReload && r.applyRuntime(ctx, g, rt) {
		return true, time.Time{}, nil
	}
	if g.reloads() && !r.NoReload {
		err := r.reload(ctx, g)
		r.lastReload[g.Name] = r.now()
		r.Status.reloaded(g.Name, r.now())
		r.Metrics.reloads.WithLabelValues(g.Name, result(err)).Inc()
		if err != nil {
			// A file that did not exist before and passed the check stays:
			// removing it cannot help the running load balancer, and would
			// keep one that is not running yet (a first deploy) from
			// starting with a config that includes it.
			restored, kept := r.restore(files, g.check != nil)
			switch {
			case restored == 0 && len(kept) > 0:
				err = fmt.Errorf("%w; kept the new, checked files (%s): there was nothing to restore (a first install: start the load balancer, or use --no-reload)", err, strings.Join(kept, ", "))
			default:
				rerr := r.reload(ctx, g)
				if rerr != nil {
					err = fmt.Errorf("%w; restored the previous files, and reloading them failed too: %v", err, rerr)
				} else {
					err = fmt.Errorf("%w; restored the previous files and reloaded them", err)
				}
				if len(kept) > 0 {
					err = fmt.Errorf("%w; kept the new, checked files %s", err, strings.Join(kept, ", "))
				}
			}
			return fail(StepReload, err)
		}
		r.Health.stepOK(g.Name, StepReload, r.now())
		r.Log.Info("reloaded", "group", g.Name)
	}
	return true, time.Time{}, nil
}

// restore puts back the previous content of every file installed in this
// pass, and removes the ones that did not exist unless keepNew is set. It
// returns how many files it restored or removed, and the new files kept.
func (r *Renderer) restore(files []*file, keepNew bool) (restored int, kept []string) {
	for _, f := range files {
		if !f.replaced {
			continue
		}
		if !f.existed && keepNew {
			kept = append(kept, f.t.Destination)
			continue
		}
		var err error
		if f.existed {
			err = replace(f.t.Destination, f.old, f.mode, f.owner)
		} else {
			err = os.Remove(f.t.Destination)
		}
		if err != nil {
			r.Log.Error("restore previous file", "destination", f.t.Destination, "err", err)
			continue
		}
		f.replaced = false
		restored++
	}
	return restored, kept
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
