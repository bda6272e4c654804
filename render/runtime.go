package render

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
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
					return fmt.Errorf("template %s: runtime_socket and runtime_drain_timeout need runtime = \"haproxy\"", t.Source)
				}
				continue
			}
			if _, ok := runtimeAdapters[t.Runtime]; !ok {
				return fmt.Errorf("template %s: runtime %q is not one of: %s", t.Source, t.Runtime, strings.Join(runtimeNames(), ", "))
			}
			if g.reload == "" && g.reloadSignal == "" {
				return fmt.Errorf("template %s: runtime %q needs a reload (a command or reload_signal) for the changes its runtime API cannot make", t.Source, t.Runtime)
			}
			if _, err := t.runtimeAdapter(nil); err != nil {
				return fmt.Errorf("template %s: %w", t.Source, err)
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
	return runtimeAdapters[t.Runtime](runtime.Settings{Socket: t.RuntimeSocket, DrainTimeout: t.RuntimeDrainTimeout.D(), Log: log})
}

// runtimePass is how a group's change goes through runtime APIs: plans
// to apply, or why the change needs a reload.
type runtimePass struct {
	plans  []runtimePlan
	reload error // the change needs a reload: why
}

type runtimePlan struct {
	t *Template
	runtime.Plan
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
		a, err := f.t.runtimeAdapter(r.Log.With("group", g.Name))
		var p runtime.Plan
		if err == nil {
			p, err = a.Plan(f.old, f.out)
		}
		if err != nil {
			rp.reload = fmt.Errorf("%s: %w", f.t.Destination, err)
			return rp
		}
		rp.plans = append(rp.plans, runtimePlan{f.t, p})
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
			fmt.Fprintf(w, "--- %s: no reload; would send to the %s runtime API at %s:\n", p.t.Destination, p.t.Runtime, p.t.RuntimeSocket)
			for _, c := range p.Commands() {
				fmt.Fprintf(w, "    %s\n", c)
			}
		}
	}
}

// applyRuntime applies the installed files through their runtime APIs. It
// reports false when the group must reload: there is no runtime, the
// change needs a reload, or a runtime API failed (then the reload makes
// the load balancer's live state the installed files').
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
	for _, p := range rp.plans {
		if err := p.Apply(ctx); err != nil {
			step := "other"
			var f *runtime.Failure
			if errors.As(err, &f) {
				step = f.Step
			}
			r.Log.Warn("runtime API failed; reloading instead", "group", g.Name, "destination", p.t.Destination, "runtime", p.t.Runtime, "err", err)
			r.Metrics.runtime.passes.WithLabelValues(g.Name, "fallback").Inc()
			r.Metrics.runtime.failures.WithLabelValues(g.Name, step).Inc()
			r.Health.recordRuntime(g.Name, RuntimeHealth{At: r.now(), Outcome: "fallback", Reason: err.Error()})
			return false
		}
	}
	r.Metrics.runtime.passes.WithLabelValues(g.Name, "applied").Inc()
	r.Health.recordRuntime(g.Name, RuntimeHealth{At: r.now(), Outcome: "applied"})
	r.Log.Info("applied through the runtime API, no reload", "group", g.Name, "took", time.Since(start))
	return true
}

// RuntimeHealth is how a group's last change went through its runtime
// API.
type RuntimeHealth struct {
	At time.Time `json:"at"`
	// Outcome is applied (through the runtime API, without a reload),
	// reload (the change needed a reload) or fallback (the runtime API
	// failed, so the group reloaded).
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
			Help: "Changes of templates with a runtime, by reload group and outcome: applied (through the runtime API, no reload), reload (the change needed one), fallback (the runtime API failed; reloaded).",
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
