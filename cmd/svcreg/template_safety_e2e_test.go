package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/render"
)

// The shipped examples against registry data written to break out of the
// config token it lands in, with the real nginx and HAProxy: the installed
// configs hold none of it, the load balancer serves the well-formed
// backends, and /healthz names each service left out.

// hostilePayloads are metadata values (1..255 characters, as the registry
// takes them) aimed at nginx and HAProxy configs.
var hostilePayloads = []string{
	"9; } server { listen 127.0.0.1:18099; location / { alias /etc/; autoindex on; } } upstream x { server 127.0.0.1:9",
	"80\nfrontend evil\n    bind 127.0.0.1:18098\n    default_backend api",
	"80;", "80 }", "{", "80 # comment", "80\\", "80\\n", "'80'", "\"80\"",
	"80\x00", "80\r", "80\x1b[0m", "80\u2028",
	"${SVCREG_API_KEY}", "$host",
	"８０", "10.0.0.１", "ехample.com", "web\u200bhost",
	strings.Repeat("9", 255), strings.Repeat("a", 255),
	"+80", "-1", "0", "65536", " 80", "0x50",
	"127.0.0.1 backup", "127.0.0.1:80", "::1%lo", "a b",
}

// plainToken reports whether p is a well-formed identifier (the id rule).
func plainToken(p string) bool { return regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,64}$`).MatchString(p) }

// hostileServices registers, for each payload, a service with it as its
// ip, its port and its weight (the other fields well-formed), plus hostile
// tags beside the selecting one (the registry itself refuses control
// characters in tags). It returns the ids registered.
func hostileServices(t *testing.T, c *registry.Client, tag string, md map[string]string, field ...string) []string {
	t.Helper()
	var ids []string
	for i, p := range hostilePayloads {
		for _, f := range field {
			if f == "backend" && plainToken(p) {
				continue // a well-formed name, if an odd one
			}
			id := fmt.Sprintf("evil-%s-%d", f, i)
			m := map[string]string{}
			for k, v := range md {
				m[k] = v
			}
			m[f] = p
			createService(t, c, id, 120, []string{tag, "x;}" + tag, "#" + tag, tag + " {"}, m)
			ids = append(ids, id)
		}
	}
	return ids
}

// unsafeAddressServices registers services whose address one registry
// writer could use to stop every update of a group or to reach what is
// not a service: a host name that does not resolve (nginx fails the whole
// config), the unspecified address, broadcast, multicast and the cloud
// metadata address. It returns the ids registered.
func unsafeAddressServices(t *testing.T, c *registry.Client, tag string, md map[string]string) []string {
	t.Helper()
	var ids []string
	for i, addr := range []map[string]string{
		{"host": "nonexistent-host.invalid"}, {"ip": "0.0.0.0"}, {"ip": "::"}, {"ip": "255.255.255.255"},
		{"ip": "224.0.0.1"}, {"ip": "169.254.169.254"}, {"ip": "::ffff:169.254.169.254"},
	} {
		m := map[string]string{}
		for k, v := range md {
			m[k] = v
		}
		for k, v := range addr {
			m[k] = v
		}
		id := fmt.Sprintf("unsafe-address-%d", i)
		createService(t, c, id, 120, []string{tag}, m)
		ids = append(ids, id)
	}
	return ids
}

// healthz is the renderer's /healthz report.
func healthz(url string) render.Report {
	var rep render.Report
	json.Unmarshal([]byte(get(url)), &rep)
	return rep
}

func refusedIDs(rep render.Report) map[string]bool {
	out := map[string]bool{}
	for _, g := range rep.Groups {
		for _, r := range g.Refused {
			if r.Service != "" {
				out[r.Service] = true
			}
		}
	}
	return out
}

// configLines are the lines of a config that are neither blank nor
// comments, trimmed.
func configLines(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// The registry itself refuses ids that are not [a-zA-Z0-9_.-]{3,65}; the
// templates check them again (ident), as the unit tests show.
func TestRegistryRefusesHostileIDs(t *testing.T) {
	t.Parallel()
	_, c, _ := registryEnv(t, testserver.Options{}, "e2e-ids")
	for _, p := range hostilePayloads {
		if plainToken(p) {
			continue
		}
		id := "x" + p + "x"
		if _, err := c.CreateService(context.Background(), registry.Service{ID: id, HeartbeatTimeout: 30}); err == nil {
			t.Errorf("the registry took the id %q", id)
		}
	}
}

func TestNginxExampleRefusesHostileData(t *testing.T) {
	t.Parallel()
	n := startNginx(t)
	srv, c, env := registryEnv(t, testserver.Options{}, "e2e-hostile-nginx")
	ipA, portA := backend(t, "backend-a")
	ipB, portB := backend(t, "backend-b")
	createService(t, c, "web-a", 120, []string{"www"}, map[string]string{"ip": ipA, "port": portA})
	createService(t, c, "web-b", 120, []string{"www"}, map[string]string{"ip": ipB, "port": portB, "weight": "2"})
	evil := hostileServices(t, c, "www", map[string]string{"ip": ipA, "port": portA}, "ip", "port", "weight")
	evil = append(evil, unsafeAddressServices(t, c, "www", map[string]string{"port": portA})...)
	hp := freePort(t)
	config := shippedConfig(t, "examples/nginx/render.toml",
		`listen = "127.0.0.1:8421"`, fmt.Sprintf("listen = %q", "127.0.0.1:"+strconv.Itoa(hp)),
		`url = "http://127.0.0.1:8420/v1.0"`, fmt.Sprintf("url = %q", srv.APIURL),
		`username = "dev"`, `username = "e2e-hostile-nginx"`,
		`source = "upstreams.tmpl"`, fmt.Sprintf("source = %q", repoFile("examples/nginx/upstreams.tmpl")),
		"/etc/nginx/conf.d/svcreg-upstreams.conf", n.upstreams,
		"/usr/local/share/svcreg/check-upstreams.sh", repoFile("examples/nginx/check-upstreams.sh"),
		`reload = "nginx -s reload"`, fmt.Sprintf("reload = %q", n.reloadCommand()),
	)
	startDaemon(t, env, "--config", config)
	health := "http://127.0.0.1:" + strconv.Itoa(hp) + "/healthz"

	eventuallyTrue(t, "web-a and web-b rendered", func() bool { return strings.Contains(readString(n.upstreams), "# web-b") })
	want := []string{"upstream www {",
		"server " + ipA + ":" + portA + ";  # web-a",
		"server " + ipB + ":" + portB + " weight=2;  # web-b",
		"keepalive 16;", "}"}
	checkSafeInstall(t, n.upstreams, "examples/nginx/upstreams.tmpl", want, n.url(), []string{"backend-a", "backend-b"}, health, evil)

	// A hostile configuration value is reported and the default used: the
	// group goes on following the registry.
	before := refusedCount(health)
	if err := c.SetConfig(context.Background(), "/nginx/keepalive", "16; } server { listen 127.0.0.1:18099; }"); err != nil {
		t.Fatal(err)
	}
	eventuallyTrue(t, "the refused configuration value counted in /healthz", func() bool { return refusedCount(health) == before+1 })
	createService(t, c, "web-c", 120, []string{"www"}, map[string]string{"ip": ipB, "port": portB, "weight": "3"})
	eventuallyTrue(t, "web-c rendered", func() bool { return strings.Contains(readString(n.upstreams), "# web-c") })
	want = []string{"upstream www {",
		"server " + ipA + ":" + portA + ";  # web-a",
		"server " + ipB + ":" + portB + " weight=2;  # web-b",
		"server " + ipB + ":" + portB + " weight=3;  # web-c",
		"keepalive 16;", "}"}
	if got := configLines(readString(n.upstreams)); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("installed:\n%s\nwant exactly:\n%s", readString(n.upstreams), strings.Join(want, "\n"))
	}
	if get(n.url()) == "" {
		t.Fatal("nginx stopped serving")
	}
}

// refusedCount is how many refusals /healthz at url counts, in all groups.
func refusedCount(url string) int {
	n := 0
	for _, g := range healthz(url).Groups {
		n += g.RefusedCount
	}
	return n
}

func TestHAProxyExampleRefusesHostileData(t *testing.T) {
	t.Parallel()
	h := startHAProxy(t)
	_, c, env := registryEnv(t, testserver.Options{}, "e2e-hostile-haproxy")
	ip1, port1 := backend(t, "api-1")
	ip2, port2 := backend(t, "api-2")
	createService(t, c, "api-1", 120, []string{"http"}, map[string]string{"ip": ip1, "port": port1, "backend": "api"})
	createService(t, c, "api-2", 120, []string{"http"}, map[string]string{"ip": ip2, "port": port2, "backend": "api"})
	evil := hostileServices(t, c, "http", map[string]string{"ip": ip1, "port": port1, "backend": "api"}, "ip", "port", "weight", "backend")
	evil = append(evil, unsafeAddressServices(t, c, "http", map[string]string{"port": port1, "backend": "api"})...)
	// A backend haproxy.cfg does not name (here one of its own sections'
	// names): not written, so no registry writer adds sections or causes
	// a reload by naming one.
	createService(t, c, "stats-1", 120, []string{"http"}, map[string]string{"ip": ip2, "port": port2, "backend": "stats"})
	hp := freePort(t)
	config := h.shippedConfig(t, env, filepath.Join(h.dir, "reloads"))
	startDaemon(t, env, "--config", config, "--listen", "127.0.0.1:"+strconv.Itoa(hp))
	health := "http://127.0.0.1:" + strconv.Itoa(hp) + "/healthz"
	url := "http://127.0.0.1:" + strconv.Itoa(h.port) + "/"

	eventuallyTrue(t, "api-1 and api-2 rendered", func() bool { return strings.Contains(readString(h.backends), "server api-2") })
	want := []string{"backend svc_api", "balance roundrobin", "option httpchk GET /",
		"server api-1 " + ip1 + ":" + port1 + " check",
		"server api-2 " + ip2 + ":" + port2 + " check"}
	checkSafeInstall(t, h.backends, "examples/haproxy/backends.tmpl", want, url, []string{"api-1", "api-2"}, health, evil)

	// A refused health check path is reported and "/" used (a space would
	// fail every check of the backend, a '%' expand); and svc_api,
	// which haproxy.cfg's frontend names, stays written without servers once
	// its services are gone (else HAProxy's check fails every later render).
	before := refusedCount(health)
	if err := c.SetConfig(context.Background(), "/haproxy/api/health", "/%[env(HOME)] x"); err != nil {
		t.Fatal(err)
	}
	eventuallyTrue(t, "the refused configuration value counted in /healthz", func() bool { return refusedCount(health) == before+1 })
	for _, id := range []string{"api-1", "api-2"} {
		if err := c.DeleteService(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
	want = []string{"backend svc_api", "balance roundrobin", "option httpchk GET /"}
	eventuallyTrue(t, "svc_api without servers installed", func() bool {
		return strings.Join(configLines(readString(h.backends)), "\n") == strings.Join(want, "\n")
	})
	if g := healthz(health).Groups[h.backends]; g == nil || g.Render == nil || !g.Render.OK {
		t.Fatalf("the group's last render failed: %+v", g)
	}
}

// A service registered with the backend "API" before any "api" service
// (before the backend's first deploy, say) does not keep the api services
// out of svc_api, which haproxy.cfg's frontend uses: the HAProxy example
// groups by the exact name, and "API" is a backend haproxy.cfg does not
// name, not written.
func TestHAProxyExampleTellsCaseApart(t *testing.T) {
	t.Parallel()
	h := startHAProxy(t)
	_, c, env := registryEnv(t, testserver.Options{}, "e2e-haproxy-case")
	ip1, port1 := backend(t, "api-1")
	ip2, port2 := backend(t, "api-2")
	createService(t, c, "squat-1", 120, []string{"http"}, map[string]string{"ip": ip1, "port": port1, "backend": "API"})
	hp := freePort(t)
	startDaemon(t, env, "--config", h.shippedConfig(t, env, filepath.Join(h.dir, "reloads")), "--listen", "127.0.0.1:"+strconv.Itoa(hp))
	eventuallyTrue(t, "svc_api rendered", func() bool { return strings.Contains(readString(h.backends), "backend svc_api") })
	createService(t, c, "api-1", 120, []string{"http"}, map[string]string{"ip": ip1, "port": port1, "backend": "api"})
	createService(t, c, "api-2", 120, []string{"http"}, map[string]string{"ip": ip2, "port": port2, "backend": "api"})
	want := []string{"backend svc_api", "balance roundrobin", "option httpchk GET /",
		"server api-1 " + ip1 + ":" + port1 + " check",
		"server api-2 " + ip2 + ":" + port2 + " check"}
	eventuallyTrue(t, "api-1 and api-2 in svc_api, squat-1 nowhere", func() bool {
		return strings.Join(configLines(readString(h.backends)), "\n") == strings.Join(want, "\n")
	})
	checkSafeInstall(t, h.backends, "examples/haproxy/backends.tmpl", want,
		"http://127.0.0.1:"+strconv.Itoa(h.port)+"/", []string{"api-1", "api-2"}, "http://127.0.0.1:"+strconv.Itoa(hp)+"/healthz", nil)
}

// checkSafeInstall checks that the installed file's config lines are
// exactly want and its comment lines the template's own, that the load
// balancer at url spreads requests over exactly the backends named, and
// that /healthz reports each evil service refused.
func checkSafeInstall(t *testing.T, file, tmpl string, want []string, url string, backends []string, health string, evil []string) {
	t.Helper()
	if got := configLines(readString(file)); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("installed %s:\n%s\nwant exactly:\n%s", file, readString(file), strings.Join(want, "\n"))
	}
	for _, l := range strings.Split(readString(file), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "#") && !strings.Contains(readString(repoFile(tmpl)), l) {
			t.Errorf("installed %s has a comment line the template does not: %q", file, l)
		}
	}
	eventuallyTrue(t, "the load balancer to serve every backend", func() bool {
		seen := map[string]bool{}
		for i := 0; i < 4*len(backends); i++ {
			seen[get(url)] = true
		}
		for _, b := range backends {
			if !seen[b] {
				return false
			}
		}
		return len(seen) == len(backends)
	})
	// /healthz lists the first 100 of a group's refusals and counts them
	// all.
	rep := healthz(health)
	isEvil := map[string]bool{}
	for _, id := range evil {
		isEvil[id] = true
	}
	refused := refusedIDs(rep)
	for id := range refused {
		if !isEvil[id] {
			t.Errorf("/healthz reports %s as refused", id)
		}
	}
	count := 0
	for _, g := range rep.Groups {
		count += g.RefusedCount
	}
	if len(refused) != min(len(evil), 100) || count != len(evil) {
		t.Errorf("/healthz lists %d refused services and counts %d; want %d and %d", len(refused), count, min(len(evil), 100), len(evil))
	}
}

// A template stuck in a loop: its group reports render_timeout, the other
// group keeps rendering, and SIGTERM stops the renderer at once.
func TestTemplateStuckRenderIsBoundedAndStops(t *testing.T) {
	t.Parallel()
	_, c, env := registryEnv(t, testserver.Options{}, "e2e-stuck")
	dir := t.TempDir()
	config := filepath.Join(dir, "render.toml")
	os.WriteFile(config, []byte(`
[wait]
min = "0s"
[[template]]
contents = "{{range until 100000}}{{range until 100000}}{{end}}{{end}}"
destination = "until.conf"
render_timeout = "200ms"
[[template]]
contents = "{{range 100000}}{{range 100000}}{{end}}{{end}}"
destination = "spin.conf"
render_timeout = "200ms"
[[template]]
contents = "{{len services}}"
destination = "good.conf"
`), 0o644)
	hp := freePort(t)
	d := startDaemon(t, env, "--config", config, "--listen", "127.0.0.1:"+strconv.Itoa(hp))
	health := "http://127.0.0.1:" + strconv.Itoa(hp) + "/healthz"
	good := filepath.Join(dir, "good.conf")
	eventuallyTrue(t, "the good template rendered", func() bool { return readString(good) == "0" })
	createService(t, c, "web-1", 120, nil, nil)
	eventuallyTrue(t, "the good template rendered again", func() bool { return readString(good) == "1" })
	rep := healthz(health)
	for _, name := range []string{"until.conf", "spin.conf"} {
		g := rep.Groups[filepath.Join(dir, name)]
		if g == nil || g.Render == nil || g.Render.OK || !strings.Contains(g.Render.Error, "render_timeout") {
			t.Errorf("/healthz for %s: %+v; want a render_timeout failure", name, g)
		}
		if fileExists(filepath.Join(dir, name)) {
			t.Errorf("%s was written", name)
		}
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("svcreg template after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second): // stops a broken test only
		t.Fatal("svcreg template ignored SIGTERM")
	}
}

// --print renders every template for the registry's state to stdout and
// touches no file.
func TestTemplatePrint(t *testing.T) {
	t.Parallel()
	srv, c, _ := registryEnv(t, testserver.Options{}, "e2e-print")
	createService(t, c, "web-1", 120, []string{"www"}, map[string]string{"ip": "10.0.0.1", "port": "80"})
	createService(t, c, "web-2", 120, []string{"www"}, map[string]string{"ip": "10.0.0.2", "port": "80;"})
	dir := t.TempDir()
	dest := filepath.Join(dir, "upstreams.conf")
	reloads := filepath.Join(dir, "reloads")
	var stdout, stderr strings.Builder
	code := Main(context.Background(), []string{"template", "--print", "--template",
		repoFile("examples/nginx/upstreams.tmpl") + ":" + dest + ":touch " + reloads,
		"--url", srv.APIURL, "--username", "e2e-print", "--api-key", "dev"}, nil, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if want := "==> " + dest + " <==\n"; !strings.HasPrefix(stdout.String(), want) || !strings.Contains(stdout.String(), "server 10.0.0.1:80;  # web-1\n") {
		t.Fatalf("stdout:\n%s", stdout.String())
	}
	if !strings.Contains(stderr.String(), `service=web-2 field=port`) {
		t.Errorf("the refused service is not logged:\n%s", stderr.String())
	}
	if fileExists(dest) || fileExists(reloads) {
		t.Fatal("--print wrote a file or ran the reload")
	}
}

// The shipped nginx example renders a config nginx accepts before any
// service registered.
func TestNginxExampleValidWithoutServices(t *testing.T) {
	t.Parallel()
	srv, _, _ := registryEnv(t, testserver.Options{}, "e2e-empty")
	dir := t.TempDir()
	dest := filepath.Join(dir, "upstreams.conf")
	var stdout, stderr strings.Builder
	code := Main(context.Background(), []string{"template", "--once", "--template",
		repoFile("examples/nginx/upstreams.tmpl") + ":" + dest,
		"--url", srv.APIURL, "--username", "e2e-empty", "--api-key", "dev"}, nil, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	program(t, "nginx")
	out, err := exec.Command("sh", repoFile("examples/nginx/check-upstreams.sh"), dest, "www").CombinedOutput()
	if err != nil {
		t.Fatalf("nginx refuses the example's output without services: %v: %s\n%s", err, out, readString(dest))
	}
}

// The example's check script leaves nothing behind, whether nginx takes
// the file or not: before, it exec'd nginx, its EXIT trap never ran, and
// each check left a directory in $TMPDIR (a renderer checking every
// second, 86,400 a day).
func TestNginxCheckScriptCleansUp(t *testing.T) {
	t.Parallel()
	program(t, "nginx")
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.conf"), filepath.Join(dir, "bad.conf")
	writeFile(t, good, "upstream www { server 10.0.0.1:80; }\n")
	writeFile(t, bad, "upstream www { server 10.0.0.1:80 bogus_param; }\n")
	tmp := t.TempDir()
	for _, tc := range []struct {
		file string
		ok   bool
	}{{good, true}, {bad, false}} {
		cmd := exec.Command("sh", repoFile("examples/nginx/check-upstreams.sh"), tc.file, "www")
		cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
		out, err := cmd.CombinedOutput()
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok %v: %s", filepath.Base(tc.file), err, tc.ok, out)
		}
		if left, _ := os.ReadDir(tmp); len(left) != 0 {
			t.Errorf("%s: the check left %d entries in TMPDIR", filepath.Base(tc.file), len(left))
		}
	}
}

// The example's check script, run as root (as the renderer's unit runs
// it), writes nowhere but its own directory. Before, nginx -t made the
// running nginx's temporary directories (/var/lib/nginx/body, ...) its
// throwaway config's user's, nobody: until nginx's next reload gave them
// back, its workers could buffer no request body or response to disk,
// and a check that refused a file left them so. Run here with every file
// system read-only but the check's TMPDIR (and nginx's own temporary
// directories empty), so that any such write fails.
func TestNginxCheckScriptWritesOnlyItsOwnDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.conf")
	writeFile(t, good, "upstream www { server 10.0.0.1:80; }\n")
	tmp := t.TempDir()
	cmd := sandboxed(t, []string{tmp}, "sh", repoFile("examples/nginx/check-upstreams.sh"), good, "www")
	cmd.Env = append(cmd.Env, "TMPDIR="+tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the check of a good file, with nothing writable but its TMPDIR: %v: %s", err, out)
	}
}

// The registry URL the renderer logs at start has no password, which the
// URL may carry for an HTTP proxy's or the registry's basic auth.
func TestTemplateLogsNoURLPassword(t *testing.T) {
	t.Parallel()
	srv, _, _ := registryEnv(t, testserver.Options{}, "e2e-url-password")
	u, err := url.Parse(srv.APIURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("operator", "S3cretPassw0rd")
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := newOutput()
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"template", "--template", repoFile("examples/nginx/upstreams.tmpl") + ":" + filepath.Join(dir, "out.conf"),
			"--url", u.String(), "--username", "e2e-url-password", "--api-key", "dev"}, nil, io.Discard, stderr)
	}()
	stderr.waitFor(t, "svcreg template started")
	cancel()
	<-done
	if out := stderr.String(); strings.Contains(out, "S3cretPassw0rd") || !strings.Contains(out, "registry=http://127.0.0.1") {
		t.Errorf("the log shows the URL's password, or no URL:\n%s", out)
	}
}
