package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/haproxytest"
	"github.com/svcreg/svcreg/internal/testprog"
	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/render"
)

// End-to-end tests of svcreg template --exec: the real server, svcreg
// template as a child process, and real nginx and HAProxy as its child.

// execNginx is an nginx configuration for running nginx in the foreground
// as svcreg's child; svcreg renders upstreams.conf before it starts.
type execNginx struct {
	nginx
	errorLog string
}

func newExecNginx(t *testing.T) *execNginx {
	t.Helper()
	n := &execNginx{nginx: *newNginx(t)}
	n.errorLog = filepath.Join(n.prefix, "logs", "error.log")
	// notice: nginx logs each signal it gets ("reconfiguring", "exiting").
	old := fmt.Sprintf("error_log %s;", n.errorLog)
	conf := readString(n.conf)
	if !strings.Contains(conf, old) {
		t.Fatalf("newNginx's config no longer has %q; update the test", old)
	}
	if err := os.WriteFile(n.conf, []byte(strings.Replace(conf, old, fmt.Sprintf("error_log %s notice;", n.errorLog), 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	return n
}

// command is the --exec command line.
func (n *execNginx) command() string {
	return fmt.Sprintf("%s -p %s -c %s -g 'daemon off;'", n.bin, n.prefix, n.conf)
}

// reconfigurations counts the SIGHUPs nginx acted on.
func (n *execNginx) reconfigurations() int {
	return strings.Count(readString(n.errorLog), "(SIGHUP) received")
}

// masterPid is the nginx master's pid, from its pid file.
func (n *execNginx) masterPid(t *testing.T) int {
	t.Helper()
	var pid int
	eventuallyTrue(t, "nginx's pid file", func() bool {
		var err error
		pid, err = strconv.Atoi(strings.TrimSpace(readString(filepath.Join(n.prefix, "nginx.pid"))))
		return err == nil
	})
	return pid
}

// shippedConfig is examples/nginx/exec.toml for this nginx and registry.
// Its check fails while the file failCheck exists. With viaFlag, [exec]
// is left out and --exec is to give the command.
func (n *execNginx) shippedConfig(t *testing.T, env []string, viaFlag bool) (config, failCheck string) {
	t.Helper()
	failCheck = filepath.Join(t.TempDir(), "fail-check")
	command := fmt.Sprintf(`command = %q`, n.command())
	if viaFlag {
		command = ""
	}
	config = shippedConfig(t, "examples/nginx/exec.toml",
		`source = "upstreams.tmpl"`, fmt.Sprintf("source = %q", repoFile("examples/nginx/upstreams.tmpl")),
		`url = "http://registry:8420/v1.0"`, fmt.Sprintf("url = %q", envValue(env, "SVCREG_URL")),
		`username = "dev"`, fmt.Sprintf("username = %q", envValue(env, "SVCREG_USERNAME")),
		`command = "nginx -g 'daemon off;'"`, command,
		"/etc/nginx/conf.d/svcreg-upstreams.conf", n.upstreams,
		`check = "/usr/local/share/svcreg/check-upstreams.sh`, `check = "test ! -e `+failCheck+` && `+repoFile("examples/nginx/check-upstreams.sh"),
		`min = "200ms"`, `min = "100ms"`,
	)
	return config, failCheck
}

// exitStatus waits for svcreg template to exit and returns its status.
func (d *daemon) exitStatus(t *testing.T) int {
	t.Helper()
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(45 * time.Second):
		t.Fatalf("svcreg template did not exit; output:\n%s", d.output())
	}
	return d.cmd.ProcessState.ExitCode()
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil && !strings.Contains(readString(fmt.Sprintf("/proc/%d/stat", pid)), ") Z ")
}

func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestExecNginx(t *testing.T) {
	t.Parallel()
	n := newExecNginx(t)
	_, c, env := registryEnv(t, testserver.Options{}, "exec-nginx")
	ipA, portA := backend(t, "backend-a")
	createService(t, c, "web-a", 120, []string{"www"}, map[string]string{"ip": ipA, "port": portA})
	config, failCheck := n.shippedConfig(t, env, false)
	d := startDaemon(t, env, "--config", config)

	// First the render, then nginx, which serves it.
	eventuallyTrue(t, "backend A behind nginx", func() bool { return get(n.url()) == "backend-a" })
	out := d.output()
	if i, j := strings.Index(out, "msg=installed"), strings.Index(out, `msg="command started"`); i < 0 || j < 0 || i > j {
		t.Fatalf("nginx was not started after the first install:\n%s", out)
	}
	master := n.masterPid(t)
	if got := n.reconfigurations(); got != 0 {
		t.Fatalf("nginx was reloaded %d times at its start", got)
	}

	// A service joins: nginx is reloaded by SIGHUP and traffic follows.
	ipB, portB := backend(t, "backend-b")
	createService(t, c, "web-b", 120, []string{"www"}, map[string]string{"ip": ipB, "port": portB})
	eventuallyTrue(t, "nginx to reach backend B", func() bool {
		for range 4 {
			if get(n.url()) == "backend-b" {
				return true
			}
		}
		return false
	})
	if got := n.reconfigurations(); got != 1 {
		t.Fatalf("nginx reloaded %d times for one change; want 1", got)
	}
	if n.masterPid(t) != master {
		t.Fatal("nginx was restarted instead of reloaded")
	}

	// The check fails: nothing is installed, and nginx gets no signal.
	before := readString(n.upstreams)
	touch(t, failCheck)
	ipC, portC := backend(t, "backend-c")
	createService(t, c, "web-c", 120, []string{"www"}, map[string]string{"ip": ipC, "port": portC})
	eventuallyTrue(t, "the check to refuse the config", func() bool { return strings.Contains(d.output(), "step=check") })
	if got := readString(n.upstreams); got != before {
		t.Fatalf("a config nginx refused was installed:\n%s", got)
	}
	if got := n.reconfigurations(); got != 1 {
		t.Fatalf("nginx was signalled after a failed check (%d reloads)", got)
	}
	if got := get(n.url()); got != "backend-a" && got != "backend-b" {
		t.Fatalf("nginx stopped serving after a refused config: %q", got)
	}

	// Other signals are passed on (SIGUSR1: nginx reopens its logs);
	// SIGHUP stays svcreg's: it re-reads its config, and nginx, whose file
	// has not changed, gets nothing.
	d.cmd.Process.Signal(syscall.SIGUSR1)
	eventuallyTrue(t, "nginx to get SIGUSR1", func() bool { return strings.Contains(readString(n.errorLog), "(SIGUSR1) received") })
	d.cmd.Process.Signal(syscall.SIGHUP)
	eventuallyTrue(t, "svcreg to re-read its config", func() bool { return strings.Contains(d.output(), "re-read the config and templates") })
	if got := n.reconfigurations(); got != 1 {
		t.Fatalf("SIGHUP to svcreg reached nginx (%d reloads)", got)
	}

	// SIGTERM to svcreg: passed on to nginx, which stops (its workers
	// first); svcreg exits with nginx's status, 0.
	d.cmd.Process.Signal(syscall.SIGTERM)
	if code := d.exitStatus(t); code != 0 {
		t.Fatalf("svcreg template exited %d after SIGTERM; want nginx's 0:\n%s", code, d.output())
	}
	if !strings.Contains(readString(n.errorLog), "signal 15 (SIGTERM) received") || !strings.Contains(readString(n.errorLog), "exit") {
		t.Fatalf("nginx did not get SIGTERM and exit:\n%s", readString(n.errorLog))
	}
	if alive(master) {
		t.Fatal("nginx is still running after svcreg template exited")
	}
}

func TestExecNginxKilled(t *testing.T) {
	t.Parallel()
	n, d := nginxServingA(t, "exec-nginx-killed")

	// nginx's master dies of SIGKILL: svcreg exits 128+9, and takes the
	// orphaned worker with it rather than rendering into the void.
	syscall.Kill(n.masterPid(t), syscall.SIGKILL)
	if code := d.exitStatus(t); code != 137 {
		t.Fatalf("svcreg template exited %d after nginx was killed; want 137:\n%s", code, d.output())
	}
	eventuallyTrue(t, "nginx's port to be free", func() bool { return get(n.url()) == "" })
}

// svcreg killed outright (SIGKILL) takes nginx with it, workers included:
// the kernel's parent-death signal is SIGTERM, on which nginx's master
// stops its workers (SIGKILL would leave them serving, with the port).
func TestExecNginxGoesWithTheRenderer(t *testing.T) {
	t.Parallel()
	n, d := nginxServingA(t, "exec-nginx-renderer-killed")
	master := n.masterPid(t)
	d.cmd.Process.Kill()
	d.exitStatus(t)
	eventuallyTrue(t, "nginx's master to stop", func() bool { return !alive(master) })
	eventuallyTrue(t, "nginx's workers to stop, and its port to be free", func() bool {
		return len(groupMembers(master)) == 0 && get(n.url()) == ""
	})
}

// docker stop of nginx's image sends SIGQUIT, passed on: nginx stops
// gracefully, and svcreg exits with it, logging no error.
func TestExecNginxStopSignalPassedOn(t *testing.T) {
	t.Parallel()
	_, d := nginxServingA(t, "exec-nginx-quit")
	d.cmd.Process.Signal(syscall.SIGQUIT)
	if code := d.exitStatus(t); code != 0 {
		t.Errorf("exit %d after SIGQUIT, passed on; want nginx's 0:\n%s", code, d.output())
	}
	if out := d.output(); strings.Contains(out, "level=ERROR") || !strings.Contains(out, "exited after a signal passed on") {
		t.Errorf("a stop by a signal passed on is logged as an error, or not at all:\n%s", out)
	}
}

// nginxServingA runs svcreg template --exec with nginx, the shipped
// config, in account user, with one service, backend A, and returns once
// nginx serves it.
func nginxServingA(t *testing.T, user string) (*execNginx, *daemon) {
	t.Helper()
	n := newExecNginx(t)
	_, c, env := registryEnv(t, testserver.Options{}, user)
	ip, port := backend(t, "backend-a")
	createService(t, c, "web-a", 120, []string{"www"}, map[string]string{"ip": ip, "port": port})
	config, _ := n.shippedConfig(t, env, true)
	d := startDaemon(t, env, "--config", config, "--exec", n.command())
	eventuallyTrue(t, "backend A behind nginx", func() bool { return get(n.url()) == "backend-a" })
	return n, d
}

// groupMembers are the live processes of process group pgid.
func groupMembers(pgid int) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if g, err := syscall.Getpgid(pid); err == nil && g == pgid && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Before the command has started (here the check refuses every render),
// a container runtime's stop signal, SIGQUIT for nginx's image, ends
// svcreg with 128+N.
func TestExecStopSignalBeforeTheStart(t *testing.T) {
	t.Parallel()
	f := newIDsFixture(t, "exec-early-stop", `check = "false"`)
	env, dir, config, dest := f.env, f.dir, f.config, f.dest
	started := filepath.Join(dir, "started")
	d := startDaemon(t, env, "--config", config, "--exec", "touch "+started)
	eventuallyTrue(t, "the check to refuse the render", func() bool { return strings.Contains(d.output(), "step=check") })
	d.cmd.Process.Signal(syscall.SIGQUIT)
	if code := d.exitStatus(t); code != 128+int(syscall.SIGQUIT) {
		t.Fatalf("svcreg template exited %d; want 131:\n%s", code, d.output())
	}
	if fileExists(started) || fileExists(dest) {
		t.Fatal("the command was started, or a file installed, although the check refused the render")
	}
}

// A command that ignores SIGTERM is killed after --grace-period.
func TestExecGracePeriod(t *testing.T) {
	t.Parallel()
	f := newIDsFixture(t, "exec-grace", "")
	env, dir, config := f.env, f.dir, f.config
	started := filepath.Join(dir, "started")
	d := startDaemon(t, env, "--config", config, "--grace-period", "500ms",
		"--exec", fmt.Sprintf(`sh -c 'trap "" TERM; touch %s; while :; do sleep 0.05; done'`, started))
	eventuallyTrue(t, "the command to start", func() bool { return fileExists(started) })
	d.cmd.Process.Signal(syscall.SIGTERM)
	if code := d.exitStatus(t); code != 137 {
		t.Fatalf("svcreg template exited %d; want 137 (the command killed after the grace period):\n%s", code, d.output())
	}
	if !strings.Contains(d.output(), "still running after the grace period") {
		t.Fatalf("the kill is not reported:\n%s", d.output())
	}
}

// SIGHUP stays svcreg's own while it waits for the command to stop: one
// that comes in the grace period is not passed on (a command that reloads
// or dies on SIGHUP would be cut short).
func TestExecSIGHUPWhileStoppingIsNotPassedOn(t *testing.T) {
	t.Parallel()
	f := newIDsFixture(t, "exec-hup-stop", "")
	env, dir, config := f.env, f.dir, f.config
	started, gotHUP, gotTERM := filepath.Join(dir, "started"), filepath.Join(dir, "got-hup"), filepath.Join(dir, "got-term")
	script := fmt.Sprintf(`trap "touch %s" HUP; trap "touch %s" TERM; touch %s; while :; do sleep 0.05; done`, gotHUP, gotTERM, started)
	d := startDaemon(t, env, "--config", config, "--grace-period", "2s", "--exec", "sh -c '"+script+"'")
	eventuallyTrue(t, "the command to start", func() bool { return fileExists(started) })
	d.cmd.Process.Signal(syscall.SIGTERM)
	eventuallyTrue(t, "the command to get SIGTERM", func() bool { return fileExists(gotTERM) })
	d.cmd.Process.Signal(syscall.SIGHUP)
	if code := d.exitStatus(t); code != 137 { // killed after the grace period
		t.Errorf("svcreg template exited %d; want 137:\n%s", code, d.output())
	}
	if fileExists(gotHUP) {
		t.Errorf("a SIGHUP to svcreg while the command stopped was passed on to it:\n%s", d.output())
	}
}

// A reload that waits for a command just started to set up (its first
// SignalSettle) sends nothing once svcreg has been told to stop meanwhile:
// the command is being stopped.
func TestExecReloadOfAStoppingCommandIsNotSent(t *testing.T) {
	t.Parallel()
	f := newIDsFixture(t, "exec-reload-stopping", "")
	d, got := startRecorder(t, f, "", []string{"USR1", "TERM"}, "--grace-period", "2s")
	createService(t, f.c, "web-b", 120, []string{"www"}, nil)
	eventuallyTrue(t, "the change to be installed", func() bool { return readString(f.dest) == "web-a\nweb-b\n" })
	// The reload of the change now waits out the command's first second,
	// unless the change took that long to come (then the signal went
	// first, and the check below passes).
	d.cmd.Process.Signal(syscall.SIGTERM)
	if code := d.exitStatus(t); code != 137 { // killed after the grace period
		t.Errorf("svcreg template exited %d; want 137:\n%s", code, d.output())
	}
	if got := got(); strings.Contains(got, "TERM\nUSR1") {
		t.Errorf("the command got the reload signal after SIGTERM (%q):\n%s", got, d.output())
	}
}

// A signal passed on that ends a process by default may be the command's
// stop signal (SIGQUIT is nginx's graceful stop): a reload due after it
// waits, and is not sent once the command has exited.
func TestExecReloadAfterAPassedOnStopSignalIsNotSent(t *testing.T) {
	t.Parallel()
	f := newIDsFixture(t, "exec-reload-quit", "")
	// On SIGQUIT it takes 3 to 4 s to stop, as nginx finishing its
	// requests: by the clock, not a count of sleeps, which a loaded
	// machine stretches past the grace period.
	d, got := startRecorder(t, f, `while :; do sleep 0.05; if [ -n "$q" ]; then end=${end:-$(($(date +%s)+4))}; [ "$(date +%s)" -ge "$end" ] && exit 0; fi; done`,
		[]string{"USR1", "QUIT; q=1"})
	d.cmd.Process.Signal(syscall.SIGQUIT)
	eventuallyTrue(t, "the command to get SIGQUIT", func() bool { return strings.Contains(got(), "QUIT") })
	createService(t, f.c, "web-b", 120, []string{"www"}, nil)
	eventuallyTrue(t, "the change to be installed", func() bool { return readString(f.dest) == "web-a\nweb-b\n" })
	if code := d.exitStatus(t); code != 0 {
		t.Errorf("svcreg template exited %d; want the command's 0:\n%s", code, d.output())
	}
	if got := got(); got != "QUIT\n" {
		t.Errorf("the command got %q; want the reload signal held back after SIGQUIT:\n%s", got, d.output())
	}
}

// A command that exits within SignalSettle of a reload signal, of a stop
// signal passed on after it (nginx's SIGQUIT, as a container is stopped),
// did not fail the reload: the files it was reloaded for stay installed,
// and no failure is logged. Here the command has svcreg sent SIGQUIT as
// it gets the reload signal.
func TestExecStopSignalPassedOnAfterAReloadIsNotItsFailure(t *testing.T) {
	t.Parallel()
	f := newIDsFixture(t, "exec-reload-then-quit", "")
	d, got := startRecorder(t, f, "", []string{"USR1; kill -QUIT $PPID", "QUIT; exit 0"})
	time.Sleep(render.SignalSettle) // the reload is sent at once, not held back for the start
	createService(t, f.c, "web-b", 120, []string{"www"}, nil)
	if code := d.exitStatus(t); code != 0 {
		t.Errorf("svcreg template exited %d; want the command's 0:\n%s", code, d.output())
	}
	if got := got(); got != "USR1\nQUIT\n" {
		t.Fatalf("the command got %q; want the reload signal, then SIGQUIT:\n%s", got, d.output())
	}
	if got := readString(f.dest); got != "web-a\nweb-b\n" {
		t.Errorf("the destination holds %q, want the change the command was reloaded for:\n%s", got, d.output())
	}
	if strings.Contains(d.output(), "template group failed") {
		t.Errorf("the reload is logged as failed:\n%s", d.output())
	}
}

// A signal passed on that does not stop the command (SIGUSR2 to a command
// that traps it) holds a reload back only for the grace period (at least
// 10 s), after which it is sent.
func TestExecReloadAfterAPassedOnSignalThatDoesNotStopIsSent(t *testing.T) {
	t.Parallel()
	f := newIDsFixture(t, "exec-reload-usr2", "")
	d, got := startRecorder(t, f, "", []string{"USR1", "USR2"})
	d.cmd.Process.Signal(syscall.SIGUSR2)
	eventuallyTrue(t, "the command to get SIGUSR2", func() bool { return strings.Contains(got(), "USR2") })
	createService(t, f.c, "web-b", 120, []string{"www"}, nil)
	deadline := time.Now().Add(40 * time.Second)
	for got() != "USR2\nUSR1\n" {
		if time.Now().After(deadline) {
			t.Fatalf("the command got %q; want the reload signal after the grace period:\n%s", got(), d.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(d.output(), "the reload signal waits") {
		t.Errorf("the wait is not logged:\n%s", d.output())
	}
}

// A SIGHUP while a reload is held back (the render loop waits in it) must
// not hold up the SIGTERM after it: the new configuration waits for the
// render loop, the stop does not.
func TestExecSIGTERMIsNotHeldByAWaitingReload(t *testing.T) {
	t.Parallel()
	f := newIDsFixture(t, "exec-term-held", "")
	d, got := startRecorder(t, f, "", []string{"USR1", "USR2", "TERM; exit 0"}, "--grace-period", "30s")
	d.cmd.Process.Signal(syscall.SIGUSR2) // passed on; this command does not stop on it
	eventuallyTrue(t, "the command to get SIGUSR2", func() bool { return strings.Contains(got(), "USR2") })
	createService(t, f.c, "web-b", 120, []string{"www"}, nil)
	eventuallyTrue(t, "the reload to wait", func() bool { return strings.Contains(d.output(), "the reload signal waits") })
	d.cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond) // the SIGHUP first (not needed for the check)
	d.cmd.Process.Signal(syscall.SIGTERM)
	if code := d.exitStatus(t); code != 0 {
		t.Errorf("svcreg template exited %d; want the command's 0:\n%s", code, d.output())
	}
	if got := got(); got != "USR2\nTERM\n" {
		t.Errorf("the command got %q; want SIGTERM passed on, and no reload signal:\n%s", got, d.output())
	}
}

// svcreg killed outright (SIGKILL) can pass nothing on: the kernel's
// parent-death signal takes the command with it.
func TestExecCommandDiesWithTheRenderer(t *testing.T) {
	t.Parallel()
	f := newIDsFixture(t, "exec-deathsig", "")
	env, dir, config := f.env, f.dir, f.config
	pidFile := filepath.Join(dir, "pid")
	d := startDaemon(t, env, "--config", config, "--exec", fmt.Sprintf(`sh -c 'echo $$ > %s.tmp && mv %s.tmp %s && exec sleep 600'`, pidFile, pidFile, pidFile))
	var pid int
	eventuallyTrue(t, "the command to start", func() bool {
		var err error
		pid, err = strconv.Atoi(strings.TrimSpace(readString(pidFile)))
		return err == nil
	})
	// It must outlive svcreg's own threads coming and going meanwhile
	// (the signal is tied to the thread that forked it).
	time.Sleep(300 * time.Millisecond)
	if !alive(pid) {
		t.Fatal("the command died while svcreg was running")
	}
	d.cmd.Process.Kill()
	d.exitStatus(t)
	eventuallyTrue(t, "the command to die with svcreg", func() bool { return !alive(pid) })
}

// execHAProxy is HAProxy in master-worker mode in the foreground, as
// svcreg's child, with a master CLI; svcreg renders its backends before it
// starts.
type execHAProxy struct {
	haproxy
	master string
}

func newExecHAProxy(t *testing.T) *execHAProxy {
	t.Helper()
	h := &execHAProxy{haproxy: *newHAProxy(t)}
	h.master = filepath.Join(h.dir, "master.sock")
	return h
}

func (h *execHAProxy) url() string { return "http://127.0.0.1:" + strconv.Itoa(h.port) + "/" }

// worker is the pid of HAProxy's current worker.
func (h *execHAProxy) worker(t *testing.T) string {
	t.Helper()
	return (&haproxytest.HAProxy{Master: h.master, MasterWorker: true}).Worker(t)
}

// serves reports whether a few requests through HAProxy are all answered
// by one of want, and each of want answers one.
func (h *execHAProxy) serves(want ...string) bool {
	seen := map[string]bool{}
	for range 3 * len(want) {
		got := get(h.url())
		if !slices.Contains(want, got) {
			return false
		}
		seen[got] = true
	}
	return len(seen) == len(want)
}

var exitedCode = regexp.MustCompile(`msg="command exited" .*code=(\d+)`)

// examples/haproxy/exec.toml: HAProxy is svcreg's child; server changes go
// through its runtime API (the child's master CLI) without a signal, a new
// backend reloads it by SIGUSR2.
func TestExecHAProxy(t *testing.T) {
	t.Parallel()
	h := newExecHAProxy(t)
	_, c, env := registryEnv(t, testserver.Options{}, "exec-haproxy")
	ctx := context.Background()
	ip, port := backend(t, "api-1")
	createService(t, c, "api-1", 120, []string{"http"}, map[string]string{"ip": ip, "port": port, "backend": "api"})
	config := shippedConfig(t, "examples/haproxy/exec.toml",
		`source = "backends.tmpl"`, fmt.Sprintf("source = %q", repoFile("examples/haproxy/backends.tmpl")),
		`url = "http://registry:8420/v1.0"`, fmt.Sprintf("url = %q", envValue(env, "SVCREG_URL")),
		`username = "dev"`, fmt.Sprintf("username = %q", envValue(env, "SVCREG_USERNAME")),
		`["haproxy", "-W"`, fmt.Sprintf(`[%q, "-W"`, h.bin),
		`check = "haproxy -c`, `check = "`+h.bin+` -c`,
		"/usr/local/etc/haproxy/haproxy.cfg", h.main,
		"/usr/local/etc/haproxy/svcreg-backends.cfg", h.backends,
		"/run/haproxy/master.sock", h.master,
		`min = "200ms"`, `min = "100ms"`,
	)
	// The file of an earlier run (a container restarted on the same
	// volume): the change is one the runtime API could make, but HAProxy
	// is not running yet; it reads the file when it starts.
	os.WriteFile(h.backends, []byte("backend api\n    balance roundrobin\n    option httpchk GET /\n    server api-0 127.0.0.1:1 check\n"), 0o644)
	d := startDaemon(t, env, "--config", config)
	eventuallyTrue(t, "api-1 behind haproxy", func() bool { return get(h.url()) == "api-1" })
	if out := d.output(); strings.Contains(out, "runtime API failed") || !strings.Contains(out, "not started yet") {
		t.Fatalf("the first pass used the runtime API of a command not started yet:\n%s", out)
	}
	worker := h.worker(t)
	signals := func() int { return strings.Count(d.output(), "sent the reload signal") }
	applied := func() int { return strings.Count(d.output(), "applied through the runtime API") }

	// Servers added, moved and removed: through the runtime API, with no
	// signal to HAProxy (the same worker serves), and traffic follows.
	ip2, port2 := backend(t, "api-2")
	createService(t, c, "api-2", 120, []string{"http"}, map[string]string{"ip": ip2, "port": port2, "backend": "api"})
	eventuallyTrue(t, "haproxy to reach api-2", func() bool { return h.serves("api-1", "api-2") })
	ip3, port3 := backend(t, "api-2-moved")
	if err := c.UpdateService(ctx, "api-2", registry.ServicePatch{Metadata: map[string]string{"ip": ip3, "port": port3, "backend": "api"}}); err != nil {
		t.Fatal(err)
	}
	eventuallyTrue(t, "haproxy to follow api-2's move", func() bool { return h.serves("api-1", "api-2-moved") })
	if err := c.DeleteService(ctx, "api-1"); err != nil {
		t.Fatal(err)
	}
	eventuallyTrue(t, "haproxy to drop api-1", func() bool { return h.serves("api-2-moved") })
	// HAProxy drains api-1 before the renderer says the change is applied.
	eventuallyTrue(t, "the removal applied", func() bool { return applied() >= 3 })
	if n := applied(); n != 3 || signals() != 0 || h.worker(t) != worker {
		t.Fatalf("server changes: %d applied through the runtime API (want 3), %d reload signals (want 0), worker %s (was %s):\n%s", n, signals(), h.worker(t), worker, d.output())
	}

	// A backend's setting (its health check path): reloaded by SIGUSR2, a
	// new worker runs it, and traffic goes on. A service naming a backend
	// the template does not list changes nothing.
	createService(t, c, "other-1", 120, []string{"http"}, map[string]string{"ip": ip, "port": port, "backend": "other"})
	if err := c.SetConfig(ctx, "/haproxy/api/health", "/health"); err != nil {
		t.Fatal(err)
	}
	eventuallyTrue(t, "a new worker, the signal logged", func() bool { return h.worker(t) != worker && signals() > 0 })
	if n := signals(); n != 1 || !strings.Contains(d.output(), "signal=SIGUSR2") || strings.Contains(readString(h.backends), "svc_other") {
		t.Fatalf("%d reload signals for a changed backend; want one SIGUSR2, and no backend other:\n%s", n, d.output())
	}
	eventuallyTrue(t, "the new worker to serve api-2-moved", func() bool { return h.serves("api-2-moved") })

	// A config HAProxy refuses (haproxy.cfg names a backend no render
	// writes), for a change that needs a reload: the check fails first
	// and the master is not signalled.
	before := readString(h.backends)
	nameMissingBackend(t, h.main)
	if err := c.SetConfig(ctx, "/haproxy/api/health", "/other"); err != nil {
		t.Fatal(err)
	}
	eventuallyTrue(t, "HAProxy's reason in the log", func() bool {
		return strings.Contains(d.output(), "unable to find required default_backend: 'svc_missing'")
	})
	if got := readString(h.backends); got != before {
		t.Fatalf("a config HAProxy refused was installed:\n%s", got)
	}
	if signals() != 1 {
		t.Fatal("HAProxy was signalled after a failed check")
	}
	if !h.serves("api-2-moved") {
		t.Fatal("HAProxy stopped serving after a failed check")
	}

	// SIGTERM: HAProxy stops, and svcreg exits with its status.
	d.cmd.Process.Signal(syscall.SIGTERM)
	code := d.exitStatus(t)
	m := exitedCode.FindStringSubmatch(d.output())
	if m == nil || m[1] != strconv.Itoa(code) {
		t.Fatalf("svcreg template exited %d, not with HAProxy's status:\n%s", code, d.output())
	}
	if got := get(h.url()); got != "" {
		t.Fatalf("HAProxy still serves after svcreg template exited: %q", got)
	}
}

// A reload by signal that kills the command fails like a failed reload
// command: the previous file is restored, and svcreg exits with the
// command's status.
func TestExecReloadSignalKillsTheCommand(t *testing.T) {
	t.Parallel()
	f := newIDsFixture(t, "exec-reload-dies", "")
	c, env, dir, config, dest := f.c, f.env, f.dir, f.config, f.dest
	started := filepath.Join(dir, "started")
	d := startDaemon(t, env, "--config", config,
		"--exec", fmt.Sprintf(`sh -c 'trap "exit 3" USR1; touch %s; while :; do sleep 0.05; done'`, started))
	eventuallyTrue(t, "the command to start", func() bool { return fileExists(started) })
	if got := readString(dest); got != "web-a\n" {
		t.Fatalf("ids.txt = %q", got)
	}
	createService(t, c, "web-b", 120, []string{"www"}, nil)
	if code := d.exitStatus(t); code != 3 {
		t.Fatalf("svcreg template exited %d; want the command's 3:\n%s", code, d.output())
	}
	if got := readString(dest); got != "web-a\n" {
		t.Fatalf("after the failed reload ids.txt = %q; want the previous file back", got)
	}
	if !strings.Contains(d.output(), "restored the previous files") {
		t.Fatalf("the failed reload is not reported:\n%s", d.output())
	}
}

// Orphans re-parented to svcreg (a subreaper, or PID 1 in a PID
// namespace, as in a container) are reaped, while its check commands
// still report their own status.
func TestExecReapsOrphans(t *testing.T) {
	t.Parallel()
	for _, pid1 := range []bool{false, true} {
		t.Run(map[bool]string{false: "subreaper", true: "pid1"}[pid1], func(t *testing.T) {
			t.Parallel()
			unshare := ""
			if pid1 {
				testprog.NeedRoot(t, "to run svcreg as PID 1 of a new PID namespace")
				unshare = testprog.Find(t, "unshare", "to run svcreg as PID 1 of a new PID namespace (apt-get install util-linux)")
			}
			f := newIDsFixture(t, "exec-orphans", `check = "grep -q web {{.Staged}}"`)
			c, env, config, dest := f.c, f.env, f.config, f.dest
			// Three orphans a second, each living 0.3 s; USR1 is ignored.
			command := `sh -c 'trap "" USR1; while :; do for i in 1 2 3; do (sleep 0.3 &); done; sleep 1; done'`
			args := []string{"template", "--config", config, "--exec", command}
			name := os.Args[0]
			if pid1 {
				args = append([]string{"--pid", "--fork", "--kill-child", name}, args...)
				name = unshare
			}
			d := &daemon{cmd: exec.Command(name, args...)}
			d.cmd.Env = append(append(os.Environ(), execEnv+"=1"), env...)
			d.cmd.Stdout, d.cmd.Stderr = &d.logs, &d.logs
			if err := d.cmd.Start(); err != nil {
				t.Fatal(err)
			}
			renderer := d.cmd.Process.Pid
			if pid1 {
				eventuallyTrue(t, "unshare's child", func() bool {
					kids := children(d.cmd.Process.Pid)
					renderer = 0
					if len(kids) == 1 {
						renderer = kids[0]
					}
					return renderer != 0
				})
			}
			t.Cleanup(func() {
				syscall.Kill(renderer, syscall.SIGTERM)
				d.exitStatus(t)
				if t.Failed() {
					t.Logf("svcreg template output:\n%s", d.output())
				}
			})
			eventuallyTrue(t, "the command to start", func() bool { return strings.Contains(d.output(), `msg="command started"`) })
			if nspid := regexp.MustCompile(`NSpid:\s.*\s1\n`); pid1 && !nspid.MatchString(readString(fmt.Sprintf("/proc/%d/status", renderer))) {
				t.Fatalf("svcreg template is not PID 1 of its namespace:\n%s", readString(fmt.Sprintf("/proc/%d/status", renderer)))
			}

			// Orphaned sleeps become svcreg's children; none is left a
			// zombie, over several rounds.
			sawOrphans := false
			for range 3 {
				time.Sleep(time.Second)
				for _, pid := range children(renderer) {
					if strings.Contains(readString(fmt.Sprintf("/proc/%d/cmdline", pid)), "sleep") {
						sawOrphans = true
					}
				}
			}
			if !sawOrphans {
				t.Fatal("no orphan was re-parented to svcreg template; the test proves nothing")
			}
			eventuallyTrue(t, "no zombie children of svcreg", func() bool { return zombies(renderer) == 0 })

			// A check command runs beside the reaper and reports its own
			// status: the service joins, the check passes, the file is
			// installed.
			createService(t, c, "web-b", 120, []string{"www"}, nil)
			eventuallyTrue(t, "web-b installed", func() bool { return strings.Contains(readString(dest), "web-b") })
			if strings.Contains(d.output(), "step=check") {
				t.Fatalf("a check failed under the reaper:\n%s", d.output())
			}
		})
	}
}

// idsFixture is a registry holding the service web-a and a renderer
// config (writeIDsConfig) in a scratch directory.
type idsFixture struct {
	c                 *registry.Client
	env               []string
	dir, config, dest string
}

func newIDsFixture(t *testing.T, user, extra string) *idsFixture {
	t.Helper()
	f := &idsFixture{dir: t.TempDir()}
	_, f.c, f.env = registryEnv(t, testserver.Options{}, user)
	createService(t, f.c, "web-a", 120, []string{"www"}, nil)
	f.config, f.dest = writeIDsConfig(t, f.dir, extra)
	return f
}

// startRecorder runs svcreg template with f's config, args and an --exec
// command that writes the name of each signal of traps it gets ("USR1",
// or with an action after it: "TERM; exit 0") to a file, one a line, then
// runs loop (by default, waits for ever); it waits for the command to
// start, and returns what the file holds so far as got.
func startRecorder(t *testing.T, f *idsFixture, loop string, traps []string, args ...string) (d *daemon, got func() string) {
	t.Helper()
	started, signals := filepath.Join(f.dir, "started"), filepath.Join(f.dir, "signals")
	var script strings.Builder
	for _, tr := range traps {
		name, action, _ := strings.Cut(tr, ";")
		fmt.Fprintf(&script, `trap "echo %s >> %s;%s" %s; `, name, signals, action, name)
	}
	fmt.Fprintf(&script, "touch %s; %s", started, cmp.Or(loop, "while :; do sleep 0.05; done"))
	d = startDaemon(t, f.env, append(append([]string{"--config", f.config}, args...), "--exec", "sh -c '"+script.String()+"'")...)
	eventuallyTrue(t, "the command to start", func() bool { return fileExists(started) })
	return d, func() string { return readString(signals) }
}

// writeIDsConfig writes a renderer config whose one template lists the
// service ids into dest, reloading the --exec command with SIGUSR1.
func writeIDsConfig(t *testing.T, dir, extra string) (config, dest string) {
	t.Helper()
	config, dest = filepath.Join(dir, "render.toml"), filepath.Join(dir, "ids.txt")
	toml := fmt.Sprintf(`
[wait]
min = "100ms"
max = "1s"

[[template]]
contents = "{{ range services }}{{ .ID | ident }}\n{{ end }}"
destination = %q
reload_signal = "SIGUSR1"
%s
`, dest, extra)
	if err := os.WriteFile(config, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	return config, dest
}

// children lists the child processes of pid.
func children(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		for _, w := range strings.Fields(readString(f)) {
			if n, err := strconv.Atoi(w); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// zombies counts the children of pid that have exited and not been
// reaped.
func zombies(pid int) int {
	n := 0
	for _, c := range children(pid) {
		if strings.Contains(readString(fmt.Sprintf("/proc/%d/stat", c)), ") Z ") {
			n++
		}
	}
	return n
}

func TestExecBadCommand(t *testing.T) {
	t.Parallel()
	_, _, env := registryEnv(t, testserver.Options{}, "exec-bad")
	dir := t.TempDir()
	notExec := filepath.Join(dir, "not-executable")
	os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644)
	dest := filepath.Join(dir, "out.txt")
	tmpl := filepath.Join(dir, "in.tmpl")
	os.WriteFile(tmpl, []byte("{{ range services }}{{ .ID | ident }}{{ end }}\n"), 0o644)
	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"not found", []string{"--exec", "no-such-program-svcreg -x"}, 127, "--exec: cannot run no-such-program-svcreg"},
		{"no such file", []string{"--exec", filepath.Join(dir, "missing")}, 127, "no such file or directory"},
		{"not executable", []string{"--exec", notExec}, 126, "permission denied"},
		{"with --once", []string{"--exec", "sleep 1", "--once"}, 2, "cannot be used with --once"},
		{"shell syntax", []string{"--exec", "nginx; rm -rf /"}, 3, "means something only to a shell"},
		{"empty", []string{"--exec", " "}, 3, "--exec: no command given"},
		{"grace period without a command", []string{"--grace-period", "2s"}, 2, "--grace-period is about the command --exec runs"},
		{"start without the registry, no command", []string{"--start-without-registry", "30s"}, 2, "--start-without-registry is about the command --exec runs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], append([]string{"template", "--template", tmpl + ":" + dest}, tc.args...)...)
			cmd.Env = append(append(os.Environ(), execEnv+"=1"), env...)
			out, _ := cmd.CombinedOutput()
			if got := cmd.ProcessState.ExitCode(); got != tc.code || !strings.Contains(string(out), tc.msg) {
				t.Fatalf("exit %d, want %d with %q:\n%s", got, tc.code, tc.msg, out)
			}
			if fileExists(dest) {
				t.Fatal("a file was rendered before the command was found")
			}
		})
	}
}

// The README's --exec examples: the command line takes its flags, and the
// config loads with the [exec] and reload_signal it shows.
func TestREADMEExecExample(t *testing.T) {
	t.Parallel()
	for _, line := range readmeBlock(t, "### Running in a container", "sh") {
		args, err := render.SplitCommand(strings.TrimPrefix(line, "svcreg "))
		if err != nil || len(args) == 0 {
			t.Fatalf("README: %q: %v", line, err)
		}
		if code := Main(context.Background(), append(args, "--help"), strings.NewReader(""), io.Discard, io.Discard); code != exitOK {
			t.Errorf("README: %q: exit status %d with --help appended", line, code)
		}
	}
	path := filepath.Join(t.TempDir(), "render.toml")
	if err := os.WriteFile(path, []byte(strings.Join(readmeBlock(t, "### Running in a container", "toml"), "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := loadTemplateConfig(path)
	if err != nil {
		t.Fatalf("the README's [exec] example: %v", err)
	}
	set, err := render.NewSet(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Exec.Command, []string{"nginx", "-g", "daemon off;"}) || set.Groups[0].ReloadSignal != syscall.SIGHUP {
		t.Fatalf("read the wrong block? %+v", c.Exec)
	}
}

// Before the command has started, a pass can be long (a check runs up to
// check_timeout): a SIGHUP then must not hold up the SIGTERM after it
// either, nor may the command be started after that SIGTERM.
func TestExecSIGTERMBeforeTheStartIsNotHeldBySIGHUP(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	checking, checked := filepath.Join(dir, "checking"), filepath.Join(dir, "checked")
	f := newIDsFixture(t, "exec-term-held-early", fmt.Sprintf(`check = "touch %s; sleep 12; touch %s"`, checking, checked))
	started := filepath.Join(f.dir, "started")
	d := startDaemon(t, f.env, "--config", f.config, "--exec", "sh -c 'touch "+started+"; while :; do sleep 0.05; done'")
	eventuallyTrue(t, "the check to run", func() bool { return fileExists(checking) })
	d.cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond) // the SIGHUP first (not needed for the check)
	d.cmd.Process.Signal(syscall.SIGTERM)
	if code := d.exitStatus(t); code != 128+int(syscall.SIGTERM) || fileExists(checked) || fileExists(started) {
		t.Errorf("exit %d after the check ended %v, command started %v; want 143 before the check ends, and the command not started:\n%s",
			code, fileExists(checked), fileExists(started), d.output())
	}
}

// With the example's start_without_registry, a renderer restarted while
// the registry does not answer starts nginx on the file the run before
// installed instead of leaving the load balancer down (before, it waited
// for the registry however long it took); once the registry answers, the
// render reloads nginx with what it holds now.
func TestExecNginxStartsWithoutTheRegistry(t *testing.T) {
	t.Parallel()
	n := newExecNginx(t)
	srv, c, env := registryEnv(t, testserver.Options{}, "exec-without-registry")
	ipA, portA := backend(t, "backend-before")
	writeFile(t, n.upstreams, fmt.Sprintf("upstream www { server %s:%s; }\n", ipA, portA)) // the run before's
	ipB, portB := backend(t, "backend-after")
	createService(t, c, "web-b", 120, []string{"www"}, map[string]string{"ip": ipB, "port": portB})
	// The registry, behind a proxy that answers 503 until it is up.
	var up atomic.Bool
	target, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		front.CloseClientConnections()
		front.Close()
	})
	env[slices.IndexFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "SVCREG_URL=") })] = "SVCREG_URL=" + front.URL + "/v1.0"
	config, _ := n.shippedConfig(t, env, false)
	text := readString(config)
	if !strings.Contains(text, `start_without_registry = "30s"`) {
		t.Fatal("examples/nginx/exec.toml no longer has start_without_registry; update the test")
	}
	writeFile(t, config, strings.Replace(text, `start_without_registry = "30s"`, `start_without_registry = "500ms"`, 1))
	d := startDaemon(t, env, "--config", config)

	eventuallyTrue(t, "nginx started on the installed file", func() bool { return get(n.url()) == "backend-before" })
	if out := d.output(); !strings.Contains(out, "starting the command on the files installed before") {
		t.Errorf("the log does not say why nginx started:\n%s", out)
	}
	up.Store(true)
	eventuallyTrue(t, "nginx reloaded with the registry's backend", func() bool { return get(n.url()) == "backend-after" })
}

// A SIGHUP that adds a template before the command has started, while
// the registry does not answer: start_without_registry looks for the
// files of the templates in use, not of those the renderer started with,
// so that the command never starts without a destination's file.
func TestExecStartWithoutTheRegistryLooksAtTheTemplatesInUse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	old, added := filepath.Join(dir, "old.txt"), filepath.Join(dir, "added.txt")
	writeFile(t, old, "web-a\n") // the run before's
	config := filepath.Join(dir, "render.toml")
	tmpl := func(dest string) string {
		return fmt.Sprintf("\n[[template]]\ncontents = \"{{ range services }}{{ .ID | ident }}\\n{{ end }}\"\ndestination = %q\nreload_signal = \"SIGUSR1\"\n", dest)
	}
	writeFile(t, config, "[exec]\nstart_without_registry = \"4s\"\n"+tmpl(old))
	started, missing := filepath.Join(dir, "started"), filepath.Join(dir, "missing")
	env := []string{"SVCREG_URL=http://127.0.0.1:" + strconv.Itoa(freePort(t)) + "/v1.0", "SVCREG_USERNAME=nobody", "SVCREG_API_KEY=dev"}
	d := startDaemon(t, env, "--config", config, "--exec",
		fmt.Sprintf("sh -c 'test -e %s || touch %s; touch %s; while :; do sleep 0.05; done'", added, missing, started))
	eventuallyTrue(t, "the renderer to start", func() bool { return strings.Contains(d.output(), "registry") })
	writeFile(t, config, "[exec]\nstart_without_registry = \"4s\"\n"+tmpl(old)+tmpl(added))
	d.cmd.Process.Signal(syscall.SIGHUP)
	eventuallyTrue(t, "the SIGHUP's reload", func() bool { return strings.Contains(d.output(), "re-read the config and templates") })
	eventuallyTrue(t, "the wait to end", func() bool {
		return fileExists(started) || strings.Contains(d.output(), "the command waits for the registry")
	})
	if fileExists(missing) {
		t.Errorf("the command started without the added template's file:\n%s", d.output())
	}
}
