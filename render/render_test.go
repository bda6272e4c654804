package render

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testfs"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/watcher"
)

func svc(id string, tags []string, md map[string]string) registry.Service {
	if md == nil {
		md = map[string]string{}
	}
	return registry.Service{ID: id, Tags: tags, Metadata: md, HeartbeatTimeout: 30}
}

func snapshot(services ...registry.Service) *watcher.Snapshot {
	return watcher.NewSnapshot(services, []registry.ConfigValue{
		{ID: "/lb/port", Value: "8080"},
		{ID: "/lb/name", Value: "front"},
		{ID: "/other/x", Value: "y"},
		{ID: "plain", Value: "p"},
	}, "marker", time.Now())
}

// writeFile writes a file in dir and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// newSet parses templates written to a temporary directory.
func newSet(t *testing.T, tcs ...TemplateConfig) *Set {
	t.Helper()
	return setOf(t, Config{Templates: tcs})
}

// execSet is newSet for a config whose [exec] command is command, as
// reload_signal needs.
func execSet(t *testing.T, command CommandLine, tcs ...TemplateConfig) *Set {
	t.Helper()
	return setOf(t, Config{Exec: ExecConfig{Command: command}, Templates: tcs})
}

// setOf normalizes c and makes its set.
func setOf(t *testing.T, c Config) *Set {
	t.Helper()
	if err := c.Normalize(); err != nil {
		t.Fatal(err)
	}
	set, err := NewSet(c)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestTemplateFunctions(t *testing.T) {
	t.Parallel()
	snap := snapshot(
		svc("web-b", []string{"www"}, map[string]string{"ip": "10.0.0.2", "port": "80", "zone": "b", "weight": "10"}),
		svc("web-a", []string{"www", "canary"}, map[string]string{"ip": "10.0.0.1", "port": "80", "zone": "a", "weight": "9"}),
		svc("db-1", []string{"db"}, map[string]string{"ip": "10.0.1.1", "zone": "a"}),
	)
	for _, tc := range []struct{ name, tmpl, want string }{
		{"services sorted by id", `{{range services}}{{.ID}} {{end}}`, "db-1 web-a web-b "},
		{"servicesWithTag", `{{range servicesWithTag "www"}}{{.Metadata.ip}}:{{.Metadata.port}};{{end}}`, "10.0.0.1:80;10.0.0.2:80;"},
		{"servicesWithTag none", `{{len (servicesWithTag "nope")}}`, "0"},
		{"service", `{{(service "db-1").Metadata.ip}}`, "10.0.1.1"},
		{"service missing is nil", `{{if service "nope"}}yes{{else}}nil{{end}}`, "nil"},
		{"whereMeta", `{{range whereMeta "zone" "a" services}}{{.ID}} {{end}}`, "db-1 web-a "},
		{"sortByMeta numeric", `{{range sortByMeta "weight" (servicesWithTag "www")}}{{.ID}} {{end}}`, "web-a web-b "},
		{"sortByMeta missing first", `{{range sortByMeta "port" services}}{{.ID}} {{end}}`, "db-1 web-a web-b "},
		{"groupByMeta", `{{range $zone, $s := groupByMeta "zone" services}}{{$zone}}={{len $s}} {{end}}`, "a=2 b=1 "},
		{"meta with default", `{{range services}}{{meta . "port" "none"}} {{end}}`, "none 80 80 "},
		{"config", `{{config "/lb/port"}}`, "8080"},
		{"configOr present", `{{configOr "plain" "d"}}`, "p"},
		{"configOr default", `{{configOr "/missing" "d"}}`, "d"},
		{"configNamespace", `{{range configNamespace "/lb"}}{{.ID}}={{.Value}} {{end}}`, "/lb/name=front /lb/port=8080 "},
		{"configNamespace trailing slash", `{{len (configNamespace "/lb/")}}`, "2"},
		{"sprig", `{{services | len | add 1}} {{"a,b" | splitList "," | join "+"}}`, "4 a+b"},
		{"snapshot fields", `{{.Marker}} {{.Synced}}`, "marker true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			set := newSet(t, TemplateConfig{Source: writeFile(t, dir, "t.tmpl", tc.tmpl), Destination: filepath.Join(dir, "out")})
			out, err := set.Groups[0].Templates[0].Render(snap)
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != tc.want {
				t.Fatalf("got %q, want %q", out, tc.want)
			}
		})
	}
}

func TestConfigMissingIsAnError(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := writeFile(t, dir, "t.tmpl", "port {{config \"/lb/missing\"}}\n")
	set := newSet(t, TemplateConfig{Source: src, Destination: filepath.Join(dir, "out")})
	_, err := set.Groups[0].Templates[0].Render(snapshot())
	if err == nil || !strings.Contains(err.Error(), `"/lb/missing" does not exist`) || !strings.Contains(err.Error(), src+":1:") {
		t.Fatalf("err = %v; want the missing key named, with file and line", err)
	}
}

func TestParseErrorNamesFileAndLine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := writeFile(t, dir, "bad.tmpl", "ok\n{{range services}}\n{{nosuchfunc}}\n{{end}}\n")
	c := Config{Templates: []TemplateConfig{{Source: src, Destination: filepath.Join(dir, "out")}}}
	if err := c.Normalize(); err != nil {
		t.Fatal(err)
	}
	_, err := NewSet(c)
	if err == nil || !strings.Contains(err.Error(), src+":3:") || !strings.Contains(err.Error(), "nosuchfunc") {
		t.Fatalf("err = %v; want file:line and the function", err)
	}
}

// Two templates cannot render to one file, however its path is spelt.
func TestConfigRefusesASharedDestination(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, other := range []string{
		filepath.Join(dir, "out.conf"),
		dir + "/./out.conf",
		dir + "/sub/../out.conf",
		dir + "//out.conf",
	} {
		c := Config{Templates: []TemplateConfig{
			{Contents: "a", Destination: filepath.Join(dir, "out.conf")},
			{Contents: "b", Destination: other},
		}}
		err := c.Normalize()
		if err == nil || !strings.Contains(err.Error(), "is also template 1's") {
			t.Errorf("destinations %s and %s: err = %v; want them refused as one file", c.Templates[0].Destination, other, err)
		}
	}
}

// A destination has one spelling once the config is read, so that a
// reload of the config that spells it anew finds what the renderer keeps
// by destination (a group's last reload, a due reload, the runtime API's
// live state), and its reload group, named after it by default, is the
// same group.
func TestConfigCleansDestinations(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	want := filepath.Join(dir, "out.conf")
	for _, spelt := range []string{dir + "/./out.conf", dir + "/sub/../out.conf", dir + "//out.conf"} {
		c := Config{Templates: []TemplateConfig{{Contents: "a", Destination: spelt}}}
		if err := c.Normalize(); err != nil {
			t.Fatal(err)
		}
		if got := c.Templates[0]; got.Destination != want || got.ReloadGroup != want {
			t.Errorf("destination %s: read as %s, reload group %s; want %s for both", spelt, got.Destination, got.ReloadGroup, want)
		}
	}
}

func TestConfigFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, dir, "a.tmpl", "a")
	path := writeFile(t, dir, "render.toml", `
listen = "127.0.0.1:0"
outage = "2s"
[wait]
min = "50ms"
max = "1s"
[[template]]
source = "a.tmpl"
destination = "out/a.conf"
perms = "0640"
check = "test -s {{.Staged}}"
reload = "true"
reload_timeout = "5s"
reload_group = "lb"
min_instances = 1
`)
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	tc := c.Templates[0]
	if tc.Source != filepath.Join(dir, "a.tmpl") || tc.Destination != filepath.Join(dir, "out/a.conf") {
		t.Fatalf("paths not relative to the config file: %+v", tc)
	}
	if c.Wait.Min.D() != 50*time.Millisecond || c.Wait.Max.D() != time.Second || tc.ReloadTimeout.D() != 5*time.Second || tc.MinInstances != 1 || c.Outage.D() != 2*time.Second {
		t.Fatalf("decoded %+v", c)
	}

	noWait, err := LoadConfig(writeFile(t, dir, "nowait.toml", "[[template]]\nsource='a.tmpl'\ndestination='b'\n"))
	if err != nil || noWait.Wait != DefaultWait() {
		t.Fatalf("a config without [wait] has wait %+v (%v); want the default", noWait.Wait, err)
	}
	if noWait.Outage.D() != DefaultOutage || noWait.Resync.D() != DefaultResync {
		t.Fatalf("a config without outage and resync has %v and %v; want the defaults", noWait.Outage.D(), noWait.Resync.D())
	}
	zero, err := LoadConfig(writeFile(t, dir, "zero.toml", "[wait]\nmin='0s'\n[[template]]\nsource='a.tmpl'\ndestination='b'\n"))
	if err != nil || zero.Wait != (WaitConfig{}) {
		t.Fatalf("[wait] min = 0s gives %+v (%v); want no debounce", zero.Wait, err)
	}

	for _, tc := range []struct{ name, toml, want string }{
		{"unknown key", "[[template]]\nsource='a'\ndestination='b'\nreload_cmd='x'\n", "unknown key(s) template.reload_cmd"},
		{"misspelt keys", "[wait]\nmn='1s'\n[[template]]\nsource='a'\ndestination='b'\nmin_instance=1\nzzz=1\n",
			"unknown key(s) wait.mn (did you mean min?), template.min_instance (did you mean min_instances?), template.zzz"},
		{"bad duration", "[wait]\nmin='soon'\n", `"soon" is not a duration`},
		{"max below min", "[wait]\nmin='2s'\nmax='1s'\n[[template]]\nsource='a'\ndestination='b'\n", "max (1s) is less than min (2s)"},
		{"no templates", "", "no templates"},
		{"same destination", "[[template]]\nsource='a'\ndestination='b'\n[[template]]\nsource='c'\ndestination='b'\n", "destination"},
		{"bad perms", "[[template]]\nsource='a'\ndestination='b'\nperms='rw'\n", `perms "rw"`},
		{"perms unquoted", "[[template]]\nsource='a'\ndestination='b'\nperms=0644\n", `(write the mode as a string: perms = "0644")`},
		{"perms a number", "[[template]]\nsource='a'\ndestination='b'\nperms=644\n", `(write the mode as a string: perms = "0644")`},
		{"group disagrees", "[[template]]\nsource='a'\ndestination='b'\nreload_group='g'\nreload='x'\n[[template]]\nsource='c'\ndestination='d'\nreload_group='g'\nreload='y'\n", `disagree on reload`},
		// setgid: Chmod drops it, and a mode the file never shows made
		// every pass install and reload.
		{"perms special bits", "[[template]]\nsource='a'\ndestination='b'\nperms='2644'\n", `perms "2644": only the permission bits, 0000 to 0777`},
		{"one bracket", "[template]\nsource='a'\ndestination='b'\n", "line 1: write each template as [[template]]"},
		{"inline template's runtime", "[[template]]\ncontents='x'\ndestination='b'\nruntime='nginx'\nreload='true'\n", `/b: runtime "nginx" is not one of`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadConfig(writeFile(t, t.TempDir(), "c.toml", tc.toml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want it to say %q", err, tc.want)
			}
		})
	}
}

// A check command's placeholder misspelt parses; it is refused when the
// config is loaded, rather than fail every pass with something to install.
func TestCheckPlaceholderMisspelt(t *testing.T) {
	t.Parallel()
	c := Config{Templates: []TemplateConfig{{Contents: "x\n", Destination: filepath.Join(t.TempDir(), "out"), Check: "test -s {{.Stagd}}"}}}
	if err := c.Normalize(); err != nil {
		t.Fatal(err)
	}
	if _, err := NewSet(c); err == nil || !strings.Contains(err.Error(), "Stagd") || !strings.Contains(err.Error(), "{{.Staged}}") {
		t.Fatalf("err = %v; want the misspelt placeholder named, and those there are", err)
	}
}

func TestParseTemplateFlag(t *testing.T) {
	t.Parallel()
	tc, err := ParseTemplateFlag("in.tmpl:/etc/nginx/up.conf:nginx -s reload && echo a:b")
	if err != nil || tc.Source != "in.tmpl" || tc.Destination != "/etc/nginx/up.conf" || tc.Reload != "nginx -s reload && echo a:b" {
		t.Fatalf("got %+v, %v", tc, err)
	}
	if _, err := ParseTemplateFlag("only-source"); err == nil {
		t.Fatal("accepted a flag without a destination")
	}
}

// group is a one-template reload group in a temporary directory.
type group struct {
	dir, src, dest, log string
	r                   *Renderer
}

func newGroup(t *testing.T, tmpl string) *group {
	t.Helper()
	dir := testfs.SearchableTempDir(t)
	return &group{dir: dir, src: writeFile(t, dir, "t.tmpl", tmpl), dest: filepath.Join(dir, "out.conf"),
		log: filepath.Join(dir, "reloads"), r: NewRenderer(nil, nil, nil)}
}

func (g *group) set(t *testing.T, tc TemplateConfig) *Set {
	tc.Source, tc.Destination = g.src, g.dest
	return newSet(t, tc)
}

// reloads is how many times the reload command ran.
func (g *group) reloads(t *testing.T) int {
	b, err := os.ReadFile(g.log)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

const upstreams = `{{range servicesWithTag "www"}}server {{.Metadata.ip}};
{{end}}`

func TestPassInstallsAndReloadsOnlyOnChange(t *testing.T) {
	t.Parallel()
	g := newGroup(t, upstreams)
	set := g.set(t, TemplateConfig{Reload: "echo reload >> " + g.log, Perms: "0640"})
	ctx := context.Background()
	snap := snapshot(svc("a", []string{"www"}, map[string]string{"ip": "10.0.0.1"}))

	if res := g.r.Pass(ctx, set, snap); res.Installed != 1 || res.Failures != nil {
		t.Fatalf("first pass: %+v", res)
	}
	if got := readFile(t, g.dest); got != "server 10.0.0.1;\n" {
		t.Fatalf("rendered %q", got)
	}
	if fi, _ := os.Stat(g.dest); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, want 0640", fi.Mode().Perm())
	}
	if res := g.r.Pass(ctx, set, snap); res.Installed != 0 {
		t.Fatalf("unchanged pass installed: %+v", res)
	}
	snap2, _, err := snap.Apply([]registry.Event{joinEvent(t, svc("b", []string{"www"}, map[string]string{"ip": "10.0.0.2"}))}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if res := g.r.Pass(ctx, set, snap2); res.Installed != 1 {
		t.Fatalf("changed pass: %+v", res)
	}
	if got := readFile(t, g.dest); got != "server 10.0.0.1;\nserver 10.0.0.2;\n" {
		t.Fatalf("rendered %q", got)
	}
	if n := g.reloads(t); n != 2 {
		t.Fatalf("%d reloads, want 2 (one per change)", n)
	}
	if _, err := os.Stat(stagedName(g.dest)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("staged file left behind: %v", err)
	}
}

func joinEvent(t *testing.T, s registry.Service) registry.Event {
	t.Helper()
	payload, err := s.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return registry.Event{ID: "e-" + s.ID, Type: registry.ServiceJoin, Payload: payload}
}

func TestNeverInstallsFromUnsyncedSnapshot(t *testing.T) {
	t.Parallel()
	g := newGroup(t, "x")
	set := g.set(t, TemplateConfig{})
	if res := g.r.Pass(context.Background(), set, &watcher.Snapshot{}); res.Installed != 0 {
		t.Fatalf("installed from an unsynced snapshot: %+v", res)
	}
	if _, err := os.Stat(g.dest); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("destination written: %v", err)
	}
}

func TestCheckFailureKeepsOldFile(t *testing.T) {
	t.Parallel()
	g := newGroup(t, upstreams)
	ctx := context.Background()
	good := g.set(t, TemplateConfig{Reload: "echo reload >> " + g.log, Check: "grep -q server {{.Staged}}"})
	snap := snapshot(svc("a", []string{"www"}, map[string]string{"ip": "10.0.0.1"}))
	if res := g.r.Pass(ctx, good, snap); res.Installed != 1 {
		t.Fatalf("first pass: %+v", res)
	}
	// Now every www service is gone: the output has no "server" line and
	// the check refuses it.
	res := g.r.Pass(ctx, good, snapshot())
	if w := res.Worst(); w == nil || w.Step != StepCheck {
		t.Fatalf("pass = %+v; want a check failure", res)
	}
	if got := readFile(t, g.dest); got != "server 10.0.0.1;\n" {
		t.Fatalf("destination changed to %q after a failed check", got)
	}
	if n := g.reloads(t); n != 1 {
		t.Fatalf("%d reloads; a failed check must not reload", n)
	}
	if _, err := os.Stat(stagedName(g.dest)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("staged file left behind: %v", err)
	}
}

// An output whose check failed is not checked again, nor its failure
// logged again, by the passes of changes that render it the same (a
// configuration value the template does not read, churned by one
// account), until its backoff has passed: then it is, as a different
// output or a new template set is at once.
func TestUnchangedOutputIsNotCheckedAgain(t *testing.T) {
	t.Parallel()
	g := newGroup(t, upstreams)
	var logs bytes.Buffer
	g.r.Log = slog.New(slog.NewJSONHandler(&logs, nil))
	now := time.Now()
	g.r.now = func() time.Time { return now }
	count := filepath.Join(g.dir, "checks")
	set := g.set(t, TemplateConfig{Reload: "echo reload >> " + g.log, Check: "echo >> " + count + "; exit 1"})
	checks := func() int {
		b, _ := os.ReadFile(count)
		return strings.Count(string(b), "\n")
	}
	ctx := context.Background()
	a := svc("a", []string{"www"}, map[string]string{"ip": "10.0.0.1"})
	pass := func(set *Set, snap *watcher.Snapshot, wantChecks int) PassResult {
		t.Helper()
		res := g.r.Pass(ctx, set, snap)
		if w := res.Worst(); w == nil || w.Step != StepCheck {
			t.Fatalf("pass = %+v; want a check failure", res)
		}
		if n := checks(); n != wantChecks {
			t.Fatalf("the check ran %d times, want %d", n, wantChecks)
		}
		return res
	}
	pass(set, snapshot(a), 1)
	for range 5 {
		now = now.Add(100 * time.Millisecond)
		if res := pass(set, snapshot(a), 1); !res.RetryAt.After(now) || res.RetryAt.After(now.Add(time.Second)) {
			t.Fatalf("RetryAt %s, want within the second after %s", res.RetryAt, now)
		}
	}
	if n := strings.Count(logs.String(), `"template group failed"`); n != 1 {
		t.Errorf("%d failures logged, want 1:\n%s", n, logs.String())
	}
	now = now.Add(time.Minute)
	pass(set, snapshot(a), 2)
	pass(set, snapshot(a, svc("b", []string{"www"}, map[string]string{"ip": "10.0.0.2"})), 3)
	pass(g.set(t, TemplateConfig{Reload: "echo reload >> " + g.log, Check: "echo >> " + count + "; exit 1"}), snapshot(a), 4)
	if n := g.reloads(t); n != 0 {
		t.Errorf("%d reloads after failed checks", n)
	}
}

// stopDuringReload runs a pass of set on snap, stops it (ends its
// context) once the file started exists, which the reload command makes,
// and returns the pass's result.
func (g *group) stopDuringReload(t *testing.T, set *Set, snap *watcher.Snapshot, started string) PassResult {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	passed := make(chan PassResult, 1)
	go func() { passed <- g.r.Pass(ctx, set, snap) }()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(started); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the reload did not start")
		}
	}
	cancel()
	return <-passed
}

// A reload command under way when the renderer is told to stop runs to
// its end: the files it reloads stay, and the pass counts it done, where
// the command was killed half-way and the files put back under a load
// balancer that may have taken them.
func TestReloadUnderWayFinishesOnStop(t *testing.T) {
	t.Parallel()
	g := newGroup(t, upstreams)
	started := filepath.Join(g.dir, "started")
	set := g.set(t, TemplateConfig{Reload: "touch " + started + "; sleep 1; echo reload >> " + g.log})
	res := g.stopDuringReload(t, set, snapshot(svc("a", []string{"www"}, map[string]string{"ip": "10.0.0.1"})), started)
	if len(res.Failures) != 0 || res.Installed != 1 {
		t.Errorf("pass = %+v; want the group installed and reloaded", res)
	}
	if n := g.reloads(t); n != 1 {
		t.Errorf("the reload command finished %d times, want 1", n)
	}
	if got := readFile(t, g.dest); got != "server 10.0.0.1;\n" {
		t.Errorf("destination %q after the stop", got)
	}
}

// A reload that fails after the renderer was told to stop puts the
// previous files back without reloading them again: a stop waits for one
// reload, not two.
func TestFailedReloadOnStopIsNotRunAgain(t *testing.T) {
	t.Parallel()
	g := newGroup(t, upstreams)
	ctx := context.Background()
	first := g.set(t, TemplateConfig{Reload: "true"})
	if res := g.r.Pass(ctx, first, snapshot(svc("a", []string{"www"}, map[string]string{"ip": "10.0.0.1"}))); res.Installed != 1 {
		t.Fatalf("first pass: %+v", res)
	}
	started := filepath.Join(g.dir, "started")
	set := g.set(t, TemplateConfig{Reload: "touch " + started + "; echo reload >> " + g.log + "; sleep 1; exit 1"})
	w := g.stopDuringReload(t, set, snapshot(svc("b", []string{"www"}, map[string]string{"ip": "10.0.0.2"})), started).Worst()
	if w == nil || w.Step != StepReload || !strings.Contains(w.Err.Error(), "not reloaded: svcreg is stopping") {
		t.Fatalf("worst = %+v; want the failed reload's files put back, not reloaded again", w)
	}
	if n := g.reloads(t); n != 1 {
		t.Errorf("the reload command ran %d times, want 1", n)
	}
	if got := readFile(t, g.dest); got != "server 10.0.0.1;\n" {
		t.Errorf("destination %q, want the previous file", got)
	}
}

// A failed check's error quotes the lines of the rendered file its output
// points at (nginx -t's "in FILE:LINE", haproxy -c's "[FILE:LINE]"): the
// staged file they name is gone once the check is over.
func TestCheckFailureQuotesTheLinesItNames(t *testing.T) {
	t.Parallel()
	g := newGroup(t, "# head\n{{range servicesWithTag \"www\"}}server {{.Metadata.ip}};\n{{end}}")
	check := `echo "nginx: [emerg] invalid parameter in {{.Staged}}:2 and {{.Staged}}:2"; echo "[ALERT] parsing [{{.Staged}}:1]"; echo "{{.Staged}}:99"; exit 1`
	set := g.set(t, TemplateConfig{Check: check})
	w := g.r.Pass(context.Background(), set, snapshot(svc("a", []string{"www"}, map[string]string{"ip": "10.0.0.1\u202e"}))).Worst()
	if w == nil || w.Step != StepCheck {
		t.Fatalf("worst = %+v; want a check failure", w)
	}
	msg := w.Err.Error()
	base := "(staged as " + filepath.Base(stagedName(g.dest)) + ")"
	for _, want := range []string{
		"line 2 of the render of " + g.dest + " " + base + ": \"server 10.0.0.1\\u202e;\"",
		"line 1 of the render of " + g.dest + " " + base + ": \"# head\"",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("the check's error does not quote %s:\n%s", want, msg)
		}
	}
	if strings.Count(msg, "line 2 of the render") != 1 || strings.Contains(msg, "line 99") {
		t.Errorf("a line quoted twice, or one past the end:\n%s", msg)
	}
}

func TestReloadFailureRestoresAndReloadsAgain(t *testing.T) {
	t.Parallel()
	g := newGroup(t, upstreams)
	ctx := context.Background()
	// The reload fails when the file holds 10.0.0.2.
	reload := "echo reload >> " + g.log + "; ! grep -q 10.0.0.2 " + g.dest
	set := g.set(t, TemplateConfig{Reload: reload, Backup: true})
	first := snapshot(svc("a", []string{"www"}, map[string]string{"ip": "10.0.0.1"}))
	if res := g.r.Pass(ctx, set, first); res.Installed != 1 {
		t.Fatalf("first pass: %+v", res)
	}
	res := g.r.Pass(ctx, set, snapshot(svc("b", []string{"www"}, map[string]string{"ip": "10.0.0.2"})))
	w := res.Worst()
	if w == nil || w.Step != StepReload || !strings.Contains(w.Err.Error(), "restored the previous files and reloaded them") {
		t.Fatalf("pass = %+v; want a reload failure, restored", res)
	}
	if got := readFile(t, g.dest); got != "server 10.0.0.1;\n" {
		t.Fatalf("destination is %q; want the previous file restored", got)
	}
	if n := g.reloads(t); n != 3 {
		t.Fatalf("%d reloads; want 3 (first, failed, after restore)", n)
	}
	if got := readFile(t, g.dest+".bak"); got != "server 10.0.0.1;\n" {
		t.Fatalf("backup holds %q", got)
	}
}

// A new file of a group without a check is removed when the reload
// fails. Nothing was restored: the files are as before the pass, so the
// reload is not run again, and the error does not claim a restore.
func TestReloadFailureOfNewFileRemovesIt(t *testing.T) {
	t.Parallel()
	g := newGroup(t, "x\n")
	set := g.set(t, TemplateConfig{Reload: "echo reload >> " + g.log + "; exit 3"})
	res := g.r.Pass(context.Background(), set, snapshot())
	w := res.Worst()
	if w == nil || w.Step != StepReload {
		t.Fatalf("pass = %+v; want a reload failure", res)
	}
	if _, err := os.Stat(g.dest); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a new file whose reload failed is still installed: %v", err)
	}
	msg := w.Err.Error()
	if strings.Contains(msg, "restored the previous files") || !strings.Contains(msg, "removed the new files ("+g.dest+")") ||
		!strings.Contains(msg, "the reload was not run again") {
		t.Errorf("error %q; want it to say the new file was removed and nothing reloaded again", msg)
	}
	if n := g.reloads(t); n != 1 {
		t.Errorf("%d reloads; with nothing restored the failed reload is not run again", n)
	}
}

// A destination that is a symbolic link is not followed: the link's
// target (a file only the renderer may read, pointed at by someone who
// may write the directory) reaches neither the status page's diff nor the
// backup, nor gets written; the rendered file replaces the link, and a
// failed reload puts the link back.
func TestSymlinkedDestination(t *testing.T) {
	t.Parallel()
	g := newGroup(t, upstreams)
	g.r.Status = NewStatus()
	ctx := context.Background()
	secret := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(secret, []byte("root:$6$SECRETHASH:19000:0:99999:7:::\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, g.dest); err != nil {
		t.Fatal(err)
	}
	// With a check too: a new file that passed it is kept after a failed
	// reload, but a link replaced is not a new file.
	for _, check := range []string{"", "true"} {
		failing := g.set(t, TemplateConfig{Reload: "exit 3", Check: check, Backup: true})
		if w := g.r.Pass(ctx, failing, snapshot(svc("a", []string{"www"}, map[string]string{"ip": "10.0.0.1"}))).Worst(); w == nil || w.Step != StepReload {
			t.Fatalf("check %q: pass: %+v; want the reload's failure", check, w)
		}
		if target, err := os.Readlink(g.dest); err != nil || target != secret {
			t.Errorf("check %q: after the failed reload the destination links to %q (%v); want the link put back", check, target, err)
		}
	}
	set := g.set(t, TemplateConfig{Reload: "true", Backup: true})
	if res := g.r.Pass(ctx, set, snapshot(svc("a", []string{"www"}, map[string]string{"ip": "10.0.0.2"}))); len(res.Failures) > 0 || res.Installed != 1 {
		t.Fatalf("pass: %+v; want the file installed", res)
	}
	diff := g.r.Status.Report().Groups[0].Diff
	bak, _ := os.ReadFile(g.dest + ".bak")
	if strings.Contains(diff, "SECRETHASH") || strings.Contains(string(bak), "SECRETHASH") {
		t.Errorf("the link's target reached the status page or the backup:\ndiff:\n%s\nbackup: %q", diff, bak)
	}
	if info, err := os.Lstat(g.dest); err != nil || !info.Mode().IsRegular() || readFile(t, g.dest) != "server 10.0.0.2;\n" {
		t.Errorf("the destination is %v (%v); want the rendered file", info, err)
	}
	if got := readFile(t, secret); !strings.Contains(got, "SECRETHASH") {
		t.Errorf("the link's target was written: %q", got)
	}
}

// A destination that is not a regular file (a FIFO here, which reading
// would block on) is refused, saying why.
func TestDestinationNotARegularFile(t *testing.T) {
	t.Parallel()
	g := newGroup(t, upstreams)
	if err := syscall.Mkfifo(g.dest, 0o600); err != nil {
		t.Fatal(err)
	}
	set := g.set(t, TemplateConfig{Reload: "true"})
	w := g.r.Pass(context.Background(), set, snapshot()).Worst()
	if w == nil || w.Step != StepInstall || !strings.Contains(w.Err.Error(), "is not a regular file (a named pipe)") {
		t.Fatalf("pass: %+v; want the install step refused: not a regular file", w)
	}
	d := newGroup(t, upstreams)
	if err := os.Mkdir(d.dest, 0o755); err != nil {
		t.Fatal(err)
	}
	w = d.r.Pass(context.Background(), d.set(t, TemplateConfig{Reload: "true"}), snapshot()).Worst()
	if w == nil || !strings.Contains(w.Err.Error(), "is not a regular file (a directory)") {
		t.Fatalf("a directory: %+v", w)
	}
}

func TestMinInstancesGuard(t *testing.T) {
	t.Parallel()
	g := newGroup(t, upstreams)
	ctx := context.Background()
	set := g.set(t, TemplateConfig{MinInstances: 1, Reload: "echo reload >> " + g.log})
	if res := g.r.Pass(ctx, set, snapshot(svc("a", []string{"www"}, map[string]string{"ip": "10.0.0.1"}))); res.Installed != 1 {
		t.Fatalf("first pass: %+v", res)
	}
	res := g.r.Pass(ctx, set, snapshot())
	var guard *GuardError
	if w := res.Worst(); w == nil || w.Step != StepRender || !errors.As(w.Err, &guard) {
		t.Fatalf("pass = %+v; want the guard to refuse the render", res)
	}
	if guard.Call != `servicesWithTag "www"` || guard.Got != 0 || guard.Min != 1 {
		t.Fatalf("guard = %+v", guard)
	}
	if got := readFile(t, g.dest); got != "server 10.0.0.1;\n" {
		t.Fatalf("destination is %q; the guard must keep the old file", got)
	}
	if !strings.Contains(res.Worst().Err.Error(), "keeping the old file "+g.dest) {
		t.Fatalf("error %q does not say the old file is kept", res.Worst().Err)
	}
}

// min_instances protects an existing file. A first deploy on an empty
// registry has none: the render (the template's "no service yet" branch)
// is installed, with a warning that says so, and the group passes.
func TestMinInstancesGuardWithoutAFileInstalls(t *testing.T) {
	t.Parallel()
	g := newGroup(t, `{{range servicesWithTag "www"}}server {{.Metadata.ip}};
{{else}}server 127.0.0.1:9 down;
{{end}}`)
	var logs bytes.Buffer
	g.r.Log = slog.New(slog.NewTextHandler(&logs, nil))
	set := g.set(t, TemplateConfig{MinInstances: 1, Reload: "echo reload >> " + g.log})
	res := g.r.Pass(context.Background(), set, snapshot())
	if len(res.Failures) != 0 || res.Installed != 1 {
		t.Fatalf("pass = %+v; want the render installed: there is no old file to keep", res)
	}
	if got := readFile(t, g.dest); got != "server 127.0.0.1:9 down;\n" {
		t.Fatalf("destination is %q", got)
	}
	if !strings.Contains(logs.String(), "the destination does not exist yet, so there is no old file to keep: installing this render anyway") {
		t.Fatalf("no warning that says why the guard did not keep a file:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "keeping the old file") {
		t.Fatalf("the log claims an old file is kept:\n%s", logs.String())
	}
	// Once the file exists, the guard keeps it.
	res = g.r.Pass(context.Background(), set, snapshot(svc("a", []string{"www"}, map[string]string{"ip": "10.0.0.1"})))
	if res.Installed != 1 {
		t.Fatalf("second pass: %+v", res)
	}
	if w := g.r.Pass(context.Background(), set, snapshot()).Worst(); w == nil || w.Step != StepRender {
		t.Fatalf("pass on an emptied registry: %+v; want the guard to keep the file", w)
	}
	if got := readFile(t, g.dest); got != "server 10.0.0.1;\n" {
		t.Fatalf("destination is %q; the guard must keep the existing file", got)
	}
	// A file deleted since this renderer installed it is no first
	// deploy: the guard does not put the refused render in its place.
	if err := os.Remove(g.dest); err != nil {
		t.Fatal(err)
	}
	if w := g.r.Pass(context.Background(), set, snapshot()).Worst(); w == nil || w.Step != StepRender || !strings.Contains(w.Err.Error(), "was deleted since") {
		t.Fatalf("pass on an emptied registry after the file was deleted: %+v; want the guard to refuse", w)
	}
	if _, err := os.Stat(g.dest); !os.IsNotExist(err) {
		t.Fatalf("the refused render was installed in place of the deleted file: %v", err)
	}
	// A render with enough services installs as ever.
	if res := g.r.Pass(context.Background(), set, snapshot(svc("b", []string{"www"}, map[string]string{"ip": "10.0.0.2"}))); res.Installed != 1 {
		t.Fatalf("pass with a service after the deletion: %+v", res)
	}
}

// A destination that is a symbolic link to nothing holds no old file for
// min_instances to keep (nginx could not start on it either): the render
// is installed in its place, with a warning that says why.
func TestMinInstancesGuardOverADanglingLinkInstalls(t *testing.T) {
	t.Parallel()
	g := newGroup(t, `{{range servicesWithTag "www"}}server {{.Metadata.ip}};
{{else}}server 127.0.0.1:9 down;
{{end}}`)
	if err := os.Symlink(filepath.Join(g.dir, "missing.conf"), g.dest); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	g.r.Log = slog.New(slog.NewTextHandler(&logs, nil))
	set := g.set(t, TemplateConfig{MinInstances: 1})
	if res := g.r.Pass(context.Background(), set, snapshot()); len(res.Failures) != 0 || res.Installed != 1 {
		t.Fatalf("pass = %+v; want the render installed over the link to nothing", res)
	}
	if got := readFile(t, g.dest); got != "server 127.0.0.1:9 down;\n" {
		t.Fatalf("destination is %q", got)
	}
	if !strings.Contains(logs.String(), "a symbolic link to a file that does not exist") {
		t.Fatalf("no warning that says why the guard did not keep the link:\n%s", logs.String())
	}
	// A link to a file is kept, as a file is.
	g2 := newGroup(t, upstreams)
	old := writeFile(t, g2.dir, "old.conf", "server 10.0.0.9;\n")
	if err := os.Symlink(old, g2.dest); err != nil {
		t.Fatal(err)
	}
	if w := g2.r.Pass(context.Background(), g2.set(t, TemplateConfig{MinInstances: 1}), snapshot()).Worst(); w == nil || w.Step != StepRender || !strings.Contains(w.Err.Error(), "keeping the old file") {
		t.Fatalf("pass over a link to a file: %+v; want the guard to keep it", w)
	}
	if target, err := os.Readlink(g2.dest); err != nil || target != old {
		t.Fatalf("the link was replaced: %q, %v", target, err)
	}
}

// The renderer knows a destination by one spelling of its path: a file it
// installed and that was deleted since stays guarded under another.
func TestMinInstancesGuardKnowsADestinationUnderAnySpelling(t *testing.T) {
	t.Parallel()
	g := newGroup(t, upstreams)
	set := g.set(t, TemplateConfig{MinInstances: 1})
	if res := g.r.Pass(context.Background(), set, snapshot(svc("a", []string{"www"}, map[string]string{"ip": "10.0.0.1"}))); res.Installed != 1 {
		t.Fatalf("first pass: %+v", res)
	}
	if err := os.Remove(g.dest); err != nil {
		t.Fatal(err)
	}
	// The config read again, with the path written another way.
	set = newSet(t, TemplateConfig{Source: g.src, Destination: g.dir + "/./" + filepath.Base(g.dest), MinInstances: 1})
	if w := g.r.Pass(context.Background(), set, snapshot()).Worst(); w == nil || !strings.Contains(w.Err.Error(), "was deleted since") {
		t.Fatalf("pass on an emptied registry: %+v; want the deleted file still guarded", w)
	}
	if _, err := os.Lstat(g.dest); !os.IsNotExist(err) {
		t.Fatalf("the refused render was installed in place of the deleted file: %v", err)
	}
}

// A group's pass that fails at its first file still notes that the later
// files were there: one deleted afterwards stays guarded.
func TestMinInstancesGuardNotesTheFilesAfterAFailure(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.conf"), filepath.Join(dir, "b.conf")
	writeFile(t, dir, "a.conf", "server 10.0.0.1;\n")
	writeFile(t, dir, "b.conf", "server 10.0.0.2;\n")
	set := newSet(t,
		TemplateConfig{Contents: `{{range servicesWithTag "x"}}server {{.Metadata.ip}};{{end}}`, Destination: a, ReloadGroup: "lb", MinInstances: 1},
		TemplateConfig{Contents: `{{range servicesWithTag "y"}}server {{.Metadata.ip}};{{end}}`, Destination: b, ReloadGroup: "lb", MinInstances: 1},
	)
	r := NewRenderer(nil, nil, nil)
	if w := r.Pass(context.Background(), set, snapshot()).Worst(); w == nil || !strings.Contains(w.Err.Error(), "keeping the old file "+a) {
		t.Fatalf("pass on an empty registry: %+v; want a's guard to fail it", w)
	}
	if err := os.Remove(b); err != nil {
		t.Fatal(err)
	}
	if w := r.Pass(context.Background(), set, snapshot(svc("s", []string{"x"}, map[string]string{"ip": "10.0.0.3"}))).Worst(); w == nil || !strings.Contains(w.Err.Error(), b+", installed before, was deleted since") {
		t.Fatalf("pass without a service for b: %+v; want b's deleted file still guarded", w)
	}
	if _, err := os.Lstat(b); !os.IsNotExist(err) {
		t.Fatalf("the refused render was installed in place of the deleted file: %v", err)
	}
}

func TestGroupReloadsOnceForSeveralFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "reloads")
	a := writeFile(t, dir, "a.tmpl", upstreams)
	b := writeFile(t, dir, "b.tmpl", `{{len services}}`)
	check := `test -s {{(index .Files 0).Staged}} && test -s {{(index .Files 1).Staged}}`
	set := newSet(t,
		TemplateConfig{Source: a, Destination: filepath.Join(dir, "a.conf"), ReloadGroup: "lb", Reload: "echo reload >> " + log, Check: check},
		TemplateConfig{Source: b, Destination: filepath.Join(dir, "b.conf"), ReloadGroup: "lb"},
	)
	if len(set.Groups) != 1 || len(set.Groups[0].Templates) != 2 {
		t.Fatalf("groups = %+v", set.Groups)
	}
	r := NewRenderer(nil, nil, nil)
	if res := r.Pass(context.Background(), set, snapshot(svc("a", []string{"www"}, map[string]string{"ip": "1"}))); res.Installed != 1 || res.Failures != nil {
		t.Fatalf("pass = %+v", res)
	}
	if got := readFile(t, log); got != "reload\n" {
		t.Fatalf("reloads: %q; want exactly one for the group", got)
	}
}

func TestMinReloadIntervalHoldsBack(t *testing.T) {
	t.Parallel()
	g := newGroup(t, upstreams)
	ctx := context.Background()
	set := g.set(t, TemplateConfig{Reload: "echo reload >> " + g.log, MinReloadInterval: Duration(time.Hour)})
	if res := g.r.Pass(ctx, set, snapshot(svc("a", []string{"www"}, map[string]string{"ip": "1"}))); res.Installed != 1 {
		t.Fatalf("first pass: %+v", res)
	}
	res := g.r.Pass(ctx, set, snapshot(svc("b", []string{"www"}, map[string]string{"ip": "2"})))
	if res.Installed != 0 || res.RetryAt.IsZero() {
		t.Fatalf("pass within min_reload_interval = %+v; want it held back with a retry time", res)
	}
	if got := readFile(t, g.dest); got != "server 1;\n" {
		t.Fatalf("destination %q changed while held back", got)
	}
}

func TestReloadTimeoutKillsProcessGroup(t *testing.T) {
	t.Parallel()
	g := newGroup(t, "x\n")
	pidFile := filepath.Join(g.dir, "child.pid")
	// The reload starts a child that would outlive it, then hangs.
	set := g.set(t, TemplateConfig{Reload: "sleep 300 & echo $! > " + pidFile + "; wait", ReloadTimeout: Duration(300 * time.Millisecond)})
	res := g.r.Pass(context.Background(), set, snapshot())
	if w := res.Worst(); w == nil || w.Step != StepReload || !strings.Contains(w.Err.Error(), "killed") {
		t.Fatalf("pass = %+v; want the reload killed", res)
	}
	pid := strings.TrimSpace(readFile(t, pidFile))
	for i := 0; ; i++ {
		// A killed child lingers as a zombie of the shell until reaped; its
		// /proc entry then says so or is gone.
		status, err := os.ReadFile("/proc/" + pid + "/status")
		if err != nil || strings.Contains(string(status), "State:\tZ") {
			break
		}
		if i == 100 {
			t.Fatalf("the reload's child %s is still running after the timeout", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A reload that starts a daemon which keeps the reload's output open
// (nohup with output to a pipe) succeeded when it exited 0: its pass does
// not fail, nor restore the old file.
func TestReloadLeavingABackgroundChild(t *testing.T) {
	t.Parallel()
	g := newGroup(t, "x\n")
	set := g.set(t, TemplateConfig{Reload: "sleep 3 & echo started"})
	res := g.r.Pass(context.Background(), set, snapshot())
	if len(res.Failures) != 0 || res.Installed != 1 || contents(g.dest) != "x\n" {
		t.Fatalf("pass = %+v, file %q; want it installed and reloaded", res, contents(g.dest))
	}
	// One that fails is still a failure.
	g = newGroup(t, "x\n")
	set = g.set(t, TemplateConfig{Reload: "sleep 3 & exit 1"})
	if w := g.r.Pass(context.Background(), set, snapshot()).Worst(); w == nil || w.Step != StepReload {
		t.Fatalf("failed reload with a background child: %+v; want a reload failure", w)
	}
}

func TestDryPrintsDiffAndWritesNothing(t *testing.T) {
	t.Parallel()
	g := newGroup(t, upstreams)
	writeFile(t, g.dir, "out.conf", "server 10.0.0.9;\n")
	var out strings.Builder
	g.r.Dry, g.r.DryOut = true, &out
	set := g.set(t, TemplateConfig{Reload: "echo reload >> " + g.log})
	res := g.r.Pass(context.Background(), set, snapshot(svc("a", []string{"www"}, map[string]string{"ip": "10.0.0.1"})))
	if res.Installed != 0 || res.Failures != nil {
		t.Fatalf("dry pass = %+v", res)
	}
	if !strings.Contains(out.String(), "-server 10.0.0.9;\n+server 10.0.0.1;\n") {
		t.Fatalf("dry output:\n%s", out.String())
	}
	if got := readFile(t, g.dest); got != "server 10.0.0.9;\n" || g.reloads(t) != 0 {
		t.Fatalf("dry run wrote %q or reloaded", got)
	}
}

// A first install whose reload fails (the load balancer is not running
// yet) keeps the new file when it passed the check: there is nothing to
// restore, and without it the load balancer could not start.
func TestReloadFailureKeepsNewCheckedFile(t *testing.T) {
	t.Parallel()
	g := newGroup(t, "x\n")
	set := g.set(t, TemplateConfig{Check: "grep -q x {{.Staged}}", Reload: "echo reload >> " + g.log + "; exit 1"})
	res := g.r.Pass(context.Background(), set, snapshot())
	w := res.Worst()
	if w == nil || w.Step != StepReload || !strings.Contains(w.Err.Error(), "kept the new, checked files") {
		t.Fatalf("pass = %+v; want a reload failure that keeps the new file", res)
	}
	if got := readFile(t, g.dest); got != "x\n" {
		t.Fatalf("destination %q; want the checked file kept", got)
	}
	if n := g.reloads(t); n != 1 {
		t.Fatalf("%d reloads; with nothing restored there is nothing to reload again", n)
	}
}

// NoReload installs the checked files and runs no reload command.
func TestNoReloadInstallsWithoutReloading(t *testing.T) {
	t.Parallel()
	g := newGroup(t, "x\n")
	g.r.NoReload = true
	set := g.set(t, TemplateConfig{Check: "grep -q x {{.Staged}}", Reload: "echo reload >> " + g.log})
	if res := g.r.Pass(context.Background(), set, snapshot()); res.Installed != 1 || res.Failures != nil {
		t.Fatalf("pass = %+v", res)
	}
	if got := readFile(t, g.dest); got != "x\n" {
		t.Fatalf("destination %q", got)
	}
	if n := g.reloads(t); n != 0 {
		t.Fatalf("%d reloads with NoReload", n)
	}
}

// A changed perms (after a SIGHUP) is applied at the next pass although
// the content is the same.
func TestChangedPermsApplyWithoutAContentChange(t *testing.T) {
	t.Parallel()
	g := newGroup(t, "x\n")
	ctx := context.Background()
	if res := g.r.Pass(ctx, g.set(t, TemplateConfig{Perms: "0644"}), snapshot()); res.Installed != 1 {
		t.Fatalf("first pass: %+v", res)
	}
	set := g.set(t, TemplateConfig{Perms: "0600", Reload: "echo reload >> " + g.log})
	if res := g.r.Pass(ctx, set, snapshot()); res.Installed != 1 || res.Failures != nil {
		t.Fatalf("pass with new perms: %+v", res)
	}
	if fi, _ := os.Stat(g.dest); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	if res := g.r.Pass(ctx, set, snapshot()); res.Installed != 0 {
		t.Fatalf("a pass with nothing changed installed: %+v", res)
	}
}

// Len counts every template, inline ones included; Sources only files.
func TestSetLenCountsInlineTemplates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	set := newSet(t,
		TemplateConfig{Contents: "x", Destination: filepath.Join(dir, "a")},
		TemplateConfig{Source: writeFile(t, dir, "b.tmpl", "y"), Destination: filepath.Join(dir, "b"), ReloadGroup: "g"},
		TemplateConfig{Contents: "z", Destination: filepath.Join(dir, "c"), ReloadGroup: "g"})
	if n := set.Len(); n != 3 {
		t.Errorf("Len = %d, want 3", n)
	}
	if n := len(set.Sources()); n != 1 {
		t.Errorf("%d sources, want 1", n)
	}
}

// In a group of several files, a render min_instances refused for a
// destination that does not exist yet is installed only if the group goes
// on: when another file's guard keeps that group's old file, nothing is
// installed, and no line claims the new one is.
func TestMinInstancesGuardWithoutAFileInAFailingGroup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tmpl := writeFile(t, dir, "t.tmpl", upstreams)
	newDest, oldDest := filepath.Join(dir, "new.conf"), writeFile(t, dir, "old.conf", "server 10.0.0.1;\n")
	set := newSet(t,
		TemplateConfig{Source: tmpl, Destination: newDest, MinInstances: 1, ReloadGroup: "lb"},
		TemplateConfig{Source: tmpl, Destination: oldDest, MinInstances: 1, ReloadGroup: "lb"})
	var logs bytes.Buffer
	r := NewRenderer(slog.New(slog.NewTextHandler(&logs, nil)), nil, nil)
	res := r.Pass(context.Background(), set, snapshot())
	if w := res.Worst(); w == nil || w.Step != StepRender || !strings.Contains(w.Err.Error(), "keeping the old file "+oldDest) {
		t.Fatalf("pass = %+v; want the guard to keep %s", res, oldDest)
	}
	if fileExistsAt(newDest) {
		t.Fatalf("%s was installed although its group failed", newDest)
	}
	if strings.Contains(logs.String(), "installing this render anyway") {
		t.Fatalf("the log claims a render is installed in a group that failed:\n%s", logs.String())
	}
}

// A new file removed after its reload failed takes the destination back
// to what it was before: one that had a file (deleted since) keeps
// min_instances' protection, and gets no refused render as a first deploy.
func TestMinInstancesGuardAfterRemovedNewFile(t *testing.T) {
	t.Parallel()
	g := newGroup(t, `{{range servicesWithTag "www"}}server {{.Metadata.ip}};
{{else}}server 127.0.0.1:9 down;
{{end}}`)
	writeFile(t, filepath.Dir(g.dest), filepath.Base(g.dest), "server 10.0.0.1;\n")
	fail := filepath.Join(t.TempDir(), "fail")
	set := g.set(t, TemplateConfig{MinInstances: 1, Reload: "test ! -e " + fail})
	one := snapshot(svc("a", []string{"www"}, map[string]string{"ip": "10.0.0.1"}))
	if res := g.r.Pass(context.Background(), set, one); len(res.Failures) != 0 {
		t.Fatalf("first pass: %+v", res)
	}
	// The file is deleted; the next render puts it back, as a new file
	// whose reload fails: without a check, it is removed.
	if err := os.Remove(g.dest); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Dir(fail), "fail", "")
	if w := g.r.Pass(context.Background(), set, one).Worst(); w == nil || w.Step != StepReload || !strings.Contains(w.Err.Error(), "removed the new files") {
		t.Fatalf("pass with a failing reload: %+v; want the new file removed", w)
	}
	if err := os.Remove(fail); err != nil {
		t.Fatal(err)
	}
	if w := g.r.Pass(context.Background(), set, snapshot()).Worst(); w == nil || w.Step != StepRender || !strings.Contains(w.Err.Error(), "was deleted since") {
		t.Fatalf("pass on an emptied registry: %+v; want the guard to refuse", w)
	}
	if fileExistsAt(g.dest) {
		t.Fatalf("the refused render was installed at %s", g.dest)
	}
}

// sortByMeta's order is total: missing first, integers as numbers, then
// the other values as strings, so that values of both kinds (which
// compared pairwise would loop: 9 < 10, "10" < "1a" < "9") give one order
// whatever the list's.
func TestSortByMetaOrderIsTotal(t *testing.T) {
	t.Parallel()
	values := []string{"1a", "10", "9", "", "b", "-3", "09"}
	var list []registry.Service
	for i, v := range values {
		list = append(list, svc(fmt.Sprint("s-", i), nil, map[string]string{"k": v}))
	}
	want := "s-3 s-5 s-2 s-6 s-1 s-0 s-4 " // "", -3, 9, 09, 10, 1a, b
	for range 20 {
		rand.Shuffle(len(list), func(i, j int) { list[i], list[j] = list[j], list[i] })
		got := ""
		for _, s := range sortByMeta("k", list) {
			got += s.ID + " "
		}
		if got != want {
			t.Fatalf("sorted %q; want %q", got, want)
		}
	}
}

// A user or group the host does not have is a config error, found when
// the config is read (a SIGHUP keeps the config in use), not an install
// that fails at every pass once the config it replaced is gone. A
// negative id is no id.
func TestConfigRefusesAnUnknownOwner(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct{ user, group, want string }{
		{user: "svcreg-no-such-user", want: `user "svcreg-no-such-user"`},
		{group: "svcreg-no-such-group", want: `group "svcreg-no-such-group"`},
		{user: "-2", want: `user "-2"`},
		{group: "-2", want: `group "-2"`},
	} {
		c := Config{Templates: []TemplateConfig{{Contents: "a", Destination: filepath.Join(dir, "out.conf"), User: tc.user, Group: tc.group}}}
		err := c.Normalize()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("user %q group %q: err = %v; want it refused (%s)", tc.user, tc.group, err, tc.want)
		}
	}
	c := Config{Templates: []TemplateConfig{{Contents: "a", Destination: filepath.Join(dir, "out.conf"), User: "0", Group: "root"}}}
	if err := c.Normalize(); err != nil {
		t.Errorf("user 0, group root: %v", err)
	}
}
