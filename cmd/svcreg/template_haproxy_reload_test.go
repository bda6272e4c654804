package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/svcreg/svcreg/internal/haproxytest"
	"github.com/svcreg/svcreg/internal/testserver"
)

// slowStartLua makes HAProxy take 3 s to start after it has read the
// backends (a large configuration, or one that resolves names, takes as
// long), except in a check (-c).
const slowStartLua = `local f = io.open("/proc/self/cmdline", "rb")
local args = f:read("*a")
f:close()
if not args:find("\0-c\0", 1, true) then os.execute("sleep 3") end
`

// slowTemplate writes, in a scratch directory, runtimeTemplate followed
// by a global section that loads slowStartLua.
func slowTemplate(t *testing.T) (dir, tmpl string) {
	t.Helper()
	dir = t.TempDir()
	lua := filepath.Join(dir, "slow.lua")
	tmpl = filepath.Join(dir, "backends.tmpl")
	os.WriteFile(lua, []byte(slowStartLua), 0o644)
	os.WriteFile(tmpl, []byte(runtimeTemplate+"\nglobal\n    lua-load "+lua+"\n"), 0o644)
	return dir, tmpl
}

// reloadConfig writes a renderer config in dir: tmpl into h's backends
// file, reloaded by the command reload, with h's stats socket as runtime
// API, and the template settings in extra.
func reloadConfig(t *testing.T, dir, tmpl string, h *haproxytest.HAProxy, reload, extra string) string {
	t.Helper()
	config := filepath.Join(dir, "render.toml")
	toml := fmt.Sprintf("[wait]\nmin = \"10ms\"\nmax = \"100ms\"\n[[template]]\nsource = %q\ndestination = %q\ncheck = %q\nreload = %q\nruntime = \"haproxy\"\nruntime_socket = %q\n%s\n",
		tmpl, h.Backends, h.CheckCommand(), reload, h.Socket, extra)
	if err := os.WriteFile(config, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	return config
}

// liveBackends lists the backends the HAProxy answering socket runs.
func liveBackends(socket string) string {
	out, _ := haproxytest.Command(socket, "show backend")
	return out
}

// A master-worker HAProxy that is still starting after a SIGUSR2 ignores
// the next one: a reload min_reload_interval lets through 1 s later is
// lost. examples/haproxy/render.toml's reload (kill -USR2, min_reload_interval
// 1s) with its runtime API: the renderer sees that no new worker answers
// the runtime socket, so the reload is not taken for done, and the new
// backend goes live.
func TestTemplateHAProxyReloadWhileStarting(t *testing.T) {
	t.Parallel()
	h := haproxytest.Start(t, "# svcreg\nbackend api\n    balance roundrobin\n    option httpchk GET /\n", true)
	_, c, env := registryEnv(t, testserver.Options{}, "e2e-haproxy-lost-reload")
	dir, tmpl := slowTemplate(t)
	reloads := filepath.Join(dir, "reloads")
	config := reloadConfig(t, dir, tmpl, h, "echo reload >> "+reloads+" && "+h.ReloadCommand(), `reload_timeout = "30s"`+"\n"+`min_reload_interval = "1s"`)
	startDaemon(t, env, "--config", config)

	// The first render adds the slow global section: a reload.
	eventuallyTrue(t, "the first reload", func() bool { return lines(reloads) == 1 })
	eventuallyTrue(t, "HAProxy to run the rendered file", func() bool { return strings.Contains(liveBackends(h.Socket), "api") && h.Worker(t) != "" })
	worker := h.Worker(t)

	// A new backend reloads; another one right after it is due 1 s later,
	// while HAProxy is still starting.
	createService(t, c, "admin-x", 120, []string{"admin"}, map[string]string{"ip": "127.0.0.1", "port": "1"})
	eventuallyTrue(t, "the reload for admin-x", func() bool { return lines(reloads) == 2 })
	createService(t, c, "admin-y", 120, []string{"admin"}, map[string]string{"ip": "127.0.0.1", "port": "2"})
	eventuallyTrue(t, "admin-y installed", func() bool { return strings.Contains(readString(h.Backends), "backend admin-y") })
	eventuallyTrue(t, "HAProxy to run admin-x and admin-y", func() bool {
		live := liveBackends(h.Socket)
		return strings.Contains(live, "admin-x") && strings.Contains(live, "admin-y")
	})
	if h.Worker(t) == worker {
		t.Fatal("no new worker")
	}
}

// The same with HAProxy as svcreg's child (--exec, reload_signal), whose
// start takes 3 s: a SIGUSR2 during its first start would kill it (its
// handlers are not set up yet), and one during a later start would be
// lost. The reload waits until the child's master CLI answers, which it
// does once the master has started.
func TestExecHAProxyReloadWhileStarting(t *testing.T) {
	t.Parallel()
	h := newExecHAProxy(t)
	// runtimeTemplate's backend is "api", not the shipped example's svc_api.
	main := strings.Replace(readString(h.main), "default_backend svc_api", "default_backend api", 1)
	if err := os.WriteFile(h.main, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	_, c, env := registryEnv(t, testserver.Options{}, "exec-haproxy-slow-start")
	dir, tmpl := slowTemplate(t)
	config := filepath.Join(dir, "render.toml")
	os.WriteFile(config, fmt.Appendf(nil, `[wait]
min = "10ms"
max = "100ms"
[exec]
command = [%q, "-W", "-S", %q, "-f", %q, "-f", %q]
[[template]]
source = %q
destination = %q
check = "%s -c -f %s -f {{.Staged}}"
reload_signal = "SIGUSR2"
min_reload_interval = "1s"
runtime = "haproxy"
runtime_socket = "master:%s"
`, h.bin, h.master, h.main, h.backends, tmpl, h.backends, h.bin, h.main, h.master), 0o644)
	d := startDaemon(t, env, "--config", config)
	signals := func() int { return strings.Count(d.output(), "sent the reload signal") }
	backends := func() string { out, _ := haproxytest.Command(h.master, "@1 show backend"); return out }

	// A new backend while HAProxy starts, and another one right after its
	// reload signal, while HAProxy starts again.
	eventuallyTrue(t, "HAProxy to be started", func() bool { return strings.Contains(d.output(), `msg="command started"`) })
	createService(t, c, "admin-x", 120, []string{"admin"}, map[string]string{"ip": "127.0.0.1", "port": "1"})
	eventuallyTrue(t, "the reload signal for admin-x", func() bool { return signals() == 1 })
	createService(t, c, "admin-y", 120, []string{"admin"}, map[string]string{"ip": "127.0.0.1", "port": "2"})
	eventuallyTrue(t, "HAProxy to run admin-x and admin-y", func() bool {
		live := backends()
		return strings.Contains(live, "admin-x") && strings.Contains(live, "admin-y")
	})
	if d.cmd.ProcessState != nil || strings.Contains(d.output(), "command exited") {
		t.Fatalf("HAProxy exited:\n%s", d.output())
	}
}

// A reload that does not take (here HAProxy's master is stopped, so its
// SIGUSR2 waits) fails the pass after reload_timeout: the previous file is
// restored, the log says why, and the next change, once the master runs
// again, goes live.
func TestTemplateHAProxyReloadNotTaken(t *testing.T) {
	t.Parallel()
	h := haproxytest.Start(t, "# svcreg\nbackend api\n    balance roundrobin\n    option httpchk GET /\n", true)
	_, c, env := registryEnv(t, testserver.Options{}, "e2e-haproxy-reload-not-taken")
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "backends.tmpl")
	os.WriteFile(tmpl, []byte(runtimeTemplate), 0o644)
	config := reloadConfig(t, dir, tmpl, h, h.ReloadCommand(), `reload_timeout = "2s"`)
	d := startDaemon(t, env, "--config", config)
	eventuallyTrue(t, "the first sync", func() bool { return strings.Contains(d.output(), "synced with the registry") })
	master, err := strconv.Atoi(strings.TrimSpace(readString(h.PidFile)))
	if err != nil {
		t.Fatal(err)
	}
	worker := h.Worker(t)
	syscall.Kill(master, syscall.SIGSTOP)
	t.Cleanup(func() { syscall.Kill(master, syscall.SIGCONT) })

	createService(t, c, "admin-x", 120, []string{"admin"}, map[string]string{"ip": "127.0.0.1", "port": "1"})
	eventuallyTrue(t, "the reload to fail", func() bool { return strings.Contains(d.output(), "step=reload") })
	out := d.output()
	if !strings.Contains(out, "the reload did not take") || !strings.Contains(out, "restored the previous files") {
		t.Fatalf("the failed reload is not reported:\n%s", out)
	}
	if strings.Contains(readString(h.Backends), "admin-x") {
		t.Fatalf("the file HAProxy did not load stayed installed:\n%s", readString(h.Backends))
	}

	syscall.Kill(master, syscall.SIGCONT)
	eventuallyTrue(t, "the master to reload", func() bool { return h.Worker(t) != worker })
	createService(t, c, "admin-z", 120, []string{"admin"}, map[string]string{"ip": "127.0.0.1", "port": "2"})
	eventuallyTrue(t, "HAProxy to run admin-x and admin-z", func() bool {
		live := liveBackends(h.Socket)
		return strings.Contains(live, "admin-x") && strings.Contains(live, "admin-z")
	})
}
