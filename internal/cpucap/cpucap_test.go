package cpucap

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/proccpu"
)

// TestSpin is the busy child of TestGroupLimitsCPU; it does nothing unless
// CPUCAP_SPIN is set.
func TestSpin(t *testing.T) {
	if os.Getenv("CPUCAP_SPIN") == "" {
		t.Skip("TestGroupLimitsCPU's busy child process")
	}
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); {
	}
}

// A process that would use a whole core uses about the group's share of
// one once added to it.
func TestGroupLimitsCPU(t *testing.T) {
	const cores = 0.2
	g, err := New("cpucap-test", cores)
	if err != nil {
		t.Skipf("the benchmarks that run servers on machines of their own cannot run here: %v", err)
	}
	defer func() {
		if err := g.Close(); err != nil {
			t.Error(err)
		}
	}()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestSpin$")
	cmd.Env = append(os.Environ(), "CPUCAP_SPIN=1", "GOMAXPROCS=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	if err := g.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	cpu0, err := proccpu.Of(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	time.Sleep(time.Second)
	cpu1, err := proccpu.Of(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	// Unlimited, the child would use about the whole second (less on a
	// busy machine); limited, a fifth of it, give or take the 10 ms clock
	// ticks the CPU time is counted in. It must have run, or the bound
	// says nothing (a machine too busy to give it any CPU at all).
	used := (cpu1 - cpu0).Seconds() / time.Since(start).Seconds()
	t.Logf("child used %.2f cores under a limit of %v", used, cores)
	if used > 2*cores {
		t.Errorf("child used %.2f cores, limit %v", used, cores)
	}
	if used == 0 {
		t.Error("child did not run")
	}
}

func TestNewRefusesTooSmall(t *testing.T) {
	for _, cores := range []float64{0, -1, 0.05} {
		if g, err := New("cpucap-test", cores); err == nil {
			g.Close()
			t.Errorf("New(%v) succeeded", cores)
		}
	}
}

// pruneGone removes the groups of processes that are gone, and only those.
func TestPruneGone(t *testing.T) {
	root := t.TempDir()
	gone := "cpucap-bench-99999999" // over any pid_max
	mine := fmt.Sprintf("cpucap-bench-%d", os.Getpid())
	running := "cpucap-bench-1" // init, which runs
	other := "other-99999999"
	for _, d := range []string{gone, mine, running, other} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pruneGone(root)
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if want := []string{running, mine, other}; !slices.Equal(left, want) {
		t.Errorf("left %q, want %q", left, want)
	}
}
