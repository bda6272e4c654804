package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/svcreg/svcreg/internal/testserver"
)

// A first deploy: nginx is installed but not running, and its config
// includes the file svcreg renders, which does not exist yet. Both ways
// leave a checked file that nginx then starts with: --once alone (the
// reload fails, exit 8, and the new file stays), and --once --no-reload
// (exit 0, nothing reloaded).
func TestTemplateFirstDeploy(t *testing.T) {
	t.Parallel()
	srv, c, _ := registryEnv(t, testserver.Options{}, "e2e-first-deploy")
	ip, port := backend(t, "backend-first")
	createService(t, c, "web-a", 120, []string{"www"}, map[string]string{"ip": ip, "port": port})
	conn := []string{"--url", srv.APIURL, "--username", "e2e-first-deploy", "--api-key", "dev"}

	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		reloads int
		stderr  string
	}{
		{"reload fails", nil, exitReload, 1, "kept the new, checked files"},
		{"--no-reload", []string{"--no-reload"}, 0, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNginx(t)
			config, reloads := writeRenderConfig(t, n, n.reloadCommand(), "")
			var stdout, stderr bytes.Buffer
			args := append(append([]string{"template", "--once", "--config", config}, tc.args...), conn...)
			if code := Main(context.Background(), args, nil, &stdout, &stderr); code != tc.code {
				t.Fatalf("exit %d, want %d: %s", code, tc.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr %q, want it to say %q", stderr.String(), tc.stderr)
			}
			if got := lines(reloads); got != tc.reloads {
				t.Errorf("%d reloads, want %d", got, tc.reloads)
			}
			if got := readString(n.upstreams); !strings.Contains(got, "web-a") {
				t.Fatalf("upstreams after the first deploy: %q", got)
			}
			n.start(t)
			eventuallyTrue(t, "nginx to serve the rendered upstream", func() bool { return get(n.url()) == "backend-first" })
		})
	}
}
