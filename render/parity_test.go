package render

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestErrorOnMissingKey(t *testing.T) {
	t.Parallel()
	snap := snapshot(svc("web-1", []string{"www"}, map[string]string{"ip": "10.0.0.1"}))
	dir := t.TempDir()
	tmpl := `{{range services}}[{{.Metadata.nope}}]{{end}}`
	lax := newSet(t, TemplateConfig{Contents: tmpl, Destination: filepath.Join(dir, "a")})
	if out, err := lax.Groups[0].Templates[0].Render(snap); err != nil || string(out) != "[]" {
		t.Fatalf("default: got %q, %v; want an empty string", out, err)
	}
	strict := newSet(t, TemplateConfig{Contents: tmpl, Destination: filepath.Join(dir, "b"), ErrorOnMissingKey: true})
	if _, err := strict.Groups[0].Templates[0].Render(snap); err == nil || !strings.Contains(err.Error(), `map has no entry for key "nope"`) {
		t.Fatalf("error_on_missing_key: err = %v; want the missing key named", err)
	}
}

func TestCustomDelimiters(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	set := newSet(t, TemplateConfig{Contents: `{{ literal }} <%range services%><%.ID%><%end%>`, Destination: filepath.Join(dir, "out"),
		LeftDelimiter: "<%", RightDelimiter: "%>"})
	out, err := set.Groups[0].Templates[0].Render(snapshot(svc("web-1", nil, nil)))
	if err != nil || string(out) != "{{ literal }} web-1" {
		t.Fatalf("got %q, %v", out, err)
	}
	c := Config{Templates: []TemplateConfig{{Contents: "x", Destination: filepath.Join(dir, "o"), LeftDelimiter: "<%"}}}
	if err := c.Normalize(); err == nil || !strings.Contains(err.Error(), "left_delimiter and right_delimiter go together") {
		t.Fatalf("err = %v", err)
	}
}

func TestInlineContents(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dest := filepath.Join(dir, "out")
	set := newSet(t, TemplateConfig{Contents: `n={{len services}}`, Destination: dest})
	if len(set.Sources()) != 0 {
		t.Fatalf("an inline template has files to watch: %v", set.Sources())
	}
	if res := NewRenderer(nil, nil, nil).Pass(context.Background(), set, snapshot()); len(res.Failures) != 0 {
		t.Fatal(res.Failures)
	}
	if got := readFile(t, dest); got != "n=0" {
		t.Fatalf("got %q", got)
	}
	for _, tc := range []TemplateConfig{
		{Destination: dest},
		{Source: "a.tmpl", Contents: "x", Destination: dest},
	} {
		c := Config{Templates: []TemplateConfig{tc}}
		if err := c.Normalize(); err == nil || !strings.Contains(err.Error(), "either source or contents") {
			t.Errorf("%+v: err = %v; want source or contents required", tc, err)
		}
	}
}

func TestCreateDestDirs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dest := filepath.Join(dir, "conf.d", "sub", "out.conf")
	r := NewRenderer(nil, nil, nil)
	set := newSet(t, TemplateConfig{Contents: "x", Destination: dest})
	res := r.Pass(context.Background(), set, snapshot())
	if w := res.Worst(); w == nil || w.Step != StepInstall || !strings.Contains(w.Error(), "does not exist (create it, or set create_dest_dirs = true)") {
		t.Fatalf("worst = %v; want a clear install failure", w)
	}
	set = newSet(t, TemplateConfig{Contents: "x", Destination: dest, CreateDestDirs: true})
	if res := r.Pass(context.Background(), set, snapshot()); len(res.Failures) != 0 {
		t.Fatal(res.Failures)
	}
	if got := readFile(t, dest); got != "x" {
		t.Fatalf("got %q", got)
	}
	if fi, err := os.Stat(filepath.Dir(dest)); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("created directory: %v, %v", fi, err)
	}
}

// The directories create_dest_dirs creates are 0755 whatever the umask
// (under umask 077 a worker that is not root could not reach the file).
// Not parallel: the umask is the process's.
func TestCreateDestDirsIgnoresTheUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := t.TempDir()
	dest := filepath.Join(dir, "conf.d", "sub", "out.conf")
	set := newSet(t, TemplateConfig{Contents: "x", Destination: dest, CreateDestDirs: true})
	if res := NewRenderer(nil, nil, nil).Pass(context.Background(), set, snapshot()); len(res.Failures) != 0 {
		t.Fatal(res.Failures)
	}
	for _, d := range []string{filepath.Join(dir, "conf.d"), filepath.Dir(dest)} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("created directory %s: %v, %v; want 0755", d, fi.Mode().Perm(), err)
		}
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the directory that was there (%v, %v) was changed", fi.Mode().Perm(), err)
	}
}

// splay delays the install and reload by a random time up to the group's
// splay; a stop meanwhile installs nothing.
func TestSplay(t *testing.T) {
	t.Parallel()
	g := newGroup(t, "x")
	set := g.set(t, TemplateConfig{Reload: "echo reload >> " + g.log, Splay: Duration(time.Hour)})
	var asked []time.Duration
	reached := make(chan struct{})
	g.r.splayDelay = func(max time.Duration) time.Duration {
		asked = append(asked, max)
		close(reached)
		return max
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan PassResult)
	go func() { done <- g.r.Pass(ctx, set, snapshot()) }()
	<-reached
	cancel()
	res := <-done
	if res.Installed != 0 || fileExistsAt(g.dest) || g.reloads(t) != 0 {
		t.Fatalf("installed or reloaded during the splay: %+v", res)
	}
	if len(asked) != 1 || asked[0] != time.Hour {
		t.Fatalf("splay asked for %v; want one delay up to 1h", asked)
	}
	g.r.splayDelay = func(time.Duration) time.Duration { return 0 }
	if res := g.r.Pass(context.Background(), set, snapshot()); res.Installed != 1 || g.reloads(t) != 1 {
		t.Fatalf("after the splay: %+v, %d reloads", res, g.reloads(t))
	}
}

func fileExistsAt(p string) bool { _, err := os.Stat(p); return err == nil }

func TestTemplateOptionsInConfigFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := writeFile(t, dir, "render.toml", `
function_denylist = ["env", "expandenv"]
[[template]]
contents = "{{ len services }}"
destination = "out.conf"
error_on_missing_key = true
left_delimiter = "[["
right_delimiter = "]]"
create_dest_dirs = true
splay = "5s"
render_timeout = "2s"
max_output = "1MiB"
on_refused = "fail"
allow_hostnames = true
[[template]]
contents = "x"
destination = "out2.conf"
max_output = 4096
`)
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	t0, t1 := c.Templates[0], c.Templates[1]
	if !t0.ErrorOnMissingKey || t0.LeftDelimiter != "[[" || !t0.CreateDestDirs || t0.Splay.D() != 5*time.Second ||
		t0.RenderTimeout.D() != 2*time.Second || t0.MaxOutput != 1<<20 || t0.OnRefused != RefusedFail || !t0.AllowHostnames || len(c.FunctionDenylist) != 2 {
		t.Fatalf("template 1: %+v", t0)
	}
	if t1.MaxOutput != 4096 || t1.RenderTimeout.D() != DefaultRenderTimeout || t1.OnRefused != RefusedSkip || t1.AllowHostnames {
		t.Fatalf("template 2 defaults: %+v", t1)
	}
	for _, bad := range []string{`max_output = "lots"`, `max_output = -1`, `on_refused = "ignore"`} {
		p := writeFile(t, dir, "bad.toml", "[[template]]\ncontents = \"x\"\ndestination = \"o\"\n"+bad+"\n")
		if _, err := LoadConfig(p); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
