package render

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Masterminds/sprig/v3"
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
	if len(res.Failures) != 1 || res.Failures[0].Step != StepRender || !strings.Contains(res.Failures[0].Error(), "render_timeout") {
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
	eventually(t, "the stopped execution to end", func() bool { return tmpl.abandoned.Load() == 0 })
}

// A loop that calls nothing and writes nothing cannot be stopped: it is
// abandoned at render_timeout, the template is not run again while it
// runs, and the renderer goes on.
func TestRenderTimeoutAbandonsPureLoop(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// Empty iterations for about a second: far longer than the millisecond
	// of render_timeout, its grace and the second call below however
	// loaded the machine, and over soon so the test leaves no goroutine
	// spinning (the CPU it burns slows every other test). How many that
	// is, measured first: the race detector makes them ten times slower.
	probe := TemplateConfig{Contents: `{{range 100}}{{range 1000}}{{end}}{{end}}`,
		Destination: filepath.Join(dir, "probe.conf"), RenderTimeout: Duration(time.Minute)}
	start := time.Now()
	if _, err := newSet(t, probe).Groups[0].Templates[0].Render(snapshot()); err != nil {
		t.Fatal(err)
	}
	outer := max(100, int(100*time.Second/time.Since(start)))
	spin := TemplateConfig{Contents: fmt.Sprintf(`{{range %d}}{{range 1000}}{{end}}{{end}}`, outer),
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
	eventually(t, "the abandoned loop to end", func() bool { return tmpl.abandoned.Load() == 0 })
}

func TestMaxOutput(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, tmpl, want string }{
		{"repeat builds nothing larger than max_output", `{{repeat 1000000000 "x"}}`, "repeat: the result would be larger than max_output"},
		{"indent", `{{indent 1000000000 "x"}}`, "indent: the result would be larger than max_output"},
		{"until is capped", `{{len (until 2000000)}}`, "until: more than 1000000 items"},
		{"until is capped below zero", `{{len (until -2000000)}}`, "until: more than 1000000 items"},
		{"untilStep counts without overflow", `{{len (untilStep -9000000000000000000 9000000000000000000 10000000000000)}}`, "untilStep: more than 1000000 items"},
		{"untilStep over the whole int range", `{{len (untilStep -9223372036854775808 9223372036854775807 1)}}`, "untilStep: more than 1000000 items"},
		{"seq is capped", `{{seq 2000000}}`, "seq: more than 1000000 items"},
		{"seq counts without overflow", `{{seq -9223372036854775808 9223372036854775807}}`, "seq: more than 1000000 items"},
		{"seq with a step", `{{seq 9223372036854775807 -1 -9223372036854775808}}`, "seq: more than 1000000 items"},
		{"randAlphaNum", `{{len (randAlphaNum 50000000)}}`, "randAlphaNum: the result would be larger than max_output"},
		{"randAlpha", `{{len (randAlpha 50000000)}}`, "randAlpha: the result would be larger than max_output"},
		{"randAscii", `{{len (randAscii 50000000)}}`, "randAscii: the result would be larger than max_output"},
		{"randNumeric", `{{len (randNumeric 50000000)}}`, "randNumeric: the result would be larger than max_output"},
		{"randBytes", `{{len (randBytes 1000000)}}`, "randBytes: the result would be larger than max_output"},
		{"replace that multiplies", `{{len (replace "" (repeat 5000 "b") (repeat 5000 "a"))}}`, "replace: the result would be larger than max_output"},
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
	set := newSet(t, TemplateConfig{Contents: `{{repeat 3 "ab"}} {{until 3}} {{seq 2 4}} {{indent 2 "a\nb"}}|{{nindent 1 "c"}}` +
		`|{{len (randAlphaNum 5)}} {{len (randBytes 6)}} {{replace "a" "xy" "banana"}}` +
		`|{{untilStep 9223372036854775800 9223372036854775807 5}} {{seq 9223372036854775806 9223372036854775807}} {{len (until 1000000)}}`,
		Destination: filepath.Join(dir, "out")})
	out, err := set.Groups[0].Templates[0].Render(snapshot())
	if want := "ababab [0 1 2] 2 3 4   a\n  b|\n c|5 8 bxynxynxy|[9223372036854775800 9223372036854775805] 9223372036854775806 9223372036854775807 1000000"; err != nil || string(out) != want {
		t.Fatalf("got %q, %v; want %q", out, err, want)
	}
}

// until, untilStep and seq give sprig's results wherever sprig's are
// right (no overflow).
func TestSequencesMatchSprig(t *testing.T) {
	t.Parallel()
	sp := sprig.TxtFuncMap()
	until := sp["until"].(func(int) []int)
	untilStep := sp["untilStep"].(func(int, int, int) []int)
	seq := sp["seq"].(func(...int) string)
	g := &renderGuard{ctx: context.Background(), maxOutput: DefaultMaxOutput}
	guardedUntil := g.guardedFuncs()["until"].(func(int) ([]int, error))
	for a := -7; a <= 7; a++ {
		if got, err := guardedUntil(a); err != nil || !slices.Equal(got, until(a)) {
			t.Errorf("until %d = %v, %v; sprig's %v", a, got, err, until(a))
		}
		if got, err := g.seq(a); err != nil || got != seq(a) {
			t.Errorf("seq %d = %q, %v; sprig's %q", a, got, err, seq(a))
		}
		for b := -7; b <= 7; b++ {
			if got, err := g.seq(a, b); err != nil || got != seq(a, b) {
				t.Errorf("seq %d %d = %q, %v; sprig's %q", a, b, got, err, seq(a, b))
			}
			for c := -4; c <= 4; c++ {
				if got, err := g.untilStep("untilStep", a, b, c); err != nil || !slices.Equal(got, untilStep(a, b, c)) {
					t.Errorf("untilStep %d %d %d = %v, %v; sprig's %v", a, b, c, got, err, untilStep(a, b, c))
				}
				if got, err := g.seq(a, c, b); err != nil || got != seq(a, c, b) {
					t.Errorf("seq %d %d %d = %q, %v; sprig's %q", a, c, b, got, err, seq(a, c, b))
				}
			}
		}
	}
	if got, err := g.seq(); err != nil || got != seq() {
		t.Errorf("seq = %q, %v; sprig's %q", got, err, seq())
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

// The renderer's credentials are not in a template's reach, nor in its
// commands'.
func TestTemplatesCannotReadCredentials(t *testing.T) {
	t.Setenv("SVCREG_API_KEY", "secret-key")
	t.Setenv("SVCREG_PASSWORD", "secret-pw")
	t.Setenv("SVCREG_TOKEN", "secret-token")
	t.Setenv("SVCREG_TEST_VISIBLE", "visible")
	// A password in a URL is a credential too (the client sends it).
	t.Setenv("SVCREG_URL", "http://dev:secret-url-pw@127.0.0.1:8420/v1.0,https://n2.example/v1.0")
	t.Setenv("SVCREG_AUTH_URL", "http://dev:secret-auth-pw@127.0.0.1:8420/v2.0")
	dir := t.TempDir()
	set := newSet(t, TemplateConfig{Destination: filepath.Join(dir, "out"),
		Contents: `{{env "SVCREG_API_KEY"}}|{{expandenv "$SVCREG_PASSWORD ${SVCREG_TOKEN}"}}|{{env "SVCREG_TEST_VISIBLE"}}|{{env "SVCREG_URL"}}|{{expandenv "$SVCREG_AUTH_URL"}}`})
	out, err := set.Groups[0].Templates[0].Render(snapshot())
	if want := "| |visible|http://127.0.0.1:8420/v1.0,https://n2.example/v1.0|http://127.0.0.1:8420/v2.0"; err != nil || string(out) != want {
		t.Fatalf("got %q, %v; want %q: the credentials hidden", out, err, want)
	}
	// Nor in a check's or reload's (their output goes to logs and
	// /healthz).
	got, err := runCommand(context.Background(), `echo "[$SVCREG_API_KEY|$SVCREG_PASSWORD|$SVCREG_TOKEN|$SVCREG_TEST_VISIBLE|$SVCREG_URL|$SVCREG_AUTH_URL]"`, 10*time.Second)
	if want := "[|||visible|http://127.0.0.1:8420/v1.0,https://n2.example/v1.0|http://127.0.0.1:8420/v2.0]"; err != nil || strings.TrimSpace(got) != want {
		t.Fatalf("a command's environment: %q, %v; want %q: the credentials hidden", got, err, want)
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

// A field a template cannot find is explained in the template's terms, not
// only by the Go type text/template names.
func TestUnknownFieldIsExplained(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ tmpl, want string }{
		{`{{.Nope}}`, `"." is the registry's snapshot, read through the template functions`},
		{`{{range services}}{{.Port}}{{end}}`, "a service has .ID, .Tags, .Metadata, .HeartbeatTimeout and .LastSeen"},
	} {
		g := newGroup(t, tc.tmpl)
		w := g.r.Pass(context.Background(), g.set(t, TemplateConfig{}), snapshot(svc("a", []string{"www"}, nil))).Worst()
		if w == nil || w.Step != StepRender || !strings.Contains(w.Err.Error(), tc.want) {
			t.Errorf("%s: %v; want the error to say %q", tc.tmpl, w, tc.want)
		}
	}
}
