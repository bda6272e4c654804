package wrapper_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/svcreg/svcreg/internal/procstat"
	"github.com/svcreg/svcreg/internal/testprog"
	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/wrapper"
)

// execEnv makes the test binary run the wrapper's command line instead of
// the tests: the tests run the real program as a child process, which owns
// its children and signals as the installed binary does.
const execEnv = "WRAPPER_TEST_EXEC"

// recordSignalsArg as the first argument makes the test binary run as a
// command that records the signals it gets (recordSignals), rather than as
// the wrapper or the tests.
const recordSignalsArg = "record-signals-command"

func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == recordSignalsArg {
		os.Exit(recordSignals(os.Args[2]))
	}
	if os.Getenv(execEnv) == "1" {
		os.Exit(wrapper.Main(context.Background(), "service-registry-wrapper", os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	testprog.ChildProcessTests()
	os.Exit(m.Run())
}

// waitLimit bounds every wait for something to happen; reaching it fails
// the test. It is far above the few seconds anything here takes.
const waitLimit = 30 * time.Second

// fixture is a test's registry (a real server in-process), its account and
// a scratch directory.
type fixture struct {
	t      *testing.T
	srv    *testserver.Server
	user   string
	dir    string
	client *registry.Client
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureWith(t, testserver.Options{})
}

// newFixtureWith is newFixture with a server started with opts.
func newFixtureWith(t *testing.T, opts testserver.Options) *fixture {
	t.Helper()
	f := &fixture{t: t, srv: testserver.Start(t, opts), dir: t.TempDir()}
	f.user = strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	c, err := registry.New(registry.Config{URL: f.srv.APIURL, AuthURL: f.srv.AuthURL, Username: f.user, APIKey: "dev", CACert: f.srv.CACert})
	if err != nil {
		t.Fatal(err)
	}
	f.client = c
	t.Cleanup(func() { c.Close() })
	return f
}

// env is the wrapper's environment: the registry from SVCREG_* variables.
func (f *fixture) env(extra ...string) []string {
	return append([]string{"SVCREG_URL=" + f.srv.APIURL, "SVCREG_USERNAME=" + f.user, "SVCREG_API_KEY=dev"}, extra...)
}

// path is a file in the fixture's directory.
func (f *fixture) path(name string) string { return filepath.Join(f.dir, name) }

// service returns the service id as the registry has it.
func (f *fixture) service(id string) (registry.Service, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return f.client.GetService(ctx, id)
}

// waitRegistered waits until the registry holds id and returns it.
func (f *fixture) waitRegistered(id string) registry.Service {
	f.t.Helper()
	var s registry.Service
	waitFor(f.t, "service "+id+" in the registry", func() bool {
		var err error
		s, err = f.service(id)
		return err == nil
	})
	return s
}

// waitHeartbeat waits until the registry has seen a heartbeat of id.
func (f *fixture) waitHeartbeat(id string) {
	f.t.Helper()
	waitFor(f.t, "a heartbeat of "+id, func() bool {
		s, err := f.service(id)
		return err == nil && !s.LastSeen.IsZero()
	})
}

// assertGone checks that the registry no longer holds id.
// stopCleanly tells the command (untilStop) to stop, and checks that the
// wrapper exits 0 and deleted service id.
func (f *fixture) stopCleanly(w *proc, id string) {
	f.t.Helper()
	touch(f.t, f.path("stop"))
	if code := w.wait(); code != 0 {
		f.t.Errorf("exit code %d, want 0", code)
	}
	f.assertGone(id)
}

func (f *fixture) assertGone(id string) {
	f.t.Helper()
	if s, err := f.service(id); !errors.Is(err, registry.ErrNotFound) {
		f.t.Errorf("service %s after the wrapper exited: %+v, %v; want it deleted", id, s, err)
	}
}

// eventTypes returns the types of the events about id, in order.
func (f *fixture) eventTypes(id string) []registry.EventType {
	f.t.Helper()
	var types []registry.EventType
	for e, err := range f.client.ListEvents(context.Background(), registry.EventListOptions{}) {
		if err != nil {
			f.t.Fatalf("list events: %v", err)
		}
		if s, err := e.Service(); err == nil && s.ID == id {
			types = append(types, e.Type)
		}
	}
	return types
}

// proc is the wrapper running as a child process of the test.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdout string // the file holding its stdout (the command's)
	stderr string // the file holding its stderr: its logs and the command's
	done   chan struct{}
	code   int
}

// startWrapper runs the wrapper with args; env is added to the test's
// environment. Its stdout and stderr go to files in dir (files, not pipes,
// so that a command outliving a killed wrapper holds nothing of the test).
func startWrapper(t *testing.T, dir string, env []string, args ...string) *proc {
	t.Helper()
	return startWrapperStdin(t, dir, nil, env, args...)
}

// startWrapperStdin is startWrapper with stdin for the wrapper.
func startWrapperStdin(t *testing.T, dir string, stdin io.Reader, env []string, args ...string) *proc {
	t.Helper()
	return startWrapperCmd(t, dir, stdin, nil, env, args...)
}

// startWrapperOnTerminal is startWrapper with a new terminal (a
// pseudo-terminal) as its stdin and controlling terminal, whose foreground
// process group is the wrapper's, as for a shell's foreground job; it
// returns the terminal's master side, where the test types.
func startWrapperOnTerminal(t *testing.T, dir string, env []string, args ...string) (*proc, *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock the pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("the pseudo-terminal's number: %v", err)
	}
	terminal, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open the pseudo-terminal: %v", err)
	}
	defer terminal.Close()
	return startWrapperCmd(t, dir, terminal, &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}, env, args...), master
}

// startWrapperCmd is startWrapper with stdin and the process attributes.
func startWrapperCmd(t *testing.T, dir string, stdin io.Reader, attr *syscall.SysProcAttr, env []string, args ...string) *proc {
	t.Helper()
	return startWrapperBin(t, os.Args[0], dir, stdin, attr, env, args...)
}

// startWrapperBin is startWrapperCmd with the wrapper's executable: a copy
// of the test binary.
func startWrapperBin(t *testing.T, bin, dir string, stdin io.Reader, attr *syscall.SysProcAttr, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stdin = stdin
	cmd.SysProcAttr = attr
	cmd.Env = append(os.Environ(), execEnv+"=1")
	cmd.Env = append(cmd.Env, env...)
	stdout, err := os.CreateTemp(dir, "wrapper-stdout-")
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	stderr, err := os.CreateTemp(dir, "wrapper-stderr-")
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, cmd: cmd, stdout: stdout.Name(), stderr: stderr.Name(), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		cmd.Wait()
		p.code = cmd.ProcessState.ExitCode()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.code = 128 + int(ws.Signal())
		}
	}()
	t.Cleanup(func() {
		// A wrapper still running (the test failed) passes SIGTERM on to its
		// command, so that no command outlives the test; SIGKILL if not.
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("wrapper stderr:\n%s", p.logs())
		}
	})
	return p
}

// pid is the wrapper's process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// wait waits for the wrapper to exit and returns its exit code.
func (p *proc) wait() int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(waitLimit):
		p.t.Fatalf("the wrapper did not exit within %v", waitLimit)
		return 0
	}
}

// running reports whether the wrapper has not exited.
func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// signal sends the wrapper a signal.
func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal the wrapper: %v", err)
	}
}

// logs returns what the wrapper wrote to stderr so far.
func (p *proc) logs() string {
	b, _ := os.ReadFile(p.stderr)
	return string(b)
}

// output returns what the wrapper wrote to stdout so far.
func (p *proc) output() string {
	b, _ := os.ReadFile(p.stdout)
	return string(b)
}

// waitLog waits until the wrapper's stderr holds s.
func (p *proc) waitLog(s string) {
	p.t.Helper()
	waitFor(p.t, "the wrapper to log "+s, func() bool { return strings.Contains(p.logs(), s) })
}

// waitFor polls cond until it holds; after waitLimit it fails the test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitFile waits until the file exists and returns its content.
func waitFile(t *testing.T, path string) string {
	t.Helper()
	var b []byte
	waitFor(t, path, func() bool {
		var err error
		b, err = os.ReadFile(path)
		return err == nil && len(b) > 0 && b[len(b)-1] == '\n'
	})
	return strings.TrimSpace(string(b))
}

// touch creates an empty file.
func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	state, _ := procStateParent(pid)
	return state != "" && state != "Z"
}

// procStateParent reads the state and parent pid of process pid from
// /proc/PID/stat; "" and "" if it is not there.
func procStateParent(pid int) (state, parent string) {
	f, err := procstat.Fields(pid)
	if err != nil || len(f) < 2 {
		return "", ""
	}
	return f[0], f[1]
}

// recordedSignals are the signals recordSignals records, by name.
var recordedSignals = map[os.Signal]string{
	syscall.SIGINT: "INT", syscall.SIGQUIT: "QUIT", syscall.SIGWINCH: "WINCH",
	syscall.SIGUSR1: "USR1",
}

// recordSignals is a command that writes its pid to dir/pid, appends the
// name of each signal of recordedSignals it gets to dir/signals, a line
// each, and exits 0 once dir/stop exists. Unlike a shell's traps, which
// run once for signals that came while the shell waited, it records every
// signal delivered to it.
func recordSignals(dir string) int {
	sigs := make(chan os.Signal, 64)
	for s := range recordedSignals {
		signal.Notify(sigs, s)
	}
	out, err := os.OpenFile(filepath.Join(dir, "signals"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer out.Close()
	if err := os.WriteFile(filepath.Join(dir, "pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case s := <-sigs:
			if _, err := out.WriteString(recordedSignals[s] + "\n"); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		case <-tick.C:
			if _, err := os.Stat(filepath.Join(dir, "stop")); err == nil {
				return 0
			}
		}
	}
}

// zombieChildren lists the zombie processes whose parent is pid.
func zombieChildren(t *testing.T, pid int) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var zombies []string
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue // not a process
		}
		if state, parent := procStateParent(n); parent == strconv.Itoa(pid) && state == "Z" {
			zombies = append(zombies, e.Name())
		}
	}
	return zombies
}

// killLater kills the process whose pid file names, when the test ends:
// a command the test left orphaned.
func killLater(t *testing.T, pidFile string) {
	t.Cleanup(func() {
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
}
