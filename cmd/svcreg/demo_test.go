package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
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

// Stopped midway, the demo returns only after everything it started has
// stopped: no goroutine it started outlives it, and its store is closed
// after its users. (Not parallel: it reads every goroutine's stack.)
func TestDemoStopsEverythingItStarts(t *testing.T) {
	before := demoGoroutines()
	for round := range 5 {
		out := filepath.Join(t.TempDir(), "upstreams.conf")
		ctx, cancel := context.WithCancel(context.Background())
		var stdout, stderr bytes.Buffer
		done := make(chan int, 1)
		go func() {
			done <- Main(ctx, []string{"demo", "--step", "100ms", "--out", out}, nil, &lockedWriter{w: &stdout}, &stderr)
		}()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if b, _ := os.ReadFile(out); strings.Contains(string(b), "web-1") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the demo did not render web-1")
			}
		}
		cancel()
		if code := <-done; code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		if after := demoGoroutines(); len(after) > len(before) {
			t.Fatalf("round %d: goroutines of the demo outlive it:\n%s", round, strings.Join(after, "\n\n"))
		}
	}
}

// demoGoroutines returns the stacks of the goroutines running a part of
// the demo.
func demoGoroutines() []string {
	buf := make([]byte, 4<<20)
	var out []string
	for g := range strings.SplitSeq(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		for _, f := range []string{"main.runDemo", "main.printChanges", "main.demoSteps", "(*Watcher).Run", "(*Loop).Run", "(*Store).Run", "(*Heartbeater)", "(*Server).Serve"} {
			if strings.Contains(g, f) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}
