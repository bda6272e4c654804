package render

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/haproxytest"
	"github.com/svcreg/svcreg/watcher"
)

// svcreg died with a change applied ahead of its file (b in, a leaving)
// and the registry went back meanwhile: the next start renders the
// installed file, so no pass has a change to apply, and the first one
// takes the live state back to the file through the runtime API, without
// a reload. Before, the live state kept the change until the group's
// next change.
func TestStartMakesTheLiveStateTheInstalledFiles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, snap := installedA(t)
	for _, cmd := range []string{"add server api/b 127.0.0.1:9002", "set server api/b state ready", "set server api/a state drain"} {
		if _, err := haproxytest.Command(s.h.Socket, cmd); err != nil {
			t.Fatal(err)
		}
	}

	r := NewRenderer(nil, nil, nil) // the next start
	var logs strings.Builder
	r.Log = slog.New(slog.NewTextHandler(&logs, nil))
	if res := r.Pass(ctx, s.set, snap); len(res.Failures) > 0 || res.Installed != 0 {
		t.Fatalf("the first pass of the next start: %+v", res)
	}
	if res := r.Settle(ctx, s.set); len(res.Failures) > 0 { // b's drain
		t.Fatalf("Settle: %+v", res)
	}
	if got := s.live(t); !slices.Equal(got, []string{"a"}) {
		t.Errorf("live servers %v, want a (the installed file's)", got)
	}
	if st := s.adminState(t, "a"); st != 0 {
		t.Errorf("a's admin state is %#x, want ready", st)
	}
	if n := lineCount(s.reloads); len(n) != 0 {
		t.Errorf("%d reloads, want none", len(n))
	}
	if rt := r.Health.Report(time.Hour).Groups[s.set.Groups[0].Name].Runtime; rt == nil || rt.Outcome != "reconciled" {
		t.Errorf("health's runtime outcome is %+v, want reconciled", rt)
	}
	if !strings.Contains(logs.String(), "commands=2") {
		t.Errorf("the log does not count the 2 commands:\n%s", logs.String())
	}

	// HAProxy not running: nothing to make the file's, and no failure
	// (it loads the installed file when it starts).
	s.h.Stop(t)
	r = NewRenderer(nil, nil, nil)
	logs.Reset()
	r.Log = slog.New(slog.NewTextHandler(&logs, nil))
	if res := r.Pass(ctx, s.set, snap); len(res.Failures) > 0 {
		t.Fatalf("a start with HAProxy stopped: %+v", res)
	}
	if res := r.Settle(ctx, s.set); len(res.Failures) > 0 {
		t.Fatalf("Settle with HAProxy stopped: %+v", res)
	}
	if !strings.Contains(logs.String(), "nothing answers the runtime API") {
		t.Errorf("the log does not say that nothing answers:\n%s", logs.String())
	}
}

// --dry at a start reads the live state and prints what the start would
// send to make it the installed file's, and sends none of it.
func TestDryShowsTheStartsReconcile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, snap := installedA(t)
	leaveB(t, s)
	if _, err := haproxytest.Command(s.h.Socket, "set server api/a state drain"); err != nil {
		t.Fatal(err)
	}
	r := NewRenderer(nil, nil, nil)
	r.Dry = true
	var out strings.Builder
	r.DryOut = &out
	if res := r.Pass(ctx, s.set, snap); len(res.Failures) > 0 || res.Installed != 0 {
		t.Fatalf("a --dry pass: %+v", res)
	}
	if res := r.Settle(ctx, s.set); len(res.Failures) > 0 {
		t.Fatalf("Settle: %+v", res)
	}
	for _, want := range []string{"the live state is not the installed file's; would send to the haproxy runtime API at " + s.h.Socket,
		"    set server api/a state ready\n", "    set server api/b state drain\n", "once no sessions are left on api/b", "del server api/b"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--dry printed:\n%s\nwant %q in it", out.String(), want)
		}
	}
	if got := s.live(t); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("live servers %v after --dry, want a and b as left", got)
	}
	if st := s.adminState(t, "a"); st == 0 {
		t.Errorf("a is ready after --dry: it was sent a command")
	}
	if n := lineCount(s.reloads); len(n) != 0 {
		t.Errorf("%d reloads, want none", len(n))
	}

	// Nothing to do, and nothing answering: said so, nothing else.
	for _, cmd := range []string{"set server api/a state ready", "set server api/b state maint", "del server api/b"} {
		if _, err := haproxytest.Command(s.h.Socket, cmd); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		stop bool
		want string
	}{{false, ""}, {true, "--- " + s.set.Groups[0].Templates[0].Destination + ": nothing answers the haproxy runtime API at " + s.h.Socket}} {
		if tc.stop {
			s.h.Stop(t)
		}
		r := NewRenderer(nil, nil, nil)
		r.Dry = true
		out.Reset()
		r.DryOut = &out
		if res := r.Pass(ctx, s.set, snap); len(res.Failures) > 0 {
			t.Fatalf("a --dry pass: %+v", res)
		}
		if got := strings.TrimSpace(out.String()); !strings.HasPrefix(got, tc.want) || tc.want == "" && got != "" {
			t.Errorf("--dry printed %q, want %q", got, tc.want)
		}
	}
}

// What the runtime API cannot make the file's at start (a server it cannot
// add, deleted by hand) is reloaded.
func TestStartReloadsWhatTheRuntimeAPICannotFix(t *testing.T) {
	t.Parallel()
	s := newAheadSetup(t)
	s.open(t)
	ctx := context.Background()
	snap := snapshot(httpSvc("a", "9001", "cookie a")) // a keyword add server refuses
	if res := s.r.Pass(ctx, s.set, snap); len(res.Failures) > 0 || res.Installed != 1 {
		t.Fatalf("first pass: %+v", res)
	}
	reloads := len(lineCount(s.reloads))
	for _, cmd := range []string{"set server api/a state maint", "del server api/a"} {
		if out, err := haproxytest.Command(s.h.Socket, cmd); err != nil || strings.Contains(out, "annot") {
			t.Fatalf("%s: %q %v", cmd, out, err)
		}
	}

	r := NewRenderer(nil, nil, nil)
	r.Pass(ctx, s.set, snap)
	if res := r.Settle(ctx, s.set); len(res.Failures) > 0 {
		t.Fatalf("Settle: %+v", res)
	}
	if got := s.live(t); !slices.Equal(got, []string{"a"}) {
		t.Errorf("live servers %v, want a", got)
	}
	if n := len(lineCount(s.reloads)); n != reloads+1 {
		t.Errorf("%d reloads, want %d", n, reloads+1)
	}
	if rt := r.Health.Report(time.Hour).Groups[s.set.Groups[0].Name].Runtime; rt == nil || rt.Outcome != "fallback" || !strings.Contains(rt.Reason, "api/a") {
		t.Errorf("health's runtime outcome is %+v, want a fallback naming api/a", rt)
	}
}

// New runtime settings from a reloaded configuration make a new adapter,
// but the live state is the one this run kept in step (the old adapter
// may still be draining a server): it is not taken for what an earlier
// run left, and not reconciled.
func TestNewRuntimeSettingsDoNotReconcile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, snap := installedA(t)
	if _, err := haproxytest.Command(s.h.Socket, "set weight api/a 7"); err != nil {
		t.Fatal(err)
	}
	s.set.Groups[0].Templates[0].RuntimeDrainTimeout = Duration(3 * time.Second)
	if res := s.r.Pass(ctx, s.set, snap); len(res.Failures) > 0 {
		t.Fatalf("pass with new settings: %+v", res)
	}
	if w := s.serverField(t, "show servers state api", strings.Fields, statFields{backend: 1, server: 3, value: 7}, "a", -1); w != 7 {
		t.Errorf("a's weight is %d: the new adapter reconciled", w)
	}
	if rt := s.r.Health.Report(time.Hour).Groups[s.set.Groups[0].Name].Runtime; rt != nil && rt.Outcome == "reconciled" {
		t.Errorf("health's runtime outcome is %+v", rt)
	}
}

// installedA is HAProxy and a renderer with a runtime template, whose
// first pass installed (and applied) backend api with server a.
func installedA(t *testing.T) (*aheadSetup, *watcher.Snapshot) {
	t.Helper()
	s := newAheadSetup(t)
	s.open(t)
	ctx := context.Background()
	snap := snapshot(httpSvc("a", "9001", ""))
	s.r.Pass(ctx, s.set, snap)
	if res := s.r.Settle(ctx, s.set); len(res.Failures) > 0 || res.Installed != 1 {
		t.Fatalf("first pass: %+v", res)
	}
	return s, snap
}

// leaveB adds server b to backend api by hand, as a run that died with a
// change applied ahead of its file would have left it.
func leaveB(t *testing.T, s *aheadSetup) {
	t.Helper()
	for _, cmd := range []string{"add server api/b 127.0.0.1:9002", "set server api/b state ready"} {
		if _, err := haproxytest.Command(s.h.Socket, cmd); err != nil {
			t.Fatal(err)
		}
	}
}

// backToInstalled runs a pass of r on the installed file's snapshot and
// settles it, and wants the live state to be the file's.
func backToInstalled(t *testing.T, r *Renderer, s *aheadSetup, snap *watcher.Snapshot) {
	t.Helper()
	ctx := context.Background()
	if res := r.Pass(ctx, s.set, snap); len(res.Failures) > 0 {
		t.Fatalf("pass back to the installed file: %+v", res)
	}
	if res := r.Settle(ctx, s.set); len(res.Failures) > 0 {
		t.Fatalf("Settle: %+v", res)
	}
	if got := s.live(t); !slices.Equal(got, []string{"a"}) {
		t.Errorf("live servers %v, want a (the installed file's)", got)
	}
}

// A first pass whose change is only planned (it needs a reload, and its
// check fails: nothing applied, nothing reloaded) leaves the live state
// as it found it: the pass after it, back on the installed file, still
// reconciles.
func TestStartReconcilesAfterAChangeThatWentNowhere(t *testing.T) {
	t.Parallel()
	s, snap := installedA(t)
	leaveB(t, s)
	r := NewRenderer(nil, nil, nil)
	bad := snapshot(httpSvc("a", "9001", ""), httpSvc("c", "9003", "cookie c # failcheck"))
	if res := r.Pass(context.Background(), s.set, bad); len(res.Failures) == 0 {
		t.Fatalf("the check passed: %+v", res)
	}
	backToInstalled(t, r, s, snap)
}

// Nor does a reload that failed (and the one after the restore): the
// live state is what it was.
func TestStartReconcilesAfterAFailedReload(t *testing.T) {
	t.Parallel()
	s, snap := installedA(t)
	leaveB(t, s)
	good := s.set.Groups[0].Reload
	s.set.Groups[0].Reload = "false"
	r := NewRenderer(nil, nil, nil)
	change := snapshot(httpSvc("a", "9001", ""), httpSvc("c", "9003", "cookie c"))
	if res := r.Pass(context.Background(), s.set, change); len(res.Failures) == 0 {
		t.Fatalf("the reload did not fail: %+v", res)
	}
	s.set.Groups[0].Reload = good
	backToInstalled(t, r, s, snap)
}

// Two runtime files of one group whose reconciles both fail reload the
// group once.
func TestFallbackReloadsAGroupOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := haproxytest.Start(t, "backend api\n    balance roundrobin\n    server n localhost:9001\n", false)
	main := readFile(t, h.Main) + "\nbackend two\n    balance roundrobin\n    server z localhost:9002\n"
	if err := os.WriteFile(h.Main, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("sh", "-c", h.ReloadCommand()).CombinedOutput(); err != nil {
		t.Fatalf("reload: %v %s", err, out)
	}
	h.Worker(t)
	for _, cmd := range []string{"set server api/n state maint", "del server api/n", "set server two/z state maint", "del server two/z"} {
		if out, err := haproxytest.Command(h.Socket, cmd); err != nil || strings.Contains(out, "annot") || strings.Contains(out, "No such") {
			t.Fatalf("%s: %q %v", cmd, out, err)
		}
	}
	reloads := filepath.Join(t.TempDir(), "reloads")
	reload := fmt.Sprintf("echo reload >> %s && %s", reloads, h.ReloadCommand())
	set := newSet(t,
		TemplateConfig{Contents: readFile(t, h.Backends), Destination: h.Backends, ReloadGroup: "g", Reload: reload, Runtime: "haproxy", RuntimeSocket: h.Socket},
		TemplateConfig{Contents: main, Destination: h.Main, ReloadGroup: "g", Reload: reload, Runtime: "haproxy", RuntimeSocket: h.Socket},
	)
	r := NewRenderer(nil, nil, nil)
	if res := r.Pass(ctx, set, snapshot()); len(res.Failures) > 0 || res.Installed != 0 {
		t.Fatalf("pass: %+v", res)
	}
	if res := r.Settle(ctx, set); len(res.Failures) > 0 {
		t.Fatalf("Settle: %+v", res)
	}
	if n := len(lineCount(reloads)); n != 1 {
		t.Errorf("%d reloads, want 1", n)
	}
	for _, b := range []string{"api", "two"} {
		if out, err := haproxytest.Command(h.Socket, "show servers state "+b); err != nil || strings.Count(out, "localhost") != 1 {
			t.Errorf("backend %s after the reload: %q %v", b, out, err)
		}
	}
}

// A reload group renamed by a reload of the configuration keeps the live
// state this run kept in step: it is not taken for what an earlier run
// left, and not reconciled (nor, when that fails, reloaded).
func TestRenamedRuntimeGroupDoesNotReconcile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, snap := installedA(t)
	if _, err := haproxytest.Command(s.h.Socket, "set weight api/a 7"); err != nil {
		t.Fatal(err)
	}
	renamed := *s.set.Groups[0]
	renamed.Name = "renamed"
	next := &Set{Config: s.set.Config, Groups: []*Group{&renamed}}
	s.r.switchSet(s.set, next)
	if res := s.r.Pass(ctx, next, snap); len(res.Failures) > 0 {
		t.Fatalf("pass of the renamed group: %+v", res)
	}
	if w := s.serverField(t, "show servers state api", strings.Fields, statFields{backend: 1, server: 3, value: 7}, "a", -1); w != 7 {
		t.Errorf("a's weight is %d: the renamed group reconciled", w)
	}
}

// A HAProxy that loads its servers' states from a server-state file
// (load-server-state-from-file, the file written before each reload)
// takes back at a reload what the state file says of a server over what
// the configuration says: its address and port, and a drain or
// maintenance set through the runtime API. After a reload the live state
// is read and made the installed file's.
func TestReloadWithAServerStateFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newAheadSetup(t)
	s.open(t)
	state := filepath.Join(s.h.Dir, "server-state")
	main := readFile(t, s.h.Main)
	main = strings.Replace(main, "global\n", "global\n    server-state-file "+state+"\n", 1)
	main = strings.Replace(main, "defaults\n", "defaults\n    load-server-state-from-file global\n", 1)
	if err := os.WriteFile(s.h.Main, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("sh", "-c", s.h.ReloadCommand()).CombinedOutput(); err != nil {
		t.Fatalf("reload: %v %s", err, out)
	}
	s.h.Worker(t)
	if res := s.r.Pass(ctx, s.set, snapshot(httpSvc("a", "9001", ""), httpSvc("b", "9002", ""))); len(res.Failures) > 0 {
		t.Fatalf("first pass: %+v", res)
	}
	if res := s.r.Settle(ctx, s.set); len(res.Failures) > 0 {
		t.Fatalf("Settle: %+v", res)
	}
	// b drains (as a move of it would, or by hand), and the state is
	// saved before the reload, as a reload with a server-state file does.
	if _, err := haproxytest.Command(s.h.Socket, "set server api/b state drain"); err != nil {
		t.Fatal(err)
	}
	saved, err := haproxytest.Command(s.h.Socket, "show servers state")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(state, []byte(saved), 0o644); err != nil {
		t.Fatal(err)
	}
	reloads := len(lineCount(s.reloads))
	// a moves, and c needs a reload.
	change := snapshot(httpSvc("a", "9011", ""), httpSvc("b", "9002", ""), httpSvc("c", "9003", "cookie c"))
	if res := s.r.Pass(ctx, s.set, change); len(res.Failures) > 0 {
		t.Fatalf("pass: %+v", res)
	}
	if res := s.r.Settle(ctx, s.set); len(res.Failures) > 0 {
		t.Fatalf("Settle: %+v", res)
	}
	if n := len(lineCount(s.reloads)); n != reloads+1 {
		t.Fatalf("%d reloads, want %d", n, reloads+1)
	}
	if got := s.live(t); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("live servers %v, want a, b and c", got)
	}
	if p := s.serverField(t, "show servers state api", strings.Fields, statFields{backend: 1, server: 3, value: 18}, "a", -1); p != 9011 {
		t.Errorf("a's port is %d after the reload, want the file's 9011", p)
	}
	if st := s.adminState(t, "b"); st != 0 {
		t.Errorf("b's admin state is %#x after the reload, want ready as the file says", st)
	}
}
