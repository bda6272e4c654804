package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/svcreg/svcreg/internal/testserver"
)

// A first deploy: nginx is installed but not running, and its config
// includes the file svcreg renders, which does not exist yet. Both ways
// leave a checked file that nginx then starts with: --once alone (the
// reload fails, exit 8, and the new file stays, due a reload: the next
// --once run, with nothing changed, reloads it), and --once --no-reload
// (exit 0, nothing reloaded, and nothing due).
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
		again   int // reloads after a second --once
	}{
		{"reload fails", nil, exitReload, 1, "kept the new, checked files", 2},
		{"--no-reload", []string{"--no-reload"}, 0, 0, "", 0},
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
			stderr.Reset()
			if code := Main(context.Background(), append([]string{"template", "--once", "--config", config}, conn...), nil, &stdout, &stderr); code != 0 {
				t.Fatalf("the next --once: exit %d: %s", code, stderr.String())
			}
			if got := lines(reloads); got != tc.again {
				t.Errorf("%d reloads after the next --once, want %d: %s", got, tc.again, stderr.String())
			}
		})
	}
}

// A first deploy on an empty registry with the shipped nginx example,
// whose min_instances = 1 protects the file: there is no file yet, so
// there is nothing to keep, and the template's "no service yet" branch is
// installed (with a warning), nginx starts with it, and the first service
// that registers is rendered and reloaded.
func TestTemplateFirstDeployEmptyRegistry(t *testing.T) {
	t.Parallel()
	const user = "e2e-first-deploy-empty"
	srv, c, _ := registryEnv(t, testserver.Options{}, user)
	conn := []string{"--url", srv.APIURL, "--username", user, "--api-key", "dev"}
	n := newNginx(t)
	config := shippedConfig(t, "examples/nginx/render.toml",
		`listen = "127.0.0.1:8421"`, `listen = ""`,
		`source = "upstreams.tmpl"`, fmt.Sprintf("source = %q", repoFile("examples/nginx/upstreams.tmpl")),
		"/etc/nginx/conf.d/svcreg-upstreams.conf", n.upstreams,
		"/usr/local/share/svcreg/check-upstreams.sh", repoFile("examples/nginx/check-upstreams.sh"),
		`reload = "nginx -s reload"`, fmt.Sprintf("reload = %q", n.reloadCommand()))
	once := func(extra ...string) (int, string) {
		var stdout, stderr bytes.Buffer
		args := append(append([]string{"template", "--once", "--config", config}, extra...), conn...)
		return Main(context.Background(), args, nil, &stdout, &stderr), stderr.String()
	}
	code, stderr := once("--no-reload")
	if code != 0 {
		t.Fatalf("first deploy on an empty registry: exit %d, want 0: %s", code, stderr)
	}
	if !strings.Contains(stderr, "there is no old file to keep") || strings.Contains(stderr, "keeping the old file") {
		t.Errorf("stderr %q; want a warning that there was no old file to keep, and no claim that one is kept", stderr)
	}
	if got := readString(n.upstreams); !strings.Contains(got, "server 127.0.0.1:9 down;") {
		t.Fatalf("upstreams after the first deploy: %q; want the placeholder server", got)
	}
	n.start(t)

	ip, port := backend(t, "backend-first-empty")
	createService(t, c, "web-a", 120, []string{"www"}, map[string]string{"ip": ip, "port": port})
	if code, stderr := once(); code != 0 {
		t.Fatalf("second deploy: exit %d: %s", code, stderr)
	}
	eventuallyTrue(t, "nginx to serve the rendered upstream", func() bool { return get(n.url()) == "backend-first-empty" })
}
