// Package haproxytest runs the real HAProxy for tests: master-worker mode
// on a loopback port, a stats socket at level admin, a master CLI, and a
// second configuration file for the backends a test renders.
package haproxytest

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/freeport"
	"github.com/svcreg/svcreg/internal/procstat"
	"github.com/svcreg/svcreg/internal/testprog"
)

// HAProxy is one HAProxy: a master and its worker (MasterWorker), or a
// single daemon process.
type HAProxy struct {
	Bin string
	Dir string
	// Main holds global, defaults and a frontend on Port whose default
	// backend is "api"; Backends is the second file.
	Main, Backends string
	PidFile        string // the master's pid, or the daemon's
	Socket         string // stats socket, level admin
	Master         string // master CLI, with MasterWorker
	Port           int
	MasterWorker   bool
}

// Bin finds haproxy: without it the test is skipped, or fails in CI
// (testprog).
func Bin(t testing.TB) string {
	t.Helper()
	return testprog.Find(t, "haproxy", "this test runs against the real HAProxy; `make deps` installs it (apt-get install haproxy)")
}

// FastStart is a line for a test configuration's global section. At every
// start, each check (-c) and each reload, HAProxy 2.6 loads the system's CA
// certificates for its internal HTTP client (Lua's httpclient; nothing in
// these tests uses it): about 20 ms of CPU each time, two thirds of what a
// check of a small configuration costs, and the suite runs hundreds. Without
// verification it loads none. Test configurations only: a production
// configuration that uses the HTTP client wants its peers verified.
const FastStart = "    httpclient.ssl.verify none\n"

// Start starts HAProxy with backends as its second file and stops it when
// the test ends: in master-worker mode with a master CLI, or as a single
// daemon process, which a reload replaces ("-sf").
func Start(t testing.TB, backends string, masterWorker bool) *HAProxy {
	t.Helper()
	h := &HAProxy{Bin: Bin(t), Dir: t.TempDir(), Port: freeport.Port(t), MasterWorker: masterWorker}
	h.Main, h.Backends = filepath.Join(h.Dir, "haproxy.cfg"), filepath.Join(h.Dir, "backends.cfg")
	h.PidFile = filepath.Join(h.Dir, "haproxy.pid")
	h.Socket, h.Master = filepath.Join(h.Dir, "admin.sock"), filepath.Join(h.Dir, "master.sock")
	main := fmt.Sprintf(`global
    stats socket %s level admin
    maxconn 4000
%sdefaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend web
    bind 127.0.0.1:%d
    default_backend api
`, h.Socket, FastStart, h.Port)
	if err := os.WriteFile(h.Main, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.Backends, []byte(backends), 0o644); err != nil {
		t.Fatal(err)
	}
	// A port free a moment ago can still be taken by another test's
	// program before HAProxy binds it: then HAProxy is started again on
	// another.
	for try := 0; ; try++ {
		out, err := h.start()
		if err == nil {
			break
		}
		if try == 4 || !strings.Contains(string(out), "Address already in use") {
			t.Fatalf("start haproxy: %v: %s", err, out)
		}
		old := ":" + strconv.Itoa(h.Port) + "\n"
		h.Port = freeport.Port(t)
		main = strings.Replace(main, old, ":"+strconv.Itoa(h.Port)+"\n", 1)
		if err := os.WriteFile(h.Main, []byte(main), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h.Worker(t)
	t.Cleanup(func() { h.signal(syscall.SIGTERM) })
	return h
}

// Run starts HAProxy from its files and waits until it answers.
func (h *HAProxy) Run(t testing.TB) {
	t.Helper()
	if out, err := h.start(); err != nil {
		t.Fatalf("start haproxy: %v: %s", err, out)
	}
	h.Worker(t)
}

// start runs HAProxy from its files; it daemonizes, and returns its output.
func (h *HAProxy) start() ([]byte, error) {
	return exec.Command(h.Bin, h.args()...).CombinedOutput()
}

func (h *HAProxy) args() []string {
	args := []string{"-f", h.Main, "-f", h.Backends, "-D", "-p", h.PidFile}
	if h.MasterWorker {
		args = append([]string{"-W", "-S", h.Master}, args...)
	}
	return args
}

// CheckCommand checks both files, the backends one staged.
func (h *HAProxy) CheckCommand() string {
	return fmt.Sprintf("%s -c -f %s -f {{.Staged}}", h.Bin, h.Main)
}

// ReloadCommand reloads HAProxy. A daemon is replaced by a new process
// that has bound its listeners when the command returns. A master is sent
// SIGUSR2 and reloads on its own time, as systemd's reload of Debian's
// unit does.
func (h *HAProxy) ReloadCommand() string {
	if h.MasterWorker {
		// The master keeps its pid but rewrites the pid file.
		return "kill -USR2 " + strconv.Itoa(h.pid())
	}
	return strings.Join(append([]string{h.Bin}, h.args()...), " ") + " -sf $(cat " + h.PidFile + ")"
}

// URL is the frontend's.
func (h *HAProxy) URL() string { return "http://127.0.0.1:" + strconv.Itoa(h.Port) + "/" }

func (h *HAProxy) pid() int {
	b, _ := os.ReadFile(h.PidFile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func (h *HAProxy) signal(sig syscall.Signal) {
	if pid := h.pid(); pid > 0 {
		syscall.Kill(pid, sig)
	}
}

// Stop stops HAProxy and waits for its master to exit.
func (h *HAProxy) Stop(t testing.TB) {
	t.Helper()
	pid := h.pid()
	if pid <= 0 {
		t.Fatal("no haproxy pid")
	}
	syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 1000; i++ {
		if syscall.Kill(pid, 0) != nil || zombie(pid) {
			// The test's cleanup signals the pid in the file: not a
			// process that got this pid since.
			os.Remove(h.PidFile)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("haproxy %d did not stop", pid)
}

// zombie says whether pid has exited but not been reaped: a daemon
// HAProxy's parent is the test process when a test made it a child
// subreaper (the --exec tests), and nothing waits for it there.
func zombie(pid int) bool {
	f, err := procstat.Fields(pid)
	return err == nil && len(f) > 0 && f[0] == "Z"
}

// Command sends one command to a socket and returns the answer.
func Command(socket, command string) (string, error) {
	c, err := net.DialTimeout("unix", socket, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, command+"\n"); err != nil {
		return "", err
	}
	c.(*net.UnixConn).CloseWrite()
	b, err := io.ReadAll(c)
	return string(b), err
}

// Worker returns the pid of the current worker, from the master CLI's
// "show proc", or the daemon's. A reload starts a new one.
func (h *HAProxy) Worker(t testing.TB) string {
	t.Helper()
	var out string
	var err error
	if !h.MasterWorker {
		for i := 0; i < 200; i++ { // the daemon writes its pid file after it forked
			if pid := h.pid(); pid > 0 {
				if _, err = Command(h.Socket, "show info"); err == nil {
					return strconv.Itoa(pid)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("haproxy does not answer on %s: %v", h.Socket, err)
	}
	for i := 0; i < 200; i++ { // a master just started may not listen yet
		if out, err = Command(h.Master, "show proc"); err == nil {
			for _, line := range strings.Split(out, "\n") {
				if f := strings.Fields(line); len(f) > 2 && f[1] == "worker" {
					return f[0]
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no haproxy worker: %v %q", err, out)
	return ""
}
