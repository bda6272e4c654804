package supervise

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Children started with StartOwned report their own exit status to
// cmd.Wait while the reaper of a supervised command collects everything
// else, however their exits interleave.
func TestOwnedChildrenKeepTheirStatus(t *testing.T) {
	sup := New(slog.New(slog.DiscardHandler))
	defer sup.Close()
	// The command exits at once: the reaper runs while the owned children
	// come and go.
	child, err := sup.Start(exec.Command("sh", "-c", "exit 7"), Options{GracePeriod: 1})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				cmd := exec.Command("sh", "-c", "exit 3")
				release, err := StartOwned(cmd)
				if err != nil {
					errs <- err
					continue
				}
				err = cmd.Wait()
				release()
				if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("an owned child's status was lost: %v", err)
	}
	<-child.Done()
	if ws := child.Status(); !ws.Exited() || ws.ExitStatus() != 7 {
		t.Fatalf("the command's status is %v; want exit 7", ws)
	}
	child.Close()
	// Every child has been collected: none is left a zombie.
	var ws syscall.WaitStatus
	if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); err != syscall.ECHILD {
		t.Fatalf("a child was left behind: pid %d, err %v", pid, err)
	}
}

// A stop long after a SIGINT the command outlived (a terminal's Ctrl-C to a
// program that goes on) sends SIGTERM and gives it its grace period, rather
// than SIGKILL at once.
func TestStopAfterAnOldInterrupt(t *testing.T) {
	sup := New(slog.New(slog.DiscardHandler))
	defer sup.Close()
	child, err := sup.Start(exec.Command("sh", "-c", "trap '' INT; trap 'exit 3' TERM; while :; do sleep 0.05; done"), Options{GracePeriod: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer child.Close()
	time.Sleep(100 * time.Millisecond) // the traps set
	child.Forward(syscall.SIGINT)
	time.Sleep(500 * time.Millisecond) // past twice the grace period
	// A SIGTERM (docker stop) then is a first one, passed on, not an
	// escalation.
	child.Forward(syscall.SIGTERM)
	if code := child.Stop(); code != 3 {
		t.Errorf("exit code %d after a stop past the grace period of an interrupt; want 3, the command's own on SIGTERM", code)
	}
}

// The reaper goes on after the command is reaped; an orphan that took the
// command's pid since is reaped as any other, not as the command a second
// time (its Done would be closed twice).
func TestCommandsStatusIsTakenOnce(t *testing.T) {
	var got []syscall.WaitStatus
	exited := once(func(ws syscall.WaitStatus) { got = append(got, ws) }, slog.New(slog.DiscardHandler))
	exited(syscall.WaitStatus(7 << 8))
	exited(syscall.WaitStatus(0))
	if len(got) != 1 || got[0].ExitStatus() != 7 {
		t.Errorf("exited was told %v, want the command's status (exit 7) once", got)
	}
}

// Orphans are reaped from New on, not only once the command has started:
// a check command that leaves a child behind, run while the first pass
// keeps failing, piled zombies up in the subreaper (or PID 1). Owned
// children keep their status meanwhile.
func TestOrphansReapedBeforeTheCommandStarts(t *testing.T) {
	if runtime.GOOS != "linux" {
		// It looks for the orphans in /proc; without it every one would
		// look reaped.
		t.Skip("needs /proc (Linux)")
	}
	sup := New(slog.New(slog.DiscardHandler))
	defer sup.Close()
	var orphans []int
	for range 3 {
		cmd := exec.Command("sh", "-c", "sleep 0.1 & echo $!; exit 4")
		var out strings.Builder
		cmd.Stdout = &out
		release, err := StartOwned(cmd)
		if err != nil {
			t.Fatal(err)
		}
		err = cmd.Wait()
		release()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 4 {
			t.Fatalf("an owned child's status: %v; want exit 4", err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(out.String()))
		if err != nil {
			t.Fatal(err)
		}
		orphans = append(orphans, pid)
	}
	// Each sleep ends a zombie of this process (a subreaper), unless
	// reaped; the bound only stops a broken test.
	for _, pid := range orphans {
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); os.IsNotExist(err) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("orphan %d is still a process (a zombie?) 30 s on", pid)
			}
		}
	}
}

// closedOutputEnv makes the test binary write to its closed standard
// error as a supervised program would log, instead of running the tests.
const closedOutputEnv = "SUPERVISE_TEST_CLOSED_OUTPUT"

func init() {
	if os.Getenv(closedOutputEnv) == "1" {
		SurviveClosedOutput()
		for range 3 {
			fmt.Fprintln(os.Stderr, "a log line nobody reads")
		}
		os.Exit(0)
	}
}

// A program whose log's reader went away (a pipe closed) lives on: the
// writes fail, rather than end it with SIGPIPE.
func TestSurvivesClosedOutput(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	defer w.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), closedOutputEnv+"=1")
	cmd.Stderr = w
	err = cmd.Run()
	if err != nil {
		t.Fatalf("the program writing to a closed pipe: %v, want exit 0", err)
	}
}

// A stop is under way for twice the grace period after it began, however
// long the period: one near the largest duration does not wrap round.
func TestStoppingWithTheLongestGracePeriod(t *testing.T) {
	for _, grace := range []time.Duration{time.Second, time.Duration(1<<63 - 1)} {
		c := &Child{opts: Options{GracePeriod: grace}, termAt: time.Now().Add(-time.Millisecond)}
		if !c.stopping() {
			t.Errorf("grace period %v: a stop begun a millisecond ago is not under way", grace)
		}
	}
	if c := (&Child{opts: Options{GracePeriod: time.Millisecond}, termAt: time.Now().Add(-time.Second)}); c.stopping() {
		t.Error("a stop begun 1000 grace periods ago is still under way")
	}
}

// Describe names the signal that killed a process by its name and
// number, not by a description that reads as a verb ("killed by
// killed").
func TestDescribeNamesTheSignal(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		sig  syscall.Signal
		want string
	}{
		{syscall.SIGKILL, "killed by SIGKILL (signal 9)"},
		{syscall.SIGTERM, "killed by SIGTERM (signal 15)"},
	} {
		cmd := exec.Command("sh", "-c", "kill -"+strconv.Itoa(int(tc.sig))+" $$")
		cmd.Run()
		ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
		if !ok || !ws.Signaled() {
			t.Fatalf("sh killing itself with %v: %v; want it killed", tc.sig, cmd.ProcessState)
		}
		if got := Describe(ws); got != tc.want {
			t.Errorf("Describe(%v) = %q; want %q", tc.sig, got, tc.want)
		}
	}
	if got := Describe(syscall.WaitStatus(3 << 8)); got != "exit status 3" {
		t.Errorf("Describe(exit 3) = %q; want \"exit status 3\"", got)
	}
}

// A stopped command (SIGSTOP, or SIGTTIN reading a terminal it does not
// own) cannot act on the SIGTERM of a stop until it is continued: the stop
// sends it SIGCONT too, so that it stops as asked within its grace period
// rather than being killed at its end.
func TestStopContinuesAStoppedCommand(t *testing.T) {
	sup := New(slog.New(slog.DiscardHandler))
	defer sup.Close()
	ready := filepath.Join(t.TempDir(), "ready")
	child, err := sup.Start(exec.Command("sh", "-c", "trap 'exit 3' TERM; : > "+ready+"; while :; do sleep 0.05; done"), Options{GracePeriod: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer child.Close()
	waitFor(t, "the command's trap", func() bool { _, err := os.Stat(ready); return err == nil })
	if err := child.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the command to be stopped", func() bool {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(child.Pid()) + "/stat")
		_, rest, _ := strings.Cut(string(b), ") ")
		return strings.HasPrefix(rest, "T")
	})
	// Killed at the grace period's end, it would exit 137.
	if code := child.Stop(); code != 3 {
		t.Fatalf("Stop = %d; want the command's own 3, of its TERM trap", code)
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s", what)
		}
	}
}
