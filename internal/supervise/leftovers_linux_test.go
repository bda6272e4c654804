package supervise

import (
	"log/slog"
	"os/exec"
	"slices"
	"strconv"
	"strings"
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
