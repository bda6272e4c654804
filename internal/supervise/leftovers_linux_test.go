package supervise

import (
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// StopLeftovers says how many processes its signals reached: the
// processes a command left behind, one that ends on SIGTERM and one that
// has to be killed.
func TestStopLeftoversCountsTheProcessesItSignalled(t *testing.T) {
	sup := New(slog.New(slog.DiscardHandler))
	defer sup.Close()
	cmd := exec.Command("sh", "-c", `sleep 60 >/dev/null & echo $!; sh -c 'trap "" TERM; exec sleep 61' >/dev/null & echo $!; exit 0`)
	var out strings.Builder
	cmd.Stdout = &out
	child, err := sup.Start(cmd, Options{GracePeriod: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	<-child.Done()
	child.Close()
	var want []int
	for _, f := range strings.Fields(out.String()) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("the command's output %q: %v", out.String(), err)
		}
		want = append(want, pid)
	}
	// The grace ends at once, by hurry: the one that ignores SIGTERM is
	// killed without a wait.
	hurry := make(chan struct{})
	close(hurry)
	st := StopLeftovers(time.Hour, 30*time.Second, hurry)
	if st.Err != nil || len(st.Left) > 0 {
		t.Fatalf("StopLeftovers: %+v", st)
	}
	if st.Signalled != len(want) {
		t.Errorf("StopLeftovers says its signals reached %d processes; want %d (the leftovers %v; killed %v)", st.Signalled, len(want), want, st.Killed)
	}
	for _, pid := range st.Killed {
		if !slices.Contains(want, pid) {
			t.Errorf("StopLeftovers killed %d, which is not a leftover %v", pid, want)
		}
	}
}

// A child the program had before it supervised anything (what ran in its
// process before it was executed started it: `agent & exec
// service-registry-wrapper ...`) is not one the command left: it is not a
// leftover, and StopLeftovers leaves it running.
func TestInheritedChildrenAreNotLeftovers(t *testing.T) {
	agent := exec.Command("sleep", "60")
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	defer agent.Wait()
	defer agent.Process.Kill()
	sup := New(slog.New(slog.DiscardHandler))
	defer sup.Close()
	pidFile := filepath.Join(t.TempDir(), "pid")
	cmd := exec.Command("sh", "-c", `sleep 61 & echo $! > "$1"; exit 0`, "sh", pidFile)
	child, err := sup.Start(cmd, Options{GracePeriod: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	<-child.Done()
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	left, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("the pid file %q: %v", b, err)
	}
	pids := Leftovers()
	if !slices.Contains(pids, left) || slices.Contains(pids, agent.Process.Pid) {
		t.Errorf("Leftovers() = %v; want the command's %d, not the program's own earlier child %d", pids, left, agent.Process.Pid)
	}
	hurry := make(chan struct{})
	close(hurry)
	st := StopLeftovers(time.Hour, 30*time.Second, hurry)
	if st.Err != nil || len(st.Left) > 0 {
		t.Fatalf("StopLeftovers: %+v", st)
	}
	// Still running: a signal to it is delivered, and it has not exited
	// (the reaper stops only at Close).
	if err := agent.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("StopLeftovers stopped the program's own earlier child %d: %v", agent.Process.Pid, err)
	}
	if status, err := os.ReadFile("/proc/" + strconv.Itoa(agent.Process.Pid) + "/status"); err != nil || strings.Contains(string(status), "\nState:\tZ") {
		t.Errorf("the program's own earlier child %d was stopped: %v\n%.100s", agent.Process.Pid, err, status)
	}
	child.Close()
}
