package render

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/svcreg/svcreg/registry"
)

// spellTemplate lists each name endpointsBy serves, with its services.
const spellTemplate = `{{range $b, $eps := endpointsBy "backend" services}}{{$b}}:{{range $eps}}{{.Name}} {{end}}{{end}}`

// backendEP is a good service of the name backend.
func backendEP(id, backend string) registry.Service {
	return svc(id, nil, map[string]string{"ip": "10.0.0.1", "port": "80", "backend": backend})
}

// A renderer started anew reads the spellings the one before it saved:
// a service registered as "api" while "API"'s services are behind the
// name does not get the name at the next start, nor in a --once run.
func TestSpellingsSurviveARestart(t *testing.T) {
	t.Parallel()
	state, dir := t.TempDir(), t.TempDir()
	cfg := TemplateConfig{Contents: spellTemplate,
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
	pass(r, set, "API:a-1 ", backendEP("a-1", "API"))
	pass(r, set, "API:a-1 ", backendEP("a-0", "api"), backendEP("a-1", "API"))

	r, set = start()
	pass(r, set, "API:a-1 ", backendEP("a-0", "api"), backendEP("a-1", "API"))
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
	var dry bytes.Buffer
	r.Dry, r.DryOut = true, &dry
	r.Pass(context.Background(), set, snapshot(backendEP("a-0", "api"), backendEP("a-1", "API")))
	if dry.Len() != 0 { // API kept, as installed: nothing would change
		t.Errorf("a dry pass would change the file:\n%s", dry.String())
	}
	r.Pass(context.Background(), set, snapshot(backendEP("a-2", "Api"))) // API absent: a change to save
	if got := readFile(t, files[0]); got != saved {
		t.Errorf("a dry pass wrote the state:\n%s\nwas\n%s", got, saved)
	}

	// A file damaged or not this program's is reported, and the renderer
	// chooses anew and writes it again.
	if err := os.WriteFile(files[0], []byte(`{"destination":"`+cfg.Destination+`","spellings":[{"key":"backend","name":"a;b"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	r, set = start()
	pass(r, set, "api:a-0 ", backendEP("a-0", "api"), backendEP("a-1", "API"))
	if !strings.Contains(logs.String(), "could not be read") {
		t.Errorf("no warning for a damaged file:\n%s", logs.String())
	}
	r, set = start()
	pass(r, set, "api:a-0 ", backendEP("a-0", "api"), backendEP("a-1", "API"))
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
	for _, b := range []string{"A", "B", "C"} { // not all lowercase: saved
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
	r.Pass(context.Background(), set, snapshot(svc("x", nil, map[string]string{"ip": "10.0.0.1", "port": "80", "backend": "D"})))
	if !strings.Contains(logs.String(), "saved again") {
		t.Errorf("no note that it is saved again:\n%s", logs.String())
	}
	if got := readFile(t, statePath(state, cfg.Destination)); !strings.Contains(got, `"name": "D"`) {
		t.Errorf("state file:\n%s", got)
	}
}

// A render min_instances refused, installed where there was no file (a
// first deploy), keeps its spellings: a restart keeps serving them.
func TestSpellingsOfAGuardedFirstRender(t *testing.T) {
	t.Parallel()
	state, dir := t.TempDir(), t.TempDir()
	cfg := TemplateConfig{Contents: spellTemplate,
		Destination: filepath.Join(dir, "out"), MinInstances: 2}
	pass := func(want string, services ...registry.Service) {
		t.Helper()
		r := NewRenderer(nil, nil, nil)
		r.StateDir = state
		r.Pass(context.Background(), newSet(t, cfg), snapshot(services...))
		if got := readFile(t, cfg.Destination); got != want {
			t.Errorf("rendered %q; want %q", got, want)
		}
	}
	pass("API:a-1 ", backendEP("a-1", "API"))
	pass("API:a-1 a-2 ", backendEP("a-0", "api"), backendEP("a-1", "API"), backendEP("a-2", "API"), backendEP("a-3", "api"))
}

// Only a regular file of this user's is read: a FIFO put at the path
// (which would hold the renderer up), a link, or (as root) a file another
// user put in the directory is reported and the renderer chooses anew.
func TestSpellingsStateFileNotOurs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dest := filepath.Join(dir, "out")
	cfg := TemplateConfig{Contents: `{{range $b, $eps := endpointsBy "backend" services}}{{$b}} {{end}}`, Destination: dest}
	ours := t.TempDir()
	r := NewRenderer(nil, nil, nil)
	r.StateDir = ours
	r.Pass(context.Background(), newSet(t, cfg), snapshot(svc("a-1", nil, map[string]string{"ip": "10.0.0.1", "port": "80", "backend": "API"})))
	good := readFile(t, statePath(ours, dest))

	cases := map[string]func(path string) error{
		"fifo":    func(path string) error { return syscall.Mkfifo(path, 0o600) },
		"symlink": func(path string) error { return os.Symlink(statePath(ours, dest), path) },
	}
	if os.Geteuid() == 0 {
		cases["another user's"] = func(path string) error {
			if err := os.WriteFile(path, []byte(good), 0o644); err != nil {
				return err
			}
			return os.Chown(path, 65534, 65534)
		}
	} else {
		t.Log("not root: the case of a file another user owns is not tried")
	}
	for name, put := range cases {
		state := t.TempDir()
		if err := put(statePath(state, dest)); err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		r := NewRenderer(slog.New(slog.NewTextHandler(&logs, nil)), nil, nil)
		r.StateDir = state
		done := make(chan struct{})
		go func() {
			defer close(done)
			r.Pass(context.Background(), newSet(t, cfg), snapshot(svc("a-0", nil, map[string]string{"ip": "10.0.0.1", "port": "80", "backend": "api"}),
				svc("a-1", nil, map[string]string{"ip": "10.0.0.1", "port": "80", "backend": "API"})))
		}()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: the pass still waits after 30s", name)
		}
		if got := readFile(t, dest); got != "api " {
			t.Errorf("%s: rendered %q; want the lowercase rule's api", name, got)
		}
		if !strings.Contains(logs.String(), "could not be read") {
			t.Errorf("%s: no warning:\n%s", name, logs.String())
		}
	}
}

// An all-lowercase spelling kept beside another is saved too: a restart
// while its services are gone for a moment (a rolling restart) must not
// hand the name to the other for good.
func TestSpellingsLowercaseKeptBesideAnother(t *testing.T) {
	t.Parallel()
	state, dir := t.TempDir(), t.TempDir()
	cfg := TemplateConfig{Contents: spellTemplate,
		Destination: filepath.Join(dir, "out")}
	start := func() (*Renderer, *Set) {
		r := NewRenderer(nil, nil, nil)
		r.StateDir = state
		return r, newSet(t, cfg)
	}
	pass := func(r *Renderer, set *Set, want string, services ...registry.Service) {
		t.Helper()
		r.Pass(context.Background(), set, snapshot(services...))
		if got := readFile(t, cfg.Destination); got != want {
			t.Errorf("rendered %q; want %q", got, want)
		}
	}
	r, set := start()
	pass(r, set, "api:a-0 ", backendEP("a-0", "api"), backendEP("a-1", "API"))
	r, set = start() // every api instance restarting
	pass(r, set, "API:a-1 ", backendEP("a-1", "API"))
	pass(r, set, "api:a-0 ", backendEP("a-0", "api"), backendEP("a-1", "API"))
}

// A render min_instances refused that is not installed (the old file is
// kept) keeps no spelling: its choices never went live.
func TestSpellingsOfAGuardedRenderNotInstalled(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := TemplateConfig{Contents: spellTemplate,
		Destination: filepath.Join(dir, "out"), MinInstances: 2}
	r, set := NewRenderer(nil, nil, nil), newSet(t, cfg)
	r.StateDir = t.TempDir()
	pass := func(want string, services ...registry.Service) {
		t.Helper()
		r.Pass(context.Background(), set, snapshot(services...))
		if got := readFile(t, cfg.Destination); got != want {
			t.Errorf("rendered %q; want %q", got, want)
		}
	}
	pass("web:w-1 w-2 ", backendEP("w-1", "web"), backendEP("w-2", "web"))
	pass("web:w-1 w-2 ", backendEP("a-1", "API")) // refused: the file is kept
	pass("api:a-0 web:w-1 w-2 ", backendEP("a-0", "api"), backendEP("a-1", "API"), backendEP("w-1", "web"), backendEP("w-2", "web"))
}

// A state file written before the first time served was kept takes it as
// the time last seen: such names do not outrank every name seen since.
func TestSpellingsStateWithoutSince(t *testing.T) {
	t.Parallel()
	dest := filepath.Join(t.TempDir(), "out")
	seen := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	data, err := json.Marshal(stateFile{Destination: stateDest(dest), Spellings: []savedSpell{{Key: "backend", Name: "API", Seen: seen}}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := decodeSpellings(dest, data)
	if err != nil {
		t.Fatal(err)
	}
	if sp := s[spellingKey("backend", "api")]; sp.name != "API" || !sp.since.Equal(seen) {
		t.Errorf("decoded %+v; want API, first served when last seen", sp)
	}
}

// The state file is written again once the times a name was last seen
// moved on by half the grace: a renderer started anew must not take a
// backend served all along for one gone since the file was written (and
// serve it anew, as if first served then).
func TestSpellingsStateKeepsSeenCurrent(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	k := spellingKey("backend", "api")
	saved := spellings{k: {name: "API", since: t0, seen: t0}}
	for _, tc := range []struct {
		seen time.Time
		same bool
	}{
		{t0.Add(time.Minute), true},
		{t0.Add(spellingGrace / 2), false},
	} {
		now := spellings{k: {name: "API", since: t0, seen: tc.seen}}
		if got := sameChoices(now, saved); got != tc.same {
			t.Errorf("seen %v after the saved time: same %v, want %v", tc.seen.Sub(t0), got, tc.same)
		}
	}
}

// A name that is not contested, new in a pass, is written with the first
// write spellingGrace/2 or more after the last, not at once: a registry
// whose names keep changing would have the whole file written at every
// pass. A contested one is written at once.
func TestSpellingsStateWritesNewNamesLater(t *testing.T) {
	t.Parallel()
	state, dir := t.TempDir(), t.TempDir()
	cfg := TemplateConfig{Contents: spellTemplate, Destination: filepath.Join(dir, "out")}
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := NewRenderer(nil, nil, nil)
	r.StateDir = state
	r.now = func() time.Time { return clock }
	set := newSet(t, cfg)
	saved := func() string {
		t.Helper()
		return readFile(t, statePath(state, cfg.Destination))
	}
	r.Pass(context.Background(), set, snapshot(backendEP("a-1", "API")))
	if !strings.Contains(saved(), `"API"`) {
		t.Fatalf("the first pass saved %s", saved())
	}
	withBar := snapshot(backendEP("a-1", "API"), backendEP("b-1", "BAR"))
	r.Pass(context.Background(), set, withBar)
	if strings.Contains(saved(), `"BAR"`) {
		t.Errorf("a new name not contested was written at once: %s", saved())
	}
	clock = clock.Add(spellingGrace / 2)
	r.Pass(context.Background(), set, withBar)
	if !strings.Contains(saved(), `"BAR"`) {
		t.Errorf("a new name not contested was not written %v later: %s", spellingGrace/2, saved())
	}
	// (Spellings are saved with a change of the group's files.)
	r.Pass(context.Background(), set, snapshot(backendEP("a-1", "API"), backendEP("a-0", "api"), backendEP("b-1", "BAR"), backendEP("c-1", "c")))
	if got := saved(); !strings.Contains(got, `"rival": true`) {
		t.Errorf("a contested name was not written at once: %s", got)
	}
}

// A state file holds at most maxSavedSpellings names and maxSavedBytes,
// the contested ones first, whatever a template remembers and however
// long its metadata key: else the renderer could write a file that it
// refuses, past maxStateFile, to read at its next start. Cut so, it is
// not written again at every pass.
func TestSpellingsStateFileIsBounded(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, key := range []string{"backend", strings.Repeat("<k>", 85)} {
		s := spellings{}
		for i := range maxSavedSpellings + 1000 {
			name := fmt.Sprintf("N%064d", i)[:maxIdentifier]
			s[spellingKey(key, strings.ToLower(name))] = spelling{name: name, since: now, seen: now.Add(time.Duration(i) * time.Millisecond)}
		}
		contested := spellingKey(key, "api")
		s[contested] = spelling{name: "API", since: now, seen: now.Add(-time.Hour), absent: now, rival: true}
		keep := persisted(s)
		if len(keep) > maxSavedSpellings || keep.remembered(contested) != "API" {
			t.Fatalf("key of %d bytes: saved %d names (API %q); want at most %d, with API", len(key), len(keep), keep.remembered(contested), maxSavedSpellings)
		}
		data, err := json.MarshalIndent(stateFile{Destination: "/x", Spellings: encodeSpellings(keep)}, "", "\t")
		if err != nil || len(data) > maxStateFile {
			t.Errorf("key of %d bytes: the file takes %d bytes (%v); a reader takes %d", len(key), len(data), err, maxStateFile)
		}
		if again := persisted(s); !sameChoices(again, keep) || urgent(again, keep) {
			t.Errorf("key of %d bytes: the names cut make the file be written again", len(key))
		}
	}
}
