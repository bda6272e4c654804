package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
