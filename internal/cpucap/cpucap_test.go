package cpucap

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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
	g, err := New("test", cores)
	if err != nil {
		if os.Geteuid() == 0 && hasCPUController() {
			t.Fatal(err)
		}
		t.Skipf("not root, or no cgroup CPU controller: the benchmarks that run servers on machines of their own cannot run here: %v", err)
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
	throttled0 := throttled(t, g)
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
	periods := throttled(t, g) - throttled0
	t.Logf("child used %.2f cores under a limit of %v, throttled in %d periods", used, cores, periods)
	if used > 2*cores {
		t.Errorf("child used %.2f cores, limit %v", used, cores)
	}
	// The kernel held it back: it was limited, not merely short of CPU.
	if periods == 0 {
		t.Error("child never throttled")
	}
}

// throttled is how many periods g's processes were held back in, from its
// cpu.stat (v1 and v2 both keep nr_throttled).
func throttled(t *testing.T, g *Group) int64 {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(g.dir, "cpu.stat"))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(raw)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "nr_throttled "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("cpu.stat: %q", line)
			}
			return n
		}
	}
	t.Fatalf("no nr_throttled in cpu.stat:\n%s", raw)
	return 0
}

// hasCPUController reports whether this machine has a cgroup CPU
// controller where New looks for one.
func hasCPUController() bool {
	if _, err := os.Stat(filepath.Join(v1Root, "cpu.cfs_quota_us")); err == nil {
		return true
	}
	raw, err := os.ReadFile(filepath.Join(v2Root, "cgroup.controllers"))
	return err == nil && slices.Contains(strings.Fields(string(raw)), "cpu")
}

// fakeRoots points v2Root and v1Root at directories of the test's own,
// holding the files New reads there (nil: none, the hierarchy is missing).
func fakeRoots(t *testing.T, v2, v1 map[string]string) {
	for _, r := range []struct {
		root  *string
		files map[string]string
	}{{&v2Root, v2}, {&v1Root, v1}} {
		dir := t.TempDir()
		for name, content := range r.files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		old := *r.root
		*r.root = dir
		t.Cleanup(func() { *r.root = old })
	}
}

// New writes the limit as each cgroup version wants it: v2 enables the cpu
// controller for the root's children, then writes cpu.max; v1 writes the
// period, then the quota. A missing v2 leaves it to v1.
func TestNewWritesLimit(t *testing.T) {
	t.Run("v2", func(t *testing.T) {
		fakeRoots(t, map[string]string{"cgroup.controllers": "cpuset cpu io memory", "cgroup.subtree_control": "memory"}, nil)
		g, err := New("test", 0.25)
		if err != nil {
			t.Fatal(err)
		}
		for file, want := range map[string]string{
			filepath.Join(v2Root, "cgroup.subtree_control"): "+cpu",
			filepath.Join(g.dir, "cpu.max"):                 "2500 10000",
		} {
			if got, _ := os.ReadFile(file); string(got) != want {
				t.Errorf("%s: %q, want %q", file, got, want)
			}
		}
		if want := filepath.Join(v2Root, fmt.Sprintf("cpucap-test-%d", os.Getpid())); g.dir != want {
			t.Errorf("group %s, want %s", g.dir, want)
		}
	})
	t.Run("v1", func(t *testing.T) {
		fakeRoots(t, nil, map[string]string{"cpu.cfs_quota_us": "-1", "cpu.cfs_period_us": "100000"})
		g, err := New("test", 0.57)
		if err != nil {
			t.Fatal(err)
		}
		for file, want := range map[string]string{"cpu.cfs_period_us": "10000", "cpu.cfs_quota_us": "5700"} {
			if got, _ := os.ReadFile(filepath.Join(g.dir, file)); string(got) != want {
				t.Errorf("%s: %q, want %q", file, got, want)
			}
		}
	})
	t.Run("neither", func(t *testing.T) {
		fakeRoots(t, nil, nil)
		if _, err := New("test", 0.25); err == nil || !strings.Contains(err.Error(), "needs root") {
			t.Errorf("New: %v, want an error that says what it needs", err)
		}
	})
}

// Add refuses what is not a process id: the kernel would move the writing
// process itself.
func TestAddRefusesZero(t *testing.T) {
	fakeRoots(t, nil, map[string]string{"cpu.cfs_quota_us": "-1"})
	g, err := New("test", 0.25)
	if err != nil {
		t.Fatal(err)
	}
	for _, pid := range []int{0, -1} {
		if err := g.Add(pid); err == nil {
			t.Errorf("Add(%d) succeeded", pid)
		}
	}
	if _, err := os.Stat(filepath.Join(g.dir, "cgroup.procs")); err == nil {
		t.Error("Add wrote cgroup.procs")
	}
}

func TestNewRefusesTooSmall(t *testing.T) {
	for _, cores := range []float64{0, -1, 0.05, math.NaN(), math.Inf(1)} {
		if g, err := New("test", cores); err == nil {
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
	notPid := "cpucap-bench-x"
	busy := "cpucap-busy-99999998" // a group with processes left: not empty
	for _, d := range []string{gone, mine, running, other, notPid, busy} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, busy, "cgroup.procs"), []byte("1234"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := "cpucap-file-99999999"
	if err := os.WriteFile(filepath.Join(root, file), nil, 0o644); err != nil {
		t.Fatal(err)
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
	want := []string{running, notPid, mine, busy, file, other}
	slices.Sort(want)
	if !slices.Equal(left, want) {
		t.Errorf("left %q, want %q", left, want)
	}
}
