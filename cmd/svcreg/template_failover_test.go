package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/svcreg/svcreg/internal/testserver"
)

// svcreg template --once given the URLs of several registry nodes, the
// first of them down, renders from the next, and logs the move once.
func TestTemplateOnceFailsOver(t *testing.T) {
	t.Parallel()
	srv, c, _ := registryEnv(t, testserver.Options{}, "failover")
	createService(t, c, "web1", 60, nil, nil)
	dir := t.TempDir()
	config := filepath.Join(dir, "render.toml")
	dest := filepath.Join(dir, "ids.txt")
	writeFile(t, config, "[[template]]\ncontents = \"{{ range services }}{{ .ID }}\\n{{ end }}\"\ndestination = \"ids.txt\"\n")
	const dead = "http://127.0.0.1:1" // nothing listens: refused
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"template", "--once", "--config", config,
		"--url", dead + "," + srv.URL, "--username", "failover", "--api-key", "dev"}, nil, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if got := readString(dest); got != "web1\n" {
		t.Errorf("rendered %q, want web1", got)
	}
	logs := stderr.String()
	if n := strings.Count(logs, "registry "+dead+" failed"); n != 1 || !strings.Contains(logs, "; using "+srv.URL) {
		t.Errorf("the log says %d times that %s failed; want once, and that %s is used:\n%s", n, dead, srv.URL, logs)
	}
}
