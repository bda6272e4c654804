package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/freeport"
	"github.com/svcreg/svcreg/internal/haproxytest"
	"github.com/svcreg/svcreg/internal/testprog"
	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/server/store"
)

// The renderer's end-to-end tests: the real server (in-process), `svcreg
// template` as a child process, and real nginx and HAProxy on loopback
// ports with their own prefix and pid files.

// program finds an installed program (nginx, haproxy). Without it the
// test is skipped, saying which program it needs and how to get it; in CI
// (CI set, as .ci/run does) it fails instead, so that CI never skips the
// end-to-end tests silently.
func program(t *testing.T, name string) string {
	t.Helper()
	return testprog.Find(t, name, "the renderer's end-to-end tests run against the real nginx and HAProxy. "+
		"Install them with `make deps` (Debian/Ubuntu: apt-get install nginx haproxy; macOS: brew install nginx haproxy)")
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func freePort(t *testing.T) int { return freeport.Port(t) }

// backend is an HTTP server that answers its name.
func backend(t *testing.T, name string) (ip, port string) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
	t.Cleanup(srv.Close)
	host, p, _ := net.SplitHostPort(srv.Listener.Addr().String())
	return host, p
}

// eventuallyTrue polls cond; the bound only stops a broken test.
func eventuallyTrue(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readString(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// get fetches url and returns the body, whatever the status ("" on error).
func get(url string) string {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// lines counts the lines of a file (a reload log).
func lines(path string) int { return strings.Count(readString(path), "\n") }

// daemon is `svcreg template` running as a child process.
type daemon struct {
	cmd      *exec.Cmd
	stopOnce sync.Once
	logs     testserver.Buffer
}

func (d *daemon) output() string { return d.logs.String() }

func startDaemon(t testing.TB, env []string, args ...string) *daemon {
	t.Helper()
	d := &daemon{}
	d.cmd = exec.Command(os.Args[0], append([]string{"template"}, args...)...)
	d.cmd.Env = append(append(os.Environ(), execEnv+"=1"), env...)
	d.cmd.Stdout, d.cmd.Stderr = &d.logs, &d.logs
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			t.Logf("svcreg template output:\n%s", d.output())
		}
	})
	return d
}

// stop interrupts the daemon and waits for it to exit, killing it after
// 10 s. A second stop finds it gone.
func (d *daemon) stop() {
	d.stopOnce.Do(func() {
		d.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { d.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			d.cmd.Process.Kill()
			<-done
		}
	})
}

// registryEnv starts a registry and returns a client and the environment
// that points svcreg at it as user.
func registryEnv(t testing.TB, opts testserver.Options, user string) (*testserver.Server, *registry.Client, []string) {
	t.Helper()
	srv := testserver.Start(t, opts)
	c, err := registry.New(registry.Config{URL: srv.APIURL, AuthURL: srv.AuthURL, Username: user, APIKey: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	return srv, c, []string{"SVCREG_URL=" + srv.APIURL, "SVCREG_USERNAME=" + user, "SVCREG_API_KEY=dev"}
}

// clearRegistryEnv empties the SVCREG_* connection variables for the rest
// of the test, so that only what the test sets says how svcreg reaches the
// registry.
func clearRegistryEnv(t *testing.T) {
	t.Helper()
	for _, name := range []string{"SVCREG_URL", "SVCREG_AUTH_URL", "SVCREG_TOKEN", "SVCREG_TENANT", "SVCREG_USERNAME", "SVCREG_API_KEY", "SVCREG_PASSWORD", "SVCREG_REGION", "SVCREG_CA_CERT"} {
		t.Setenv(name, "")
	}
}

func createService(t testing.TB, c *registry.Client, id string, timeout int, tags []string, md map[string]string) {
	t.Helper()
	if _, err := c.CreateService(context.Background(), registry.Service{ID: id, Tags: tags, Metadata: md, HeartbeatTimeout: timeout}); err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
}

// nginx runs nginx on a loopback port with its own prefix, proxying to the
// upstream "www" that svcreg renders into upstreams.conf.
type nginx struct {
	bin, prefix, conf, upstreams string
	port                         int
}

func startNginx(t *testing.T) *nginx {
	t.Helper()
	n := newNginx(t)
	// Until svcreg renders it, the upstream points at a closed port.
	os.WriteFile(n.upstreams, []byte("upstream www { server 127.0.0.1:1; }\n"), 0o644)
	n.start(t)
	return n
}

// newNginx writes an nginx config whose http block includes upstreams.conf
// (not written yet), and starts nothing.
func newNginx(t *testing.T) *nginx {
	t.Helper()
	n := &nginx{bin: program(t, "nginx"), prefix: t.TempDir(), port: freePort(t)}
	n.conf = filepath.Join(n.prefix, "nginx.conf")
	n.upstreams = filepath.Join(n.prefix, "upstreams.conf")
	os.MkdirAll(filepath.Join(n.prefix, "logs"), 0o755)
	conf := fmt.Sprintf(`pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log;
worker_processes 1;
events { worker_connections 128; }
http {
    access_log off;
%[4]s
    include %[2]s;
    server {
        listen 127.0.0.1:%[3]d;
        location / { proxy_pass http://www; proxy_next_upstream error timeout; }
    }
}
`, n.prefix, n.upstreams, n.port, testprog.NginxTempPaths(t, n.bin, n.prefix))
	if err := os.WriteFile(n.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return n
}

// start starts nginx and stops it when the test ends.
func (n *nginx) start(t *testing.T) {
	t.Helper()
	if out, err := exec.Command(n.bin, n.args()...).CombinedOutput(); err != nil {
		t.Fatalf("start nginx: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command(n.bin, append(n.args(), "-s", "quit")...).Run() })
}

func (n *nginx) args() []string { return []string{"-p", n.prefix, "-c", n.conf} }

func (n *nginx) reloadCommand() string {
	return n.bin + " -p " + n.prefix + " -c " + n.conf + " -s reload"
}

func (n *nginx) url() string { return "http://127.0.0.1:" + strconv.Itoa(n.port) + "/" }

// repoFile is a file of the repository, from cmd/svcreg.
func repoFile(name string) string { p, _ := filepath.Abs(filepath.Join("..", "..", name)); return p }

// writeRenderConfig writes a renderer config for the nginx example
// template, with a reload that logs each run to reloads.
func writeRenderConfig(t *testing.T, n *nginx, reload, extra string) (config, reloads string) {
	t.Helper()
	return writeRenderConfigWait(t, n, "100ms", "1s", reload, extra)
}

// writeRenderConfigWait is writeRenderConfig with a [wait] of min:max.
func writeRenderConfigWait(t *testing.T, n *nginx, min, max, reload, extra string) (config, reloads string) {
	t.Helper()
	dir := t.TempDir()
	reloads = filepath.Join(dir, "reloads")
	config = filepath.Join(dir, "render.toml")
	toml := fmt.Sprintf(`
[wait]
min = %q
max = %q

[[template]]
source = %q
destination = %q
check = "%s {{.Staged}} www"
reload = "echo reload >> %s && %s"
reload_timeout = "20s"
min_instances = 1
allow_loopback = true # the test's backends listen on loopback
%s
`, min, max, repoFile("examples/nginx/upstreams.tmpl"), n.upstreams, repoFile("examples/nginx/check-upstreams.sh"), reloads, reload, extra)
	if err := os.WriteFile(config, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	return config, reloads
}

func TestTemplateNginxEndToEnd(t *testing.T) {
	t.Parallel()
	n := startNginx(t)
	_, c, env := registryEnv(t, testserver.Options{}, "e2e-nginx")
	ipA, portA := backend(t, "backend-a")
	createService(t, c, "web-a", 120, []string{"www"}, map[string]string{"ip": ipA, "port": portA})
	failFlag := filepath.Join(t.TempDir(), "fail-reload")
	config, reloads := writeRenderConfig(t, n, n.reloadCommand()+" && test ! -e "+failFlag, "")
	startDaemon(t, env, "--config", config)

	// The first sync: the upstream gets backend A and nginx reaches it.
	eventuallyTrue(t, "backend A behind nginx", func() bool { return get(n.url()) == "backend-a" })
	if !strings.Contains(readString(n.upstreams), "server "+ipA+":"+portA+";  # web-a") {
		t.Fatalf("upstreams.conf:\n%s", readString(n.upstreams))
	}

	// A service joins: it appears in the file, and nginx reaches it.
	ipB, portB := backend(t, "backend-b")
	createService(t, c, "web-b", 3, []string{"www"}, map[string]string{"ip": ipB, "port": portB})
	eventuallyTrue(t, "web-b in the upstream", func() bool { return strings.Contains(readString(n.upstreams), "# web-b") })
	eventuallyTrue(t, "nginx to reach backend B", func() bool {
		for i := 0; i < 4; i++ {
			if get(n.url()) == "backend-b" {
				return true
			}
		}
		return false
	})
	// nginx reaching B means the reload command has logged its run.
	withB := lines(reloads)

	// web-b gets no heartbeats: it times out and leaves the upstream, and
	// nginx is reloaded (the install comes before the reload: wait for
	// both, so that the count of reloads below starts after it).
	eventuallyTrue(t, "web-b to time out of the upstream", func() bool { return !strings.Contains(readString(n.upstreams), "web-b") })
	eventuallyTrue(t, "the reload without web-b", func() bool { return lines(reloads) == withB+1 })

	// A service whose metadata makes an invalid config: nginx -t refuses
	// the staged file, the old file stays, nginx keeps serving.
	before := readString(n.upstreams)
	reloadsBefore := lines(reloads)
	createService(t, c, "web-bad", 120, []string{"www"}, map[string]string{"ip": "127.0.0.1", "port": "notaport"})
	time.Sleep(1500 * time.Millisecond) // past the debounce and the check
	if got := readString(n.upstreams); got != before {
		t.Fatalf("a config nginx refused was installed:\n%s", got)
	}
	if lines(reloads) != reloadsBefore {
		t.Fatal("reloaded after a failed check")
	}
	if got := get(n.url()); got != "backend-a" {
		t.Fatalf("nginx stopped serving after a refused config: %q", got)
	}
	if err := c.DeleteService(context.Background(), "web-bad"); err != nil {
		t.Fatal(err)
	}

	// A failing reload: the previous file is restored (and reloaded).
	os.WriteFile(failFlag, nil, 0o644)
	ipC, portC := backend(t, "backend-c")
	reloadsBefore = lines(reloads)
	createService(t, c, "web-c", 120, []string{"www"}, map[string]string{"ip": ipC, "port": portC})
	eventuallyTrue(t, "the failed reload and the one after the restore", func() bool { return lines(reloads) >= reloadsBefore+2 })
	if got := readString(n.upstreams); strings.Contains(got, "web-c") {
		t.Fatalf("after a failed reload the new file is still installed:\n%s", got)
	}
	os.Remove(failFlag)
	// The next change installs again, web-c included.
	ipD, portD := backend(t, "backend-d")
	createService(t, c, "web-d", 120, []string{"www"}, map[string]string{"ip": ipD, "port": portD})
	eventuallyTrue(t, "web-c and web-d installed", func() bool {
		got := readString(n.upstreams)
		return strings.Contains(got, "web-c") && strings.Contains(got, "web-d")
	})
}

func TestTemplateSurvivesRegistryOutage(t *testing.T) {
	t.Parallel()
	n := startNginx(t)
	srv, c, env := registryEnv(t, testserver.Options{}, "e2e-outage")
	ipA, portA := backend(t, "backend-a")
	createService(t, c, "web-a", 120, []string{"www"}, map[string]string{"ip": ipA, "port": portA})
	config, _ := writeRenderConfig(t, n, n.reloadCommand(), "")
	// outage (default 10s) before the rest: a top-level key.
	b, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(config, append([]byte("outage = \"2s\"\n"), b...), 0o644); err != nil {
		t.Fatal(err)
	}
	hp := freePort(t)
	d := startDaemon(t, env, "--config", config, "--listen", "127.0.0.1:"+strconv.Itoa(hp))
	health := "http://127.0.0.1:" + strconv.Itoa(hp) + "/healthz"
	eventuallyTrue(t, "the first render", func() bool { return get(n.url()) == "backend-a" })

	srv.Stop()
	// Past the watcher's outage threshold (outage, 2s here): it gives up
	// on the feed and lists again, which fails and says so.
	eventuallyTrue(t, "the watcher to give up on the feed and list again", func() bool {
		return strings.Contains(d.output(), "list the registry")
	})
	if got := get(health + "?max_stale=1s"); !strings.Contains(got, `"status": "stale"`) || !strings.Contains(got, `"last_error"`) {
		t.Fatalf("healthz during the outage does not say it is stale: %s", got)
	}
	if d.cmd.ProcessState != nil {
		t.Fatal("svcreg template exited during the outage")
	}
	if got := get(n.url()); got != "backend-a" {
		t.Fatalf("nginx lost its upstream during the outage: %q", got)
	}

	srv.Restart()
	ipB, portB := backend(t, "backend-b")
	createService(t, c, "web-b", 120, []string{"www"}, map[string]string{"ip": ipB, "port": portB})
	eventuallyTrue(t, "convergence after the outage", func() bool { return strings.Contains(readString(n.upstreams), "web-b") })
	eventuallyTrue(t, "healthz ok again", func() bool { return strings.Contains(get(health+"?max_stale=5s"), `"status": "ok"`) })
}

func TestTemplateBurstMakesFewReloads(t *testing.T) {
	t.Parallel()
	n := startNginx(t)
	_, c, env := registryEnv(t, testserver.Options{Limits: storeLimits(600)}, "e2e-burst")
	ip, port := backend(t, "backend")
	createService(t, c, "web-0", 120, []string{"www"}, map[string]string{"ip": ip, "port": port})
	// A burst ends when the feed is quiet for [wait] min: 5s is far longer
	// than any gap between two creates below, even on a loaded machine
	// running the package's other tests alongside (2s was not), and max is
	// longer than the whole burst, so what is counted is the coalescing,
	// not how fast this machine creates services.
	config, reloads := writeRenderConfigWait(t, n, "5s", "2m", n.reloadCommand(), "")
	startDaemon(t, env, "--config", config)
	eventuallyTrue(t, "the first render", func() bool { return lines(reloads) == 1 })

	// 500 events as fast as the registry takes them.
	var wg sync.WaitGroup
	for w := 0; w < 10; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				createService(t, c, fmt.Sprintf("web-%d-%d", w, i), 120, []string{"www"}, map[string]string{"ip": ip, "port": port})
			}
		}(w)
	}
	wg.Wait()
	eventuallyTrue(t, "all 501 servers rendered", func() bool { return strings.Count(readString(n.upstreams), "server ") == 501 })
	time.Sleep(5500 * time.Millisecond) // past the debounce: nothing more is due
	if got := lines(reloads) - 1; got < 1 || got > 2 {
		t.Fatalf("%d reloads for a burst of 500 events; want 1 or 2", got)
	}
}

func storeLimits(services int) store.Limits {
	return store.Limits{Services: services, ConfigValues: store.DefaultLimits.ConfigValues}
}

// shippedConfig writes a copy of one of examples/'s renderer configs with
// the replacements (old, new pairs) made: paths, commands, the registry.
func shippedConfig(t *testing.T, example string, oldnew ...string) string {
	t.Helper()
	return shippedFile(t, example, filepath.Join(t.TempDir(), "render.toml"), oldnew...)
}

// shippedFile writes the example file to path with each oldnew pair's
// old text replaced by the new, failing when the example lacks one, and
// returns path.
func shippedFile(t *testing.T, example, path string, oldnew ...string) string {
	t.Helper()
	b, err := os.ReadFile(repoFile(example))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for i := 0; i < len(oldnew); i += 2 {
		if !strings.Contains(text, oldnew[i]) {
			t.Fatalf("%s no longer has %q; update the test", example, oldnew[i])
		}
		text = strings.ReplaceAll(text, oldnew[i], oldnew[i+1])
	}
	if strings.HasSuffix(example, ".toml") {
		// The tests' backends listen on loopback, which the examples'
		// templates refuse.
		text = strings.ReplaceAll(text, "[[template]]\n", "[[template]]\nallow_loopback = true\n")
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// haproxy runs HAProxy in master-worker mode, as examples/haproxy
// describes, on a loopback port with its own pid file and a stats socket
// at level admin (the example's runtime socket); svcreg renders its
// backends into a second configuration file.
type haproxy struct {
	bin, dir, main, backends, pid, socket string
	port                                  int
}

func startHAProxy(t *testing.T) *haproxy {
	t.Helper()
	h := newHAProxy(t)
	// Until svcreg renders it, the backend points at a closed port.
	os.WriteFile(h.backends, []byte("backend svc_api\n    server placeholder 127.0.0.1:1\n"), 0o644)
	if out, err := exec.Command(h.bin, "-W", "-D", "-f", h.main, "-f", h.backends, "-p", h.pid).CombinedOutput(); err != nil {
		t.Fatalf("start haproxy: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("sh", "-c", "kill $(cat "+h.pid+")").Run() })
	return h
}

// newHAProxy writes HAProxy's main config, examples/haproxy/haproxy.cfg
// as shipped (master-worker, a frontend whose default backend is svc_api,
// which backends.cfg is to hold, and the operator's own stats section)
// with its paths and ports changed, and starts nothing.
func newHAProxy(t *testing.T) *haproxy {
	t.Helper()
	h := &haproxy{bin: program(t, "haproxy"), dir: t.TempDir(), port: freePort(t)}
	h.backends = filepath.Join(h.dir, "backends.cfg")
	h.pid = filepath.Join(h.dir, "haproxy.pid")
	h.socket = filepath.Join(h.dir, "admin.sock")
	h.main = shippedFile(t, "examples/haproxy/haproxy.cfg", filepath.Join(h.dir, "haproxy.cfg"),
		"global\n", "global\n"+haproxytest.FastStart,
		"/run/haproxy.pid", h.pid,
		"/run/haproxy/admin.sock", h.socket,
		"bind :80", fmt.Sprintf("bind 127.0.0.1:%d", h.port),
		"bind 127.0.0.1:8404", fmt.Sprintf("bind 127.0.0.1:%d", freePort(t)),
	)
	return h
}

func TestTemplateHAProxyEndToEnd(t *testing.T) {
	t.Parallel()
	h := startHAProxy(t)
	_, c, env := registryEnv(t, testserver.Options{}, "e2e-haproxy")
	ip, port := backend(t, "api-1")
	createService(t, c, "api-1", 120, []string{"http"}, map[string]string{"ip": ip, "port": port, "backend": "api"})
	reloads := filepath.Join(h.dir, "reloads")
	config := h.shippedConfig(t, env, reloads)
	d := startDaemon(t, env, "--config", config)
	url := "http://127.0.0.1:" + strconv.Itoa(h.port) + "/"
	eventuallyTrue(t, "api-1 behind haproxy", func() bool { return get(url) == "api-1" })

	ip2, port2 := backend(t, "api-2")
	createService(t, c, "api-2", 120, []string{"http"}, map[string]string{"ip": ip2, "port": port2, "backend": "api"})
	eventuallyTrue(t, "haproxy to reach api-2", func() bool {
		for i := 0; i < 4; i++ {
			if get(url) == "api-2" {
				return true
			}
		}
		return false
	})

	// Through the runtime API it went live before its file was checked
	// and installed.
	eventuallyTrue(t, "api-2 installed", func() bool { return strings.Contains(readString(h.backends), "server api-2 ") })

	// A backend name that is not a name: the service is left out, so
	// nothing changes.
	before, reloadsBefore := readString(h.backends), lines(reloads)
	createService(t, c, "api-bad", 120, []string{"http"}, map[string]string{"ip": ip, "port": port, "backend": "no spaces allowed"})
	time.Sleep(1500 * time.Millisecond)
	if got := readString(h.backends); got != before || lines(reloads) != reloadsBefore {
		t.Fatalf("a config HAProxy refused was installed or reloaded:\n%s", got)
	}
	if got := get(url); got != "api-1" && got != "api-2" {
		t.Fatalf("haproxy stopped serving after a refused config: %q", got)
	}
	if err := c.DeleteService(context.Background(), "api-2"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteService(context.Background(), "api-bad"); err != nil {
		t.Fatal(err)
	}
	eventuallyTrue(t, "api-2 to leave the backend", func() bool { return !strings.Contains(readString(h.backends), "api-2") })

	// A config HAProxy refuses: haproxy.cfg now names a backend the
	// template does not list. The old file stays, and HAProxy's reason
	// reaches the log. The next change renders it (svc_api's health check
	// path: a change that needs a reload, so checked first).
	// First HAProxy runs the file without api-2 (its drain through the
	// runtime API done): a reload still to come would read the changed
	// haproxy.cfg, fail, and leave the old worker.
	eventuallyTrue(t, "HAProxy to serve api-1 alone", func() bool {
		for range 4 {
			if get(url) != "api-1" {
				return false
			}
		}
		return true
	})
	before = readString(h.backends)
	nameMissingBackend(t, h.main)
	if err := c.SetConfig(context.Background(), "/haproxy/api/health", "/ping"); err != nil {
		t.Fatal(err)
	}
	eventuallyTrue(t, "HAProxy's reason in the log", func() bool {
		return strings.Contains(d.output(), "unable to find required default_backend: 'svc_missing'")
	})
	if got := readString(h.backends); got != before {
		t.Fatalf("a config HAProxy refused was installed:\n%s", got)
	}
	if got := get(url); got != "api-1" {
		t.Fatalf("haproxy stopped serving after a refused config: %q", got)
	}
}

// nameMissingBackend adds to HAProxy's main config a frontend whose
// default backend, svc_missing, no render writes: a check of it fails.
func nameMissingBackend(t *testing.T, main string) {
	t.Helper()
	f, err := os.OpenFile(main, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("\nfrontend missing\n    mode http\n    default_backend svc_missing\n"); err != nil {
		t.Fatal(err)
	}
}

// shippedConfig is examples/haproxy/render.toml for this HAProxy and
// registry, with each reload logged to reloads.
func (h *haproxy) shippedConfig(t *testing.T, env []string, reloads string) string {
	return shippedConfig(t, "examples/haproxy/render.toml",
		`source = "backends.tmpl"`, fmt.Sprintf("source = %q", repoFile("examples/haproxy/backends.tmpl")),
		`listen = "127.0.0.1:8422"`, "",
		`url = "http://127.0.0.1:8420/v1.0"`, fmt.Sprintf("url = %q", envValue(env, "SVCREG_URL")),
		`username = "dev"`, fmt.Sprintf("username = %q", envValue(env, "SVCREG_USERNAME")),
		`check = "haproxy -c`, `check = "`+h.bin+` -c`,
		"/etc/haproxy/haproxy.cfg", h.main,
		"/etc/haproxy/svcreg-backends.cfg", h.backends,
		`reload = "kill`, `reload = "echo reload >> `+reloads+` && kill`,
		"/run/haproxy.pid", h.pid,
		"/run/haproxy/admin.sock", h.socket,
	)
}

// envValue is NAME's value in a list of NAME=value.
func envValue(env []string, name string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}
