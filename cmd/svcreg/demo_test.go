package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The quick start's main job: services join, leave and time out, and the
// rendered upstream follows.
func TestDemo(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "upstreams.conf")
	var stdout, stderr bytes.Buffer
	if code := Main(context.Background(), []string{"demo", "--step", "200ms", "--out", out}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{"server 10.0.0.12:8080 weight=3;  # web-2", "keepalive 64;", ">>> web-3 stops heartbeating"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, stdout.String())
		}
	}
	final, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(final); !strings.Contains(got, "# web-1") || strings.Contains(got, "web-2") || strings.Contains(got, "web-3") {
		t.Fatalf("final upstreams: want web-1 only (web-2 left, web-3 timed out):\n%s", got)
	}
}

// A demo whose renderer cannot write its file says so and fails: before,
// its log went nowhere, the rendered file never showed, and it exited 0.
// An --out in a directory that does not exist is refused before it starts.
func TestDemoReportsRendererFailures(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := Main(context.Background(), []string{"demo", "--step", "50ms", "--out", filepath.Join(dir, "none", "x.conf")}, nil, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "its directory "+filepath.Join(dir, "none")+" does not exist") {
		t.Errorf("--out in a missing directory: exit %d, %s", code, stderr.String())
	}
	stdout.Reset()
	stderr.Reset()
	if err := os.Mkdir(filepath.Join(dir, "x.conf"), 0o755); err != nil {
		t.Fatal(err)
	}
	code := Main(context.Background(), []string{"demo", "--step", "50ms", "--out", filepath.Join(dir, "x.conf")}, nil, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), `msg="template group failed"`) || !strings.Contains(stderr.String(), "the renderer failed") {
		t.Errorf("--out naming a directory: exit %d, stderr:\n%s", code, stderr.String())
	}
}

// A write whose reader is gone (output piped into head) stops the demo,
// which then removes its temporary directory; other errors do not.
func TestDemoOutputStopsOnEPIPE(t *testing.T) {
	t.Parallel()
	stopped := 0
	w := &lockedWriter{w: errWriter{syscall.EPIPE}, onEPIPE: func() { stopped++ }}
	w.Write([]byte("x"))
	w.w = errWriter{io.ErrShortWrite}
	w.Write([]byte("x"))
	if stopped != 1 {
		t.Errorf("stopped %d times, want once: by EPIPE alone", stopped)
	}
}

type errWriter struct{ err error }

func (e errWriter) Write([]byte) (int, error) { return 0, e.err }

// The demo's registry answers only requests that name it by address (or
// localhost, or a name without a dot), as a --dev server does: a web page
// could otherwise log in as dev through a DNS name pointed at 127.0.0.1
// while the demo runs.
func TestDemoRefusesOtherHosts(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := newOutput()
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"demo", "--step", "1m", "--out", filepath.Join(t.TempDir(), "upstreams.conf")}, nil, out, io.Discard)
	}()
	defer func() { cancel(); <-done }()
	out.waitFor(t, "/v1.0")
	_, rest, _ := strings.Cut(out.String(), "registry: ")
	base, _, _ := strings.Cut(rest, "/v1.0")
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	devLoginsByHost(t, base, map[string]int{"rebind.attacker.example:" + u.Port(): http.StatusMisdirectedRequest, u.Host: http.StatusOK})
}

// Stopped midway, the demo returns only after everything it started has
// stopped: no goroutine it started outlives it, and its store is closed
// after its users. Each round runs the demo under a pprof label of its
// own, which every goroutine it starts inherits, so the check sees only
// this demo's goroutines and the test runs beside the others.
func TestDemoStopsEverythingItStarts(t *testing.T) {
	t.Parallel()
	for round := range 5 {
		label := fmt.Sprintf("%s-%d", t.Name(), round)
		out := filepath.Join(t.TempDir(), "upstreams.conf")
		ctx, cancel := context.WithCancel(context.Background())
		var stdout, stderr bytes.Buffer
		done := make(chan int, 1)
		go pprof.Do(ctx, pprof.Labels("demo", label), func(ctx context.Context) {
			done <- Main(ctx, []string{"demo", "--step", "100ms", "--out", out}, nil, &lockedWriter{w: &stdout}, &stderr)
		})
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if b, _ := os.ReadFile(out); strings.Contains(string(b), "web-1") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the demo did not render web-1")
			}
		}
		if n := labelled(label); n == 0 {
			t.Fatal("no goroutine of the running demo carries its label; the check below would see nothing")
		}
		cancel()
		if code := <-done; code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		// The goroutine that ran Main carries the label too, and may not
		// have ended yet.
		for deadline := time.Now().Add(time.Second); labelled(label) > 0 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		if n := labelled(label); n > 0 {
			t.Fatalf("round %d: %d goroutines of the demo outlive it:\n%s", round, n, goroutinesLabelled(label))
		}
	}
}

// labelled counts the goroutines that carry the pprof label demo=label.
func labelled(label string) int {
	n := 0
	for _, g := range strings.Split(goroutinesLabelled(label), "\n\n") {
		var count int
		if _, err := fmt.Sscanf(g, "%d @", &count); err == nil {
			n += count
		}
	}
	return n
}

// goroutinesLabelled returns the goroutine profile's records (a count and
// a stack each, blank-line separated) of the goroutines that carry the
// pprof label demo=label.
func goroutinesLabelled(label string) string {
	var buf bytes.Buffer
	pprof.Lookup("goroutine").WriteTo(&buf, 1)
	want := fmt.Sprintf("# labels: {%q:%q}", "demo", label)
	var out []string
	for g := range strings.SplitSeq(buf.String(), "\n\n") {
		if strings.Contains(g, want) {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}
