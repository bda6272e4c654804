package render

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/svcreg/svcreg/watcher"
)

// probe asks h's handler for path and returns the status and the report.
func probe(t *testing.T, h http.Handler, path string) (int, Report) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	var rep Report
	if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
		t.Fatalf("%s: %v: %s", path, err, rec.Body)
	}
	return rec.Code, rep
}

// /healthz is liveness: synced is enough. /readyz is readiness: it also
// wants a pass, fresh contact, and no group whose last pass failed (here
// min_instances refuses every render).
func TestLivenessAndReadiness(t *testing.T) {
	t.Parallel()
	g := newGroup(t, upstreams)
	contact := time.Now()
	g.r.Health.Watch = func() watcher.Status { return watcher.Status{Synced: true, LastContact: contact} }
	live, ready := g.r.Health, g.r.Health.Ready()
	set := g.set(t, TemplateConfig{MinInstances: 1})
	ctx := context.Background()
	// A file for min_instances to keep (without one it would install).
	writeFile(t, g.dir, "out.conf", "server 10.0.0.9;\n")

	if code, rep := probe(t, ready, "/readyz"); code != 503 || rep.State != "unrendered" {
		t.Errorf("readyz before the first pass: %d %q", code, rep.State)
	}
	empty := snapshot()
	for range 2 {
		g.r.Pass(ctx, set, empty)
		g.r.Health.setRendered(empty)
	}
	if code, rep := probe(t, live, "/healthz"); code != 200 || rep.State != "ok" {
		t.Errorf("healthz while a group fails: %d %q; liveness does not depend on the groups", code, rep.State)
	}
	code, rep := probe(t, ready, "/readyz")
	if code != 503 || rep.State != "failing" || !slices.Equal(rep.Failing, []string{g.dest}) {
		t.Errorf("readyz while a group fails: %d %q failing %q", code, rep.State, rep.Failing)
	}
	lp := rep.Groups[g.dest].LastPass
	if lp == nil || lp.OK || lp.Step != "render" || lp.FailingSince.After(lp.At) || lp.FailingSince.Equal(lp.At) {
		t.Errorf("last pass %+v: want a render failure, failing since the first pass", lp)
	}

	snap := snapshot(svc("a", []string{"www"}, map[string]string{"ip": "10.0.0.1"}))
	g.r.Pass(ctx, set, snap)
	g.r.Health.setRendered(snap)
	if code, rep := probe(t, ready, "/readyz"); code != 200 || rep.State != "ok" || len(rep.Failing) != 0 {
		t.Errorf("readyz after a good pass: %d %q failing %q", code, rep.State, rep.Failing)
	}

	// No answer from the registry for longer than max_stale: not ready,
	// still alive unless the liveness probe asks for max_stale too.
	contact = time.Now().Add(-time.Hour)
	if code, rep := probe(t, ready, "/readyz"); code != 503 || rep.State != "stale" {
		t.Errorf("readyz with an hour-old contact: %d %q", code, rep.State)
	}
	if code, _ := probe(t, ready, "/readyz?max_stale=2h"); code != 200 {
		t.Errorf("readyz?max_stale=2h with an hour-old contact: %d", code)
	}
	if code, _ := probe(t, live, "/healthz"); code != 200 {
		t.Errorf("healthz with an hour-old contact: %d", code)
	}
}

// A re-read whose templates do not parse keeps the ones in use, which go
// on rendering, and is reported until a re-read succeeds: in /healthz's
// and /readyz's bodies (which stay 200: the installed files still follow
// the registry) and in svcreg_template_config_load_failed.
func TestTemplatesNotLoadedReported(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := writeFile(t, dir, "t.tmpl", "v1 {{ len services }}\n")
	load := func() (Config, error) {
		c := Config{Templates: []TemplateConfig{{Source: src, Destination: filepath.Join(dir, "out")}}}
		return c, c.Normalize()
	}
	cfg, _ := load()
	set, err := NewSet(cfg)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	r := NewRenderer(nil, NewMetrics(reg), nil)
	r.Health.Watch = func() watcher.Status { return watcher.Status{Synced: true, LastContact: time.Now()} }
	sets := make(chan *Set, 1)
	rl := NewReloader(nil, load, sets, set)
	rl.Health, rl.Metrics = r.Health, r.Metrics
	snap := snapshot()
	r.Pass(context.Background(), set, snap)
	r.Health.setRendered(snap)

	writeFile(t, dir, "t.tmpl", "v2 {{ len services\n")
	rl.Reload(context.Background(), "template file changed")
	for _, h := range []http.Handler{r.Health, r.Health.Ready()} {
		code, rep := probe(t, h, "/")
		nl := rep.TemplatesNotLoaded
		if code != 200 || rep.State != "ok" || nl == nil || nl.Why != "template file changed" ||
			!strings.Contains(nl.Error, "the templates could not be read or parsed") || !strings.Contains(nl.Error, "t.tmpl:1") {
			t.Fatalf("%d %q, templates_not_loaded %+v; want 200 ok, with the parse error", code, rep.State, nl)
		}
	}
	if v := gauge(t, reg, "svcreg_template_config_load_failed"); v != 1 {
		t.Errorf("svcreg_template_config_load_failed = %v, want 1", v)
	}
	first := r.Health.Report(0).TemplatesNotLoaded
	rl.Reload(context.Background(), "SIGHUP")
	if again := r.Health.Report(0).TemplatesNotLoaded; again == nil || !again.Since.Equal(first.Since) || !again.At.After(first.At) {
		t.Errorf("a second failure %+v; want the same since as the first, %+v", again, first)
	}

	writeFile(t, dir, "t.tmpl", "v3 {{ len services }}\n")
	rl.Reload(context.Background(), "template file changed")
	<-sets
	if nl := r.Health.Report(0).TemplatesNotLoaded; nl != nil {
		t.Errorf("after a good re-read, templates_not_loaded %+v", nl)
	}
	if v := gauge(t, reg, "svcreg_template_config_load_failed"); v != 0 {
		t.Errorf("svcreg_template_config_load_failed = %v after a good re-read, want 0", v)
	}
}

// gauge is the value of the gauge name in reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// A registry's text in the report (a marker, a refused service's id, an
// error) reaches whoever reads /healthz in a terminal (curl): what a
// terminal acts on is written as a JSON escape, and the report decodes
// to the same text.
func TestHealthEscapesRegistryText(t *testing.T) {
	t.Parallel()
	h := NewHealth()
	marker := "m\u009b2J\u202eat\x1b"
	h.Watch = func() watcher.Status { return watcher.Status{Synced: true, Marker: marker, LastError: "e\u009b31m"} }
	for _, path := range []string{"/healthz", "/readyz"} {
		var handler http.Handler = h
		if path == "/readyz" {
			handler = h.Ready()
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if body := rec.Body.String(); strings.ContainsAny(body, "\u009b\u202e\x1b") {
			t.Errorf("%s writes a terminal's controls as they are: %q", path, body)
		}
		if _, rep := probe(t, handler, path); rep.Marker != marker {
			t.Errorf("%s: marker %q, want %q", path, rep.Marker, marker)
		}
	}
}
