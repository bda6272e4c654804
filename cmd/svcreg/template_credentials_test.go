package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testserver"
)

// --once and --print with credentials the registry refuses end at once,
// exit 3 (like a bad config: waiting does not cure it), saying that the
// credentials were refused, not that the registry could not be reached.
func TestTemplateOnceRefusedCredentials(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	dir := t.TempDir()
	config := filepath.Join(dir, "render.toml")
	dest := filepath.Join(dir, "ids.txt")
	os.WriteFile(config, []byte("[[template]]\ncontents = \"{{ range services }}{{ .ID }}\\n{{ end }}\"\ndestination = \"ids.txt\"\n"), 0o644)
	for _, mode := range []string{"--once", "--print"} {
		t.Run(mode, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			start := time.Now()
			code := Main(context.Background(), []string{"template", mode, "--once-timeout", "20s", "--config", config,
				"--url", srv.APIURL, "--username", "e2e-refused", "--api-key", "not-the-key"}, nil, &stdout, &stderr)
			if code != exitConfig {
				t.Fatalf("exit %d, want %d: %s", code, exitConfig, stderr.String())
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v: refused credentials are not retried until --once-timeout", d)
			}
			if out := stderr.String(); !strings.Contains(out, "the registry refused the credentials") || !strings.Contains(out, "401") ||
				strings.Contains(out, "no full sync") || strings.Contains(out, "not-the-key") {
				t.Errorf("stderr %q; want it to say the credentials were refused (the 401, not the key), not that there was no sync", out)
			}
			if fileExists(dest) {
				t.Error("a file was written")
			}
		})
	}
}
