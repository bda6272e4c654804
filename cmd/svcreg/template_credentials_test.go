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

// --once and --print against a registry that takes the connection and
// never answers say at --once-timeout what they were still waiting for:
// the login at the identity endpoint, or the list, and where. Nothing had
// failed yet (a login has 30 s), so there is no last error to tell.
func TestTemplateOnceSaysWhatHadNoAnswer(t *testing.T) {
	t.Parallel()
	silent := "http://" + silentListener(t)
	dir := t.TempDir()
	config := filepath.Join(dir, "render.toml")
	os.WriteFile(config, []byte("[[template]]\ncontents = \"{{ range services }}{{ .ID }}\\n{{ end }}\"\ndestination = \"ids.txt\"\n"), 0o644)
	for _, tc := range []struct {
		name    string
		account []string
		waiting string
	}{
		{"login", []string{"--username", "silent-once", "--api-key", "k"},
			`registry: authenticate silent-once: Post "` + silent + `/v2.0/tokens": given up at --once-timeout`},
		{"list", []string{"--token", "t", "--tenant", "1"},
			`registry: Get "` + silent + `/v1.0/1/services?limit=1000": given up at --once-timeout`},
	} {
		for _, mode := range []string{"--once", "--print"} {
			t.Run(tc.name+mode, func(t *testing.T) {
				t.Parallel()
				var stdout, stderr bytes.Buffer
				args := append([]string{"template", mode, "--once-timeout", "2s", "--config", config, "--url", silent + "/v1.0"}, tc.account...)
				if code := Main(context.Background(), args, nil, &stdout, &stderr); code != exitSync {
					t.Fatalf("exit %d, want %d: %s", code, exitSync, stderr.String())
				}
				want := "svcreg template: no full sync with the registry after 2s (still waiting for: list services: " + tc.waiting + ")\n"
				if got := stderr.String(); !strings.HasSuffix(got, want) {
					t.Errorf("stderr %q; want it to end %q", got, want)
				}
			})
		}
	}
}
