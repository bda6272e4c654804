package render

import (
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/svcreg/svcreg/internal/printable"
	"github.com/svcreg/svcreg/watcher"
)

// StepResult is the outcome of one step of a group's last pass through it.
type StepResult struct {
	At    time.Time `json:"at"`
	OK    bool      `json:"ok"`
	Error string    `json:"error,omitempty"`
}

// GroupHealth is a reload group's last results, per step, and the outcome
// of its last pass.
type GroupHealth struct {
	// LastPass is the group's last pass as a whole: OK when it rendered
	// and, if its output changed, checked, installed and reloaded it.
	LastPass *PassStatus `json:"last_pass,omitempty"`
	Render   *StepResult `json:"render,omitempty"`
	Check    *StepResult `json:"check,omitempty"`
	Install  *StepResult `json:"install,omitempty"`
	Reload   *StepResult `json:"reload,omitempty"`
	// Refused are the services the group's last renders left out, and
	// the values whose default they used, and why: the first
	// maxHealthRefused of them; RefusedCount is how many there are in all.
	Refused      []Refusal `json:"refused,omitempty"`
	RefusedCount int       `json:"refused_count,omitempty"`
	// refused is every refusal, by template.
	refused map[string][]Refusal
	// Runtime is set for groups with a runtime API.
	Runtime *RuntimeHealth `json:"runtime,omitempty"`
}

// maxHealthRefused caps the refusals /healthz lists for a group.
const maxHealthRefused = 100

// PassStatus is the outcome of a group's last pass.
type PassStatus struct {
	At time.Time `json:"at"`
	OK bool      `json:"ok"`
	// Step and Error say what failed.
	Step  string `json:"step,omitempty"`
	Error string `json:"error,omitempty"`
	// FailingSince is when the group's passes started failing.
	FailingSince time.Time `json:"failing_since,omitzero"`
}

// LoadFailure is a configuration or templates re-read (on SIGHUP, or a
// changed template file) that could not be loaded: the ones in use are
// kept, and go on rendering.
type LoadFailure struct {
	// Why is what asked for the re-read: "SIGHUP", "template file changed".
	Why   string    `json:"why"`
	Error string    `json:"error"`
	At    time.Time `json:"at"`
	// Since is the first of the failures in a row.
	Since time.Time `json:"since"`
}

// Health collects what /healthz reports: the watcher's status, the snapshot
// rendered last, and each group's last results.
type Health struct {
	mu       sync.Mutex
	groups   map[string]*GroupHealth
	loadErr  *LoadFailure
	rendered *watcher.Snapshot
	// Watch returns the watcher's status; nil when there is none.
	Watch func() watcher.Status
	now   func() time.Time
}

// NewHealth returns an empty Health.
func NewHealth() *Health {
	return &Health{groups: map[string]*GroupHealth{}, now: time.Now}
}

// Step is a step of a group's pass, as /healthz and a Failure name it;
// staging a file is part of install.
type Step int

// The steps, in their order; a failure of a later step is the worse one.
const (
	StepRender Step = iota + 1
	StepCheck
	StepInstall
	StepReload
)

func (s Step) String() string {
	switch s {
	case StepRender:
		return "render"
	case StepCheck:
		return "check"
	case StepInstall:
		return "install"
	case StepReload:
		return "reload"
	}
	return "unknown"
}

// stepOK records that a group's step succeeded.
func (h *Health) stepOK(group string, s Step, at time.Time) {
	h.setStep(group, s, &StepResult{At: at, OK: true})
}

// stepFailed records a group's failed step.
func (h *Health) stepFailed(f Failure, at time.Time) {
	h.setStep(f.Group, f.Step, &StepResult{At: at, Error: f.Err.Error()})
}

func (h *Health) setStep(group string, s Step, r *StepResult) {
	h.mu.Lock()
	defer h.mu.Unlock()
	g := h.group(group)
	switch s {
	case StepRender:
		g.Render = r
	case StepCheck:
		g.Check = r
	case StepInstall:
		g.Install = r
	case StepReload:
		g.Reload = r
	}
}

// group returns a group's health, made on first use; h.mu must be held.
func (h *Health) group(name string) *GroupHealth {
	g := h.groups[name]
	if g == nil {
		g = &GroupHealth{}
		h.groups[name] = g
	}
	return g
}

// passed records the outcome of a group's pass; f is nil on success.
func (h *Health) passed(group string, f *Failure, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	g := h.group(group)
	p := &PassStatus{At: at, OK: f == nil}
	if f != nil {
		p.Step, p.Error, p.FailingSince = f.Step.String(), f.Err.Error(), at
		if g.LastPass != nil && !g.LastPass.OK {
			p.FailingSince = g.LastPass.FailingSince
		}
	}
	g.LastPass = p
}

// loaded records whether a re-read of the config and templates succeeded
// (err nil).
func (h *Health) loaded(why string, err error, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		h.loadErr = nil
		return
	}
	f := &LoadFailure{Why: why, Error: err.Error(), At: at, Since: at}
	if h.loadErr != nil {
		f.Since = h.loadErr.Since
	}
	h.loadErr = f
}

// keep forgets the groups that are not set's, and the refusals of
// templates no longer in their group: a reload of the configuration
// renamed or removed them, and their last results, a failure among them,
// would be reported (and hold /readyz at failing) for ever.
func (h *Health) keep(set *Set) {
	h.mu.Lock()
	defer h.mu.Unlock()
	templates := set.templatesBy((*Template).Name)
	for name, g := range h.groups {
		names, ok := templates[name]
		if !ok {
			delete(h.groups, name)
			continue
		}
		n := len(g.refused)
		for tmpl := range g.refused {
			if !names[tmpl] {
				delete(g.refused, tmpl)
			}
		}
		if len(g.refused) != n {
			g.listRefused()
		}
	}
}

func (h *Health) setRendered(snap *watcher.Snapshot) {
	h.mu.Lock()
	h.rendered = snap
	h.mu.Unlock()
}

// Report is the /healthz answer.
type Report struct {
	// State is ok, unsynced or stale; for readiness also unrendered (no
	// pass yet) or failing (a group's last pass failed).
	State string `json:"status"`
	// Failing names the groups whose last pass failed.
	Failing []string `json:"failing,omitempty"`
	watcher.Status
	// StaleSeconds is how long ago the registry last answered.
	StaleSeconds float64 `json:"stale_seconds"`
	// LastChangeAgeSeconds is how long ago the rendered snapshot last
	// changed.
	LastChangeAgeSeconds float64 `json:"last_change_age_seconds"`
	// RenderedMarker is the feed position the installed files reflect.
	RenderedMarker string `json:"rendered_marker,omitempty"`
	// TemplatesNotLoaded is set while the last re-read of the config and
	// templates failed: the ones in use are kept and go on rendering, so
	// it does not change State.
	TemplatesNotLoaded *LoadFailure            `json:"templates_not_loaded,omitempty"`
	Groups             map[string]*GroupHealth `json:"groups"`
}

// Report builds the current report. maxStale, if positive, makes a report
// older than it "stale".
func (h *Health) Report(maxStale time.Duration) Report {
	now := h.now()
	var r Report
	if h.Watch != nil {
		r.Status = h.Watch()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.loadErr != nil {
		f := *h.loadErr
		r.TemplatesNotLoaded = &f
	}
	r.Groups = make(map[string]*GroupHealth, len(h.groups))
	for name, g := range h.groups {
		c := *g
		r.Groups[name] = &c
		if g.LastPass != nil && !g.LastPass.OK {
			r.Failing = append(r.Failing, name)
		}
	}
	slices.Sort(r.Failing)
	if h.rendered != nil {
		r.RenderedMarker = h.rendered.Marker
		r.LastChangeAgeSeconds = now.Sub(h.rendered.ChangedAt).Seconds()
	}
	if !r.LastContact.IsZero() {
		r.StaleSeconds = now.Sub(r.LastContact).Seconds()
	}
	switch {
	case !r.Synced:
		r.State = "unsynced"
	case maxStale > 0 && r.StaleSeconds > maxStale.Seconds():
		r.State = "stale"
	default:
		r.State = "ok"
	}
	return r
}

// DefaultReadyMaxStale is how long /readyz tolerates no answer from the
// registry when the probe does not say: a few of the watcher's long-polls
// (60s each), so that one slow or lost poll does not flap it.
const DefaultReadyMaxStale = 3 * time.Minute

// Readiness is Report for /readyz: besides unsynced and stale (by maxStale,
// DefaultReadyMaxStale if zero), the state is unrendered until the first
// pass and failing while a group's last pass failed.
func (h *Health) Readiness(maxStale time.Duration) Report {
	if maxStale <= 0 {
		maxStale = DefaultReadyMaxStale
	}
	r := h.Report(maxStale)
	if r.State != "ok" {
		return r
	}
	h.mu.Lock()
	rendered := h.rendered != nil
	h.mu.Unlock()
	switch {
	case !rendered:
		r.State = "unrendered"
	case len(r.Failing) > 0:
		r.State = "failing"
	}
	return r
}

// ServeHTTP answers /healthz, the liveness probe: 200 when synced (and,
// with ?max_stale=30s, not staler than that), 503 otherwise; the body says
// why. A failing group does not make it fail: restarting the daemon would
// not cure a bad template or a load balancer that refuses a reload.
func (h *Health) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.serve(w, r, h.Report)
}

// Ready returns the /readyz handler, the readiness probe: 200 when synced,
// the registry answered within ?max_stale (DefaultReadyMaxStale by
// default), a pass ran, and every group's last pass succeeded, so the
// installed files reflect the registry; 503 otherwise.
func (h *Health) Ready() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.serve(w, r, h.Readiness) })
}

func (h *Health) serve(w http.ResponseWriter, r *http.Request, report func(time.Duration) Report) {
	var maxStale time.Duration
	if v := r.URL.Query().Get("max_stale"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			http.Error(w, "max_stale: "+err.Error(), http.StatusBadRequest)
			return
		}
		maxStale = d
	}
	rep := report(maxStale)
	code := http.StatusOK
	if rep.State != "ok" {
		code = http.StatusServiceUnavailable
	}
	// The report holds the registry's text (markers, refused services'
	// ids, errors): what a terminal would act on (a C1 control, a bidi
	// override), which encoding/json writes as it is, is escaped, for
	// whoever reads it with curl.
	b, _ := printable.IndentedJSON(rep, true)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(b)
}
