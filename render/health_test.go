package render

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

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
