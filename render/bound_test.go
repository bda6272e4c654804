package render

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// eventually polls cond; the bound only stops a broken test.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A template stuck in a loop is stopped at render_timeout (the capped
// until sees the deadline); its group fails, the other group installs.
func TestRenderTimeoutStopsLoopAndOtherGroupsRender(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	slow := TemplateConfig{Contents: `{{range until 100000}}{{range until 100000}}{{end}}{{end}}`,
		Destination: filepath.Join(dir, "slow.conf"), RenderTimeout: Duration(50 * time.Millisecond)}
	fast := TemplateConfig{Contents: `{{len services}}`, Destination: filepath.Join(dir, "fast.conf")}
	set := newSet(t, slow, fast)
	r := NewRenderer(nil, nil, nil)
	res := r.Pass(context.Background(), set, snapshot())
	if len(res.Failures) != 1 || res.Failures[0].Kind != RenderFailed || !strings.Contains(res.Failures[0].Error(), "render_timeout") {
		t.Fatalf("failures = %v; want the slow template's render_timeout", res.Failures)
	}
	if res.Installed != 1 || readFile(t, fast.Destination) != "0" {
		t.Fatalf("the other group was not installed: %+v", res)
	}
	if _, err := os.Stat(slow.Destination); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the timed-out template's file was written: %v", err)
	}
	if rep := r.Health.Report(0); rep.Groups[slow.Destination].Render.OK {
		t.Fatal("healthz says the timed-out render was ok")
	}
	// until watched the deadline: the execution ended, and the template
	// may run again.
	tmpl := set.Groups[0].Templates[0]
	eventually(t, "the stopped execution to end", func() bool { return len(tmpl.busy) == 0 })
}

// A loop that calls nothing and writes nothing cannot be stopped: it is
// abandoned at render_timeout, the template is not run again while it
// runs, and the renderer goes on.
func TestRenderTimeoutAbandonsPureLoop(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// Millions of empty iterations: far longer than a millisecond, and
	// over in seconds so the test leaves no goroutine spinning.
	spin := TemplateConfig{Contents: `{{range 3000}}{{range 3000}}{{end}}{{end}}`,
		Destination: filepath.Join(dir, "spin.conf"), RenderTimeout: Duration(time.Millisecond)}
	set := newSet(t, spin)
	tmpl := set.Groups[0].Templates[0]
	_, err := tmpl.Render(snapshot())
	if err == nil || !strings.Contains(err.Error(), "render_timeout reached") || !strings.Contains(err.Error(), "abandoned") {
		t.Fatalf("err = %v; want the render abandoned at render_timeout", err)
	}
	if _, err := tmpl.Render(snapshot()); err == nil || !strings.Contains(err.Error(), "still running") {
		t.Fatalf("second render: err = %v; want it refused while the first runs", err)
	}
	eventually(t, "the abandoned loop to end", func() bool { return len(tmpl.busy) == 0 })
}

func TestMaxOutput(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, tmpl, want string }{
		{"repeat builds nothing larger than max_output", `{{repeat 1000000000 "x"}}`, "repeat: the result would be larger than max_output"},
		{"indent", `{{indent 1000000000 "x"}}`, "indent: the result would be larger than max_output"},
		{"until is capped", `{{len (until 2000000)}}`, "until: 2000000 items are more than 1000000"},
		{"seq is capped", `{{seq 2000000}}`, "seq: more than 1000000 items"},
		{"output", `{{range until 100000}}0123456789abcdef{{end}}`, "max_output reached: the output is larger than 1048576 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			set := newSet(t, TemplateConfig{Contents: tc.tmpl, Destination: filepath.Join(dir, "out"), MaxOutput: 1 << 20})
			out, err := set.Groups[0].Templates[0].Render(snapshot())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v (%d bytes); want %q", err, len(out), tc.want)
			}
		})
	}
	// Within the bounds the functions work as sprig's.
	dir := t.TempDir()
	set := newSet(t, TemplateConfig{Contents: `{{repeat 3 "ab"}} {{until 3}} {{seq 2 4}} {{indent 2 "a\nb"}}|{{nindent 1 "c"}}`, Destination: filepath.Join(dir, "out")})
	out, err := set.Groups[0].Templates[0].Render(snapshot())
	if want := "ababab [0 1 2] 2 3 4   a\n  b|\n c"; err != nil || string(out) != want {
		t.Fatalf("got %q, %v; want %q", out, err, want)
	}
}

// A stopped renderer (SIGTERM cancels the context) does not wait for a
// render.
func TestRenderStopsWithContext(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	set := newSet(t, TemplateConfig{Contents: `{{range until 100000}}{{range until 100000}}{{end}}{{end}}`,
		Destination: filepath.Join(dir, "out"), RenderTimeout: Duration(time.Hour)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan PassResult)
	go func() { done <- NewRenderer(nil, nil, nil).Pass(ctx, set, snapshot()) }()
	cancel()
	res := <-done
	if w := res.Worst(); w == nil || !strings.Contains(w.Error(), "render stopped") {
		t.Fatalf("worst = %v; want the render stopped", w)
	}
}

// The renderer's credentials are not in a template's reach.
func TestTemplatesCannotReadCredentials(t *testing.T) {
	t.Setenv("SVCREG_API_KEY", "secret-key")
	t.Setenv("SVCREG_PASSWORD", "secret-pw")
	t.Setenv("SVCREG_TOKEN", "secret-token")
	t.Setenv("SVCREG_TEST_VISIBLE", "visible")
	dir := t.TempDir()
	set := newSet(t, TemplateConfig{Destination: filepath.Join(dir, "out"),
		Contents: `{{env "SVCREG_API_KEY"}}|{{expandenv "$SVCREG_PASSWORD ${SVCREG_TOKEN}"}}|{{env "SVCREG_TEST_VISIBLE"}}`})
	out, err := set.Groups[0].Templates[0].Render(snapshot())
	if err != nil || string(out) != "| |visible" {
		t.Fatalf("got %q, %v; want the credentials hidden", out, err)
	}
}

func TestFunctionDenylist(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := Config{FunctionDenylist: []string{"env", "expandenv"},
		Templates: []TemplateConfig{{Contents: "a\n{{env \"HOME\"}}", Destination: filepath.Join(dir, "out")}}}
	if err := c.Normalize(); err != nil {
		t.Fatal(err)
	}
	_, err := NewSet(c)
	if err == nil || !strings.Contains(err.Error(), `function "env" not defined`) || !strings.Contains(err.Error(), "function_denylist") {
		t.Fatalf("err = %v; want the denied function named", err)
	}
	c.Templates[0].Contents = "{{len services}}"
	if _, err := NewSet(c); err != nil {
		t.Fatalf("a template not calling a denied function: %v", err)
	}
	c.FunctionDenylist = []string{"nosuch"}
	if err := c.Normalize(); err == nil || !strings.Contains(err.Error(), `function_denylist: "nosuch" is not a template function`) {
		t.Fatalf("err = %v; want the unknown name refused", err)
	}
}
