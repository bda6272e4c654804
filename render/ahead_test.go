package render

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/haproxytest"
	"github.com/svcreg/svcreg/internal/retry"
	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/watcher"
)

// The checks and installs of the files applied through the runtime API,
// which run behind the render loop, against the real HAProxy.

// aheadTemplate renders backend api from the services tagged http, and a
// backend of its own for each service tagged admin (a change that
// reloads).
const aheadTemplate = `backend api
    balance roundrobin
{{- range servicesWithTag "http" }}
    server {{ .ID }} 127.0.0.1:{{ .Metadata.port }}{{ with .Metadata.extra }} {{ . }}{{ end }}
{{- end }}
{{- range servicesWithTag "admin" }}

backend {{ .ID }}
    server {{ .ID }} 127.0.0.1:{{ .Metadata.port }}
{{- end }}
`

// aheadSetup is HAProxy, a renderer with a runtime template for it, and a
// check that waits for a gate to open, logs what it checked (the number of
// backends) and fails a file that holds "failcheck".
type aheadSetup struct {
	h       *haproxytest.HAProxy
	r       *Renderer
	set     *Set
	gate    string
	started string // one line per check started
	checked string // one line per check: the number of backends
	reloads string // one line per reload
}

func newAheadSetup(t *testing.T) *aheadSetup {
	t.Helper()
	s := &aheadSetup{h: haproxytest.Start(t, "backend api\n    balance roundrobin\n", false)}
	dir := t.TempDir()
	s.gate, s.checked, s.reloads = filepath.Join(dir, "gate"), filepath.Join(dir, "checked"), filepath.Join(dir, "reloads")
	s.started = filepath.Join(dir, "started")
	check := fmt.Sprintf(`echo started >> %s; while [ ! -e %s ]; do sleep 0.01; done; grep -c ^backend {{.Staged}} >> %s; ! grep -q failcheck {{.Staged}} && %s`,
		s.started, s.gate, s.checked, s.h.CheckCommand())
	s.set = newSet(t, TemplateConfig{
		Contents:      aheadTemplate,
		Destination:   s.h.Backends,
		Check:         check,
		Reload:        fmt.Sprintf("echo reload >> %s && %s", s.reloads, s.h.ReloadCommand()),
		Runtime:       "haproxy",
		RuntimeSocket: s.h.Socket,
	})
	s.r = NewRenderer(nil, nil, nil)
	return s
}

func (s *aheadSetup) open(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(s.gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// live returns HAProxy's servers of backend api.
func (s *aheadSetup) live(t *testing.T) []string {
	t.Helper()
	out, err := haproxytest.Command(s.h.Socket, "show servers state api")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n")[2:] {
		if f := strings.Fields(l); len(f) > 3 {
			names = append(names, f[3])
		}
	}
	slices.Sort(names)
	return names
}

// sessions returns the sessions HAProxy counts on server of backend api
// now (scur of "show stat").
func (s *aheadSetup) sessions(t *testing.T, server string) int {
	t.Helper()
	csv := func(l string) []string { return strings.Split(l, ",") }
	return s.serverField(t, "show stat", csv, statFields{backend: 0, server: 1, value: 4}, server, 0)
}

// adminDrain is the drain bit of a server's srv_admin_state.
const adminDrain = 0x08

// adminState returns server's srv_admin_state in backend api ("show
// servers state"), or -1 if HAProxy has no such server.
func (s *aheadSetup) adminState(t *testing.T, server string) int {
	t.Helper()
	return s.serverField(t, "show servers state api", strings.Fields, statFields{backend: 1, server: 3, value: 6}, server, -1)
}

// statFields are the positions of the fields serverField reads.
type statFields struct{ backend, server, value int }

// serverField runs cmd and returns the number in field at.value of
// server's line in backend api, or none if there is no such line. split
// cuts a line into fields; lines starting with "#" are headers.
func (s *aheadSetup) serverField(t *testing.T, cmd string, split func(string) []string, at statFields, server string, none int) int {
	t.Helper()
	out, err := haproxytest.Command(s.h.Socket, cmd)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(out, "\n") {
		f := split(l)
		if strings.HasPrefix(l, "#") || len(f) <= at.value || f[at.backend] != "api" || f[at.server] != server {
			continue
		}
		n, err := strconv.Atoi(f[at.value])
		if err != nil {
			t.Fatalf("%s: field %d %q of api/%s is not a number", cmd, at.value, f[at.value], server)
		}
		return n
	}
	return none
}

func httpSvc(id, port, extra string) registry.Service {
	return svc(id, []string{"http"}, map[string]string{"port": port, "extra": extra})
}

func lineCount(path string) []string {
	b, _ := os.ReadFile(path)
	return strings.Fields(string(b))
}

// Changes applied one after the other while the check of the first runs
// are checked as one (the latest): the first is installed, the second
// never checked; when the latest fails its check, the live state goes
// back from it to the installed file (the first), without a reload.
func TestAheadCheckFailsRevertsEveryAppliedChange(t *testing.T) {
	t.Parallel()
	s := newAheadSetup(t)
	ctx := context.Background()
	installed := readFile(t, s.h.Backends)
	for i, snap := range []*watcher.Snapshot{
		snapshot(httpSvc("a", "9001", "")),
		snapshot(httpSvc("a", "9001", ""), httpSvc("b", "9002", "# failcheck")),
		snapshot(httpSvc("a", "9001", "weight 5"), httpSvc("b", "9002", "# failcheck"), httpSvc("c", "9003", "")),
	} {
		if res := s.r.Pass(ctx, s.set, snap); len(res.Failures) > 0 || res.Installed > 0 {
			t.Fatalf("a pass that goes through the runtime API: %+v", res)
		}
		if i == 0 {
			waitFor(t, "the first check", func() bool { return len(lineCount(s.started)) == 1 })
		}
	}
	if got := s.live(t); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("live servers before the check %v, want a, b, c", got)
	}
	s.open(t)
	res := s.r.Settle(ctx, s.set)
	if w := res.Worst(); w == nil || w.Step != StepCheck {
		t.Fatalf("Settle: %+v, want the check's failure", res)
	}
	if got := s.live(t); !slices.Equal(got, []string{"a"}) {
		t.Errorf("live servers after the revert %v, want a (the installed file's)", got)
	}
	if out, _ := haproxytest.Command(s.h.Socket, "show servers state api"); !strings.Contains(out, " a 127.0.0.1 2 0 1 1 ") {
		t.Errorf("a is not back at weight 1, ready:\n%s", out)
	}
	if got := readFile(t, s.h.Backends); got == installed || strings.Contains(got, "failcheck") || !strings.Contains(got, "server a 127.0.0.1:9001\n") {
		t.Errorf("the installed file is not the first change's:\n%s", got)
	}
	// The first file was replaced while it was checked: only it and the
	// latest were checked.
	if got := lineCount(s.checked); len(got) != 2 {
		t.Errorf("%d checks, want 2 (the first file, then the latest)", len(got))
	}
	if n := lineCount(s.reloads); len(n) != 0 {
		t.Errorf("%d reloads; the revert needs none", len(n))
	}
	if rt := s.r.Health.Report(time.Hour).Groups[s.set.Groups[0].Name].Runtime; rt == nil || rt.Outcome != "reverted" {
		t.Errorf("health's runtime outcome is %+v, want reverted", rt)
	}

	// The next change is checked and installed before it goes live, as
	// the last one failed its check, then applied through the runtime API.
	if res := s.r.Pass(ctx, s.set, snapshot(httpSvc("d", "9004", ""))); len(res.Failures) > 0 || res.Installed != 1 {
		t.Fatalf("the pass after the failed check: %+v, want the change checked, installed and applied", res)
	}
	if res := s.r.Settle(ctx, s.set); len(res.Failures) > 0 { // a's drain
		t.Fatalf("Settle: %+v", res)
	}
	if got := s.live(t); !slices.Equal(got, []string{"d"}) {
		t.Errorf("live servers %v, want d", got)
	}
	if n := len(lineCount(s.checked)); n != 3 {
		t.Errorf("%d checks, want 3", n)
	}
	// The one after it goes through the runtime API again.
	s.r.Pass(ctx, s.set, snapshot(httpSvc("d", "9004", ""), httpSvc("e", "9005", "")))
	if res := s.r.Settle(ctx, s.set); len(res.Failures) > 0 || res.Installed != 1 {
		t.Fatalf("Settle after a good change: %+v", res)
	}
	if got := s.live(t); !slices.Equal(got, []string{"d", "e"}) {
		t.Errorf("live servers %v, want d, e", got)
	}
	if got := readFile(t, s.h.Backends); !strings.Contains(got, "server e 127.0.0.1:9005") {
		t.Errorf("the checked file was not installed:\n%s", got)
	}
	if n := lineCount(s.reloads); len(n) != 0 {
		t.Errorf("%d reloads, want none", len(n))
	}
}

// A change applied through the runtime API whose check fails once (a
// check timing out on a loaded machine, an operator's broken main config
// fixed since) is tried again after the loop's backoff, with nothing new
// from the registry, until it passes: checked and installed before it
// goes live, then applied.
func TestAheadFailedCheckIsRetried(t *testing.T) {
	t.Parallel()
	s := &aheadSetup{h: haproxytest.Start(t, "backend api\n    balance roundrobin\n", false)}
	dir := t.TempDir()
	failed, checks := filepath.Join(dir, "failed-once"), filepath.Join(dir, "checks")
	s.set = newSet(t, TemplateConfig{
		Contents:      aheadTemplate,
		Destination:   s.h.Backends,
		Check:         fmt.Sprintf(`echo check >> %s; if [ ! -e %s ]; then touch %s; exit 1; fi; %s`, checks, failed, failed, s.h.CheckCommand()),
		Reload:        s.h.ReloadCommand(),
		Runtime:       "haproxy",
		RuntimeSocket: s.h.Socket,
	})
	s.set.Config.Wait = WaitConfig{Min: Duration(10 * time.Millisecond), Max: Duration(50 * time.Millisecond)}
	s.r = NewRenderer(nil, nil, nil)
	src := watcher.NewLatest()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		(&Loop{Renderer: s.r, Source: src, Retry: retry.Backoff{Min: 20 * time.Millisecond, Max: 100 * time.Millisecond}}).Run(ctx, s.set)
	}()
	t.Cleanup(func() { cancel(); <-done })

	src.Put(snapshot(httpSvc("a", "9001", "")))
	waitFor(t, "the change checked again, installed and live", func() bool {
		// Not s.live: the socket may not answer while HAProxy reloads.
		out, err := haproxytest.Command(s.h.Socket, "show servers state api")
		return err == nil && strings.Contains(out, " a 127.0.0.1 ") && strings.Contains(readFile(t, s.h.Backends), "server a 127.0.0.1:9001")
	})
	if n := len(lineCount(checks)); n != 2 {
		t.Errorf("%d checks, want 2 (the failed one, then the retry's)", n)
	}
}

// A change that reloads, made while the check of a change applied before
// it runs, waits for that change to be installed, then is checked,
// installed and reloaded: the installed files follow the changes in their
// order.
func TestAheadStructuralChangeWaitsForTheCheck(t *testing.T) {
	t.Parallel()
	s := newAheadSetup(t)
	ctx := context.Background()
	s.r.Pass(ctx, s.set, snapshot(httpSvc("a", "9001", "")))
	var wg sync.WaitGroup
	var res PassResult
	wg.Go(func() {
		res = s.r.Pass(ctx, s.set, snapshot(httpSvc("a", "9001", ""), svc("admin-x", []string{"admin"}, map[string]string{"port": "9005"})))
	})
	s.open(t)
	wg.Wait()
	if len(res.Failures) > 0 || res.Installed != 1 {
		t.Fatalf("the structural pass: %+v", res)
	}
	if got := lineCount(s.checked); !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("checked files with %v backends, want the runtime change's (1) then the new backend's (2)", got)
	}
	if n := lineCount(s.reloads); len(n) != 1 {
		t.Errorf("%d reloads, want 1", len(n))
	}
	if got := readFile(t, s.h.Backends); !strings.Contains(got, "backend admin-x") || !strings.Contains(got, "server a ") {
		t.Errorf("installed file:\n%s", got)
	}
	if got := s.live(t); !slices.Equal(got, []string{"a"}) {
		t.Errorf("live servers %v, want a", got)
	}
	if res := s.r.Settle(ctx, s.set); len(res.Failures) > 0 {
		t.Errorf("Settle: %+v", res)
	}
}

// Stopping the loop joins the check under way: the stop cuts it short,
// so the change is not installed and the live state goes back to the
// installed file before Run returns (the server added is drained: it
// takes no requests; the stop may cut its deletion short).
func TestAheadStopJoinsTheCheck(t *testing.T) {
	t.Parallel()
	s := newAheadSetup(t)
	logs := new(testserver.Buffer)
	s.r.Log = slog.New(slog.NewTextHandler(logs, nil))
	installed := readFile(t, s.h.Backends)
	src := watcher.NewLatest()
	src.Put(snapshot())
	ctx, cancel := context.WithCancel(context.Background())
	l := &Loop{Renderer: s.r, Source: src}
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx, s.set) }()
	src.Put(snapshot(httpSvc("a", "9001", "")))
	waitFor(t, "a applied", func() bool { return slices.Equal(s.live(t), []string{"a"}) })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	out, _ := haproxytest.Command(s.h.Socket, "show servers state api")
	for _, l := range strings.Split(strings.TrimSpace(out), "\n")[2:] {
		if f := strings.Fields(l); len(f) > 6 && f[6] == "0" {
			t.Errorf("server %s takes requests after the stop:\n%s", f[3], out)
		}
	}
	if got := readFile(t, s.h.Backends); got != installed {
		t.Errorf("a file whose check the stop cut short was installed:\n%s", got)
	}
	if _, err := os.Stat(stagedName(s.h.Backends)); err == nil {
		t.Error("the staged file was left behind")
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("a stop logged as an error:\n%s", logs.String())
	}
}

// --once (RunOnce) returns once the check and install of the change it
// applied are done, with their outcome.
func TestAheadOnceSettles(t *testing.T) {
	t.Parallel()
	s := newAheadSetup(t)
	s.open(t)
	src := watcher.NewLatest()
	l := &Loop{Renderer: s.r, Source: src}
	for _, tc := range []struct {
		snap      *watcher.Snapshot
		installed int
		failed    bool
		live      []string
	}{
		{snapshot(httpSvc("a", "9001", "")), 1, false, []string{"a"}},
		{snapshot(httpSvc("a", "9001", ""), httpSvc("b", "9002", "# failcheck")), 0, true, []string{"a"}},
	} {
		src.Put(tc.snap)
		res, err := l.RunOnce(context.Background(), s.set, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if res.Installed != tc.installed || (res.Worst() != nil) != tc.failed {
			t.Errorf("RunOnce: %+v, want %d installed, failed %t", res, tc.installed, tc.failed)
		}
		if got := s.live(t); !slices.Equal(got, tc.live) {
			t.Errorf("live servers %v, want %v", got, tc.live)
		}
	}
	if got := readFile(t, s.h.Backends); !strings.Contains(got, "server a ") || strings.Contains(got, "server b ") {
		t.Errorf("installed file:\n%s", got)
	}
}

// A stop does not wait for the drains under way: a server removed while
// it holds a busy session drains for up to runtime_drain_timeout, and the
// loop stopped meanwhile returns at once. The drain had run on the
// apply's context, which a stop never ends.
func TestStopEndsTheDrains(t *testing.T) {
	t.Parallel()
	s := newAheadSetup(t)
	s.open(t)
	s.set.Groups[0].Templates[0].RuntimeDrainTimeout = Duration(5 * time.Minute)
	block := make(chan struct{})
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	t.Cleanup(busy.Close)
	t.Cleanup(func() { close(block) })
	port := busy.URL[strings.LastIndexByte(busy.URL, ':')+1:]

	src := watcher.NewLatest()
	src.Put(snapshot())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var passes atomic.Int32
	loop := &Loop{Renderer: s.r, Source: src, Passed: func(PassResult) { passes.Add(1) }}
	go func() { done <- loop.Run(ctx, s.set) }()
	src.Put(snapshot(httpSvc("a", port, "")))
	waitFor(t, "a applied", func() bool { return slices.Equal(s.live(t), []string{"a"}) })
	go http.Get(s.h.URL()) // a session on a, which lasts
	// Counted by HAProxy before a goes, so that the drain has a session
	// to wait for.
	waitFor(t, "a session on a", func() bool { return s.sessions(t, "a") == 1 })
	before := passes.Load()
	src.Put(snapshot())
	// The pass that removes a has returned, a is draining, and the file
	// is checked and installed: a's drain runs in the background.
	waitFor(t, "a to drain", func() bool { return passes.Load() > before && s.adminState(t, "a")&adminDrain != 0 })
	s.r.WaitAhead(context.Background())
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		// The session, and so the drain, would last until HAProxy's
		// timeout server (30 s).
		t.Fatal("the loop did not return after the stop: it waits for the drain")
	}
}

// In a group of two runtime files, a change to the first fails its check
// while a later pass changes only the second: the revert covers the first
// too, whose change an earlier pass applied. It had covered only the
// files the last pass changed, leaving the refused server live.
func TestAheadRevertCoversEarlierPasses(t *testing.T) {
	t.Parallel()
	h := haproxytest.Start(t, "backend api\n    balance roundrobin\nbackend api2\n    balance roundrobin\n", false)
	dir := t.TempDir()
	second := filepath.Join(dir, "backends2.cfg")
	for path, backend := range map[string]string{h.Backends: "api", second: "api2"} {
		if err := os.WriteFile(path, []byte("backend "+backend+"\n    balance roundrobin\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gate, started, reloads := filepath.Join(dir, "gate"), filepath.Join(dir, "started"), filepath.Join(dir, "reloads")
	check := fmt.Sprintf(`echo started >> %s; while [ ! -e %s ]; do sleep 0.01; done; ! grep -q failcheck {{range .Files}}{{.Staged}} {{end}}`, started, gate)
	template := func(backend, tag, dest string) TemplateConfig {
		return TemplateConfig{Destination: dest, Check: check, ReloadGroup: "hap", Reload: "echo reload >> " + reloads,
			Runtime: "haproxy", RuntimeSocket: h.Socket, Contents: "backend " + backend + "\n    balance roundrobin\n" +
				`{{- range servicesWithTag "` + tag + `" }}` + "\n    server {{ .ID }} 127.0.0.1:{{ .Metadata.port }}{{ with .Metadata.extra }} {{ . }}{{ end }}\n{{- end }}\n"}
	}
	set := newSet(t, template("api", "one", h.Backends), template("api2", "two", second))
	r := NewRenderer(nil, nil, nil)
	ctx := context.Background()
	bad := svc("bad", []string{"one"}, map[string]string{"port": "9001", "extra": "# failcheck"})
	r.Pass(ctx, set, snapshot(bad))
	waitFor(t, "the first check", func() bool { return len(lineCount(started)) == 1 })
	r.Pass(ctx, set, snapshot(bad, svc("b", []string{"two"}, map[string]string{"port": "9002"})))
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if w := r.Settle(ctx, set).Worst(); w == nil || w.Step != StepCheck {
		t.Fatalf("Settle: %+v; want the check's failure", w)
	}
	out, err := haproxytest.Command(h.Socket, "show servers state api")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, " bad ") && !strings.Contains(readFile(t, h.Backends), "server bad") && len(lineCount(reloads)) == 0 {
		t.Errorf("the refused server is live, the installed file has none, and nothing reloaded:\n%s", out)
	}
}

// HAProxy reloaded by someone else (an operator, a package upgrade, a
// signal passed on to an --exec child) while a change applied through the
// runtime API waits for its check: the new process loaded the files
// installed before, without the change. Once the change is installed the
// group reloads, and the live state is the installed file's again; no
// later pass would have seen a difference to apply.
func TestAheadReloadedMeanwhile(t *testing.T) {
	t.Parallel()
	s := newAheadSetup(t)
	ctx := context.Background()
	if res := s.r.Pass(ctx, s.set, snapshot(httpSvc("a", "9001", ""))); len(res.Failures) > 0 {
		t.Fatalf("pass: %+v", res)
	}
	waitFor(t, "the check started", func() bool { return len(lineCount(s.started)) == 1 })
	before := s.h.Worker(t)
	if out, err := exec.Command("sh", "-c", s.h.ReloadCommand()).CombinedOutput(); err != nil {
		t.Fatalf("someone else's reload: %v %s", err, out)
	}
	waitFor(t, "a new process", func() bool { return s.h.Worker(t) != before })
	s.open(t)
	res := s.r.Settle(ctx, s.set)
	if res.Installed != 1 {
		t.Fatalf("Settle: %+v; want the change installed", res)
	}
	if got := s.live(t); !slices.Equal(got, []string{"a"}) {
		t.Errorf("live servers %v after the change was installed; want a, the installed file's", got)
	}
	if n := len(lineCount(s.reloads)); n != 1 {
		t.Errorf("%d reloads by the renderer; want 1", n)
	}
}
