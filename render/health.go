package render

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/svcreg/svcreg/watcher"
)

// StepResult is the outcome of one step of a group's last pass through it.
type StepResult struct {
	At    time.Time `json:"at"`
	OK    bool      `json:"ok"`
	Error string    `json:"error,omitempty"`
}

// GroupHealth is a reload group's last results, per step.
type GroupHealth struct {
	Render  *StepResult `json:"render,omitempty"`
	Check   *StepResult `json:"check,omitempty"`
	Install *StepResult `json:"install,omitempty"`
	Reload  *StepResult `json:"reload,omitempty"`
	// Runtime is set for groups with a runtime API.
	Runtime *RuntimeHealth `json:"runtime,omitempty"`
}

// Health collects what /healthz reports: the watcher's status, the snapshot
// rendered last, and each group's last results.
type Health struct {
	mu       sync.Mutex
	groups   map[string]*GroupHealth
	rendered *watcher.Snapshot
	// Watch returns the watcher's status; nil when there is none.
	Watch func() watcher.Status
	now   func() time.Time
}

// NewHealth returns an empty Health.
func NewHealth() *Health {
	return &Health{groups: map[string]*GroupHealth{}, now: time.Now}
}

func (h *Health) record(group string, step FailureKind, err error, at time.Time) {
	r := &StepResult{At: at, OK: err == nil}
	if err != nil {
		r.Error = err.Error()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	g := h.groups[group]
	if g == nil {
		g = &GroupHealth{}
		h.groups[group] = g
	}
	switch step {
	case RenderFailed:
		g.Render = r
	case CheckFailed:
		g.Check = r
	case InstallFailed:
		g.Install = r
	case ReloadFailed:
		g.Reload = r
	}
}

func (h *Health) setRendered(snap *watcher.Snapshot) {
	h.mu.Lock()
	h.rendered = snap
	h.mu.Unlock()
}

// Report is the /healthz answer.
type Report struct {
	State string `json:"status"` // ok, unsynced or stale
	watcher.Status
	// StaleSeconds is how long ago the registry last answered.
	StaleSeconds float64 `json:"stale_seconds"`
	// LastChangeAgeSeconds is how long ago the rendered snapshot last
	// changed.
	LastChangeAgeSeconds float64 `json:"last_change_age_seconds"`
	// RenderedMarker is the feed position the installed files reflect.
	RenderedMarker string                  `json:"rendered_marker,omitempty"`
	Groups         map[string]*GroupHealth `json:"groups"`
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
	r.Groups = make(map[string]*GroupHealth, len(h.groups))
	for name, g := range h.groups {
		c := *g
		r.Groups[name] = &c
	}
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

// ServeHTTP answers /healthz: 200 when synced (and, with ?max_stale=30s,
// not staler than that), 503 otherwise; the body says why.
func (h *Health) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var maxStale time.Duration
	if v := r.URL.Query().Get("max_stale"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			http.Error(w, "max_stale: "+err.Error(), http.StatusBadRequest)
			return
		}
		maxStale = d
	}
	rep := h.Report(maxStale)
	code := http.StatusOK
	if rep.State != "ok" {
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(rep)
}
