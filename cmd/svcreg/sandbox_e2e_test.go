package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/svcreg/svcreg/internal/testprog"
	"github.com/svcreg/svcreg/internal/testserver"
)

// The renderer in the sandbox of examples/systemd/svcreg-template.service:
// every file system read-only but the destination's directory
// (ReadWritePaths=), the state directory (StateDirectory=) and a /tmp of
// its own (PrivateTmp=). The shipped nginx example renders, checks with
// the shipped script, installs with its backup and reloads a real nginx
// there, twice. A renderer or check that came to write anywhere else (a
// cache, a file beside the template) fails here, not at the operator's.
func TestTemplateRunsInTheExampleUnitsSandbox(t *testing.T) {
	t.Parallel()
	const user = "e2e-sandbox"
	srv, c, _ := registryEnv(t, testserver.Options{}, user)
	n := newNginx(t)
	// nginx.conf includes the destination from a directory of its own,
	// as Debian's does /etc/nginx/conf.d/*.conf; logs and pid stay
	// read-only, as /var/log/nginx and /run are in the unit.
	confd := filepath.Join(n.prefix, "conf.d")
	if err := os.Mkdir(confd, 0o755); err != nil {
		t.Fatal(err)
	}
	upstreams := filepath.Join(confd, "svcreg-upstreams.conf")
	writeFile(t, n.conf, strings.Replace(readString(n.conf), n.upstreams, upstreams, 1))
	n.upstreams = upstreams
	config := shippedConfig(t, "examples/nginx/render.toml",
		`listen = "127.0.0.1:8421"`, `listen = ""`,
		`source = "upstreams.tmpl"`, fmt.Sprintf("source = %q", repoFile("examples/nginx/upstreams.tmpl")),
		"/etc/nginx/conf.d/svcreg-upstreams.conf", upstreams,
		"/usr/local/share/svcreg/check-upstreams.sh", repoFile("examples/nginx/check-upstreams.sh"),
		`reload = "nginx -s reload"`, fmt.Sprintf("reload = %q", n.reloadCommand()))
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	state, tmp := t.TempDir(), t.TempDir()
	once := func(extra ...string) {
		t.Helper()
		args := append([]string{self, "template", "--once", "--config", config,
			"--url", srv.APIURL, "--username", user, "--api-key", "dev"}, extra...)
		cmd := sandboxed(t, []string{confd, state, tmp}, args...)
		cmd.Env = append(cmd.Env, execEnv+"=1", "STATE_DIRECTORY="+state, "TMPDIR="+tmp)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("svcreg template --once %v in the sandbox: %v: %s", extra, err, out)
		}
	}

	ip, port := backend(t, "backend-sandbox-a")
	createService(t, c, "web-a", 120, []string{"www"}, map[string]string{"ip": ip, "port": port})
	once("--no-reload")
	n.start(t)
	eventuallyTrue(t, "nginx to serve the rendered upstream", func() bool { return get(n.url()) == "backend-sandbox-a" })

	ip, port = backend(t, "backend-sandbox-b")
	createService(t, c, "web-b", 120, []string{"www"}, map[string]string{"ip": ip, "port": port})
	if err := c.DeleteService(context.Background(), "web-a"); err != nil {
		t.Fatal(err)
	}
	once()
	eventuallyTrue(t, "nginx to serve the upstream rendered again", func() bool { return get(n.url()) == "backend-sandbox-b" })
	if _, err := os.Stat(upstreams + ".bak"); err != nil {
		t.Errorf("the example's backup: %v", err)
	}
}

// sandboxed is a command that runs args in a mount namespace of its own
// where every file system is read-only but the directories rw, and where
// the directories nginx makes its temporary ones in by default
// (/var/lib/nginx on Debian) are empty and read-only: nginx, run as root,
// makes them and gives them to its user, and finds them so already once
// any nginx has; there, any such write fails. Root only.
func sandboxed(t *testing.T, rw []string, args ...string) *exec.Cmd {
	t.Helper()
	testprog.NeedRoot(t, "to run a command in a read-only mount namespace of its own")
	unshare := testprog.Find(t, "unshare", "to make the file systems read-only for a command (apt-get install util-linux)")
	hide := testprog.NginxTempParents(t, program(t, "nginx"))
	const script = `set -e
mount --make-rprivate /
for d in $SANDBOX_RW; do mount --bind "$d" "$d"; done
for d in $SANDBOX_EMPTY; do mount -t tmpfs -o ro tmpfs "$d"; done
mount -o remount,bind,ro /
exec "$@"`
	cmd := exec.Command(unshare, append([]string{"-m", "sh", "-c", script, "sh"}, args...)...)
	cmd.Env = append(os.Environ(), "SANDBOX_RW="+strings.Join(rw, " "), "SANDBOX_EMPTY="+strings.Join(hide, " "))
	return cmd
}
