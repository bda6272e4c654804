package render

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/svcreg/svcreg/registry"
)

// A renderer started anew reads the spellings the one before it saved:
// a service registered as "api" while "API"'s services are behind the
// name does not get the name at the next start, nor in a --once run.
func TestSpellingsSurviveARestart(t *testing.T) {
	t.Parallel()
	state, dir := t.TempDir(), t.TempDir()
	ep := func(id, backend string) registry.Service {
		return svc(id, nil, map[string]string{"ip": "10.0.0.1", "port": "80", "backend": backend})
	}
	cfg := TemplateConfig{Contents: `{{range $b, $eps := endpointsBy "backend" services}}{{$b}}:{{range $eps}}{{.Name}} {{end}}{{end}}`,
		Destination: filepath.Join(dir, "out")}
	var logs bytes.Buffer
	start := func() (*Renderer, *Set) { // a process started anew
		r := NewRenderer(slog.New(slog.NewTextHandler(&logs, nil)), nil, nil)
		r.StateDir = state
		return r, newSet(t, cfg)
	}
	pass := func(r *Renderer, set *Set, want string, services ...registry.Service) {
		t.Helper()
		if res := r.Pass(context.Background(), set, snapshot(services...)); len(res.Failures) != 0 {
			t.Fatal(res.Failures)
		}
		if got := readFile(t, cfg.Destination); got != want {
			t.Errorf("rendered %q; want %q", got, want)
		}
	}
	r, set := start()
	pass(r, set, "API:a-1 ", ep("a-1", "API"))
	pass(r, set, "API:a-1 ", ep("a-0", "api"), ep("a-1", "API"))

	r, set = start()
	pass(r, set, "API:a-1 ", ep("a-0", "api"), ep("a-1", "API"))
	if strings.Contains(logs.String(), "could not") {
		t.Errorf("warnings:\n%s", logs.String())
	}

	// Dry runs read the file and write nothing.
	files, _ := filepath.Glob(filepath.Join(state, "*"))
	if len(files) != 1 {
		t.Fatalf("state files %q; want one", files)
	}
	saved := readFile(t, files[0])
	r, set = start()
	r.Dry, r.DryOut = true, &bytes.Buffer{}
	pass(r, set, "API:a-1 ", ep("a-2", "Api"))
	if got := readFile(t, files[0]); got != saved {
		t.Errorf("a dry pass wrote the state:\n%s\nwas\n%s", got, saved)
	}

	// A file damaged or not this program's is reported, and the renderer
	// chooses anew and writes it again.
	if err := os.WriteFile(files[0], []byte(`{"destination":"`+cfg.Destination+`","spellings":[{"key":"backend","name":"a;b"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	r, set = start()
	pass(r, set, "api:a-0 ", ep("a-0", "api"), ep("a-1", "API"))
	if !strings.Contains(logs.String(), "could not be read") {
		t.Errorf("no warning for a damaged file:\n%s", logs.String())
	}
	r, set = start()
	pass(r, set, "api:a-0 ", ep("a-0", "api"), ep("a-1", "API"))
}

// A state directory that cannot be written is reported when the save
// first fails, not at every pass, and again when it works again; the
// renders go on.
func TestSpellingsStateUnwritable(t *testing.T) {
	t.Parallel()
	parent := t.TempDir()
	state := filepath.Join(parent, "state")
	if err := os.WriteFile(state, nil, 0o600); err != nil { // a file where the directory goes
		t.Fatal(err)
	}
	var logs bytes.Buffer
	r := NewRenderer(slog.New(slog.NewTextHandler(&logs, nil)), nil, nil)
	r.StateDir = state
	cfg := TemplateConfig{Contents: `{{range $b, $eps := endpointsBy "backend" services}}{{$b}} {{end}}`, Destination: filepath.Join(parent, "out")}
	set := newSet(t, cfg)
	for _, b := range []string{"a", "b", "c"} {
		if res := r.Pass(context.Background(), set, snapshot(svc("x", nil, map[string]string{"ip": "10.0.0.1", "port": "80", "backend": b}))); len(res.Failures) != 0 {
			t.Fatal(res.Failures)
		}
	}
	if n := strings.Count(logs.String(), "could not be saved"); n != 1 {
		t.Errorf("%d warnings; want 1:\n%s", n, logs.String())
	}
	if err := os.Remove(state); err != nil {
		t.Fatal(err)
	}
	r.Pass(context.Background(), set, snapshot(svc("x", nil, map[string]string{"ip": "10.0.0.1", "port": "80", "backend": "d"})))
	if !strings.Contains(logs.String(), "saved again") {
		t.Errorf("no note that it is saved again:\n%s", logs.String())
	}
	if got := readFile(t, statePath(state, cfg.Destination)); !strings.Contains(got, `"name": "d"`) {
		t.Errorf("state file:\n%s", got)
	}
}
