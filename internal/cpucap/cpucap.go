// Package cpucap runs processes under a CPU limit of their own, a Linux
// control group's CPU bandwidth (cgroup v2's cpu.max, or v1's CFS quota),
// as if each group had a machine of that many cores to itself: for
// benchmarks that compare deployments of different sizes (one server
// against three, each on "its own machine") on one machine.
//
// Creating a group needs write access to the cgroup file system's CPU
// controller, which in practice means root; New says what is missing
// otherwise. On cgroup v2, New enables the cpu controller for the root's
// children if it is not (it stays enabled), and fails where the root
// holds processes of its own and so cannot (inside a container's cgroup
// namespace).
package cpucap

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Period is the bandwidth period: a group may use cores×Period of CPU
// time in each Period. Short, so that a group that used its share waits
// milliseconds, not the default tenth of a second, and a request to it in
// that time is late by as little.
const Period = 10 * time.Millisecond

// Roots of the cgroup v2 (unified) and v1 CPU hierarchies, where a group
// is created; the tests point them at directories of their own.
var (
	v2Root = "/sys/fs/cgroup"
	v1Root = "/sys/fs/cgroup/cpu"
)

// Group is a control group with a CPU limit.
type Group struct {
	dir string
}

// New creates a group allowed cores CPUs' worth of time, e.g. 0.25 for a
// quarter of one, named "cpucap-" + name + "-" + this process's pid: name
// must be unique among the process's open groups. Close removes it. New
// also removes the empty groups it left behind for processes that are
// gone (killed before they closed their groups).
func New(name string, cores float64) (*Group, error) {
	if !(cores > 0) || math.IsInf(cores, 0) {
		return nil, fmt.Errorf("cpucap: cores must be a positive number, got %v", cores)
	}
	quota := int64(math.Round(cores * float64(Period.Microseconds())))
	if quota < 1000 {
		// The kernel refuses a quota under 1 ms.
		return nil, fmt.Errorf("cpucap: %v cores is under the smallest quota (1ms in each %v)", cores, Period)
	}
	name = fmt.Sprintf("%s%s-%d", prefix, name, os.Getpid())
	period := strconv.FormatInt(Period.Microseconds(), 10)
	pruneGone(v2Root)
	pruneGone(v1Root)
	g, err2 := v2Group(name, quota, period)
	if err2 == nil {
		return g, nil
	}
	g, err1 := v1Group(name, quota, period)
	if err1 == nil {
		return g, nil
	}
	return nil, fmt.Errorf("cpucap: cannot create a CPU-limited control group (needs root and a cgroup CPU controller): %w",
		errors.Join(fmt.Errorf("cgroup v2 at %s: %w", v2Root, err2), fmt.Errorf("cgroup v1 at %s: %w", v1Root, err1)))
}

// prefix begins the name of every group New creates.
const prefix = "cpucap-"

// pruneGone removes the groups under root that New created for a process
// that no longer runs. The kernel refuses to remove a group that still
// has processes, so a group whose processes outlived the one that made it
// stays.
func pruneGone(root string) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || !strings.HasPrefix(name, prefix) {
			continue
		}
		pid, err := strconv.Atoi(name[strings.LastIndexByte(name, '-')+1:])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); errors.Is(err, os.ErrNotExist) {
			os.Remove(filepath.Join(root, name))
		}
	}
}

// v2Group creates the group under the unified hierarchy, whose root must
// offer the cpu controller to its children.
func v2Group(name string, quota int64, period string) (*Group, error) {
	controllers, err := os.ReadFile(filepath.Join(v2Root, "cgroup.controllers"))
	if err != nil {
		return nil, err
	}
	if !slices.Contains(strings.Fields(string(controllers)), "cpu") {
		return nil, errors.New("no cpu controller")
	}
	subtree := filepath.Join(v2Root, "cgroup.subtree_control")
	enabled, err := os.ReadFile(subtree)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(strings.Fields(string(enabled)), "cpu") {
		if err := os.WriteFile(subtree, []byte("+cpu"), 0o644); err != nil {
			return nil, err
		}
	}
	g := &Group{dir: filepath.Join(v2Root, name)}
	if err := os.Mkdir(g.dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(g.dir, "cpu.max"), fmt.Appendf(nil, "%d %s", quota, period), 0o644); err != nil {
		g.Close()
		return nil, err
	}
	return g, nil
}

// v1Group creates the group under the v1 cpu hierarchy.
func v1Group(name string, quota int64, period string) (*Group, error) {
	if _, err := os.Stat(filepath.Join(v1Root, "cpu.cfs_quota_us")); err != nil {
		return nil, err
	}
	g := &Group{dir: filepath.Join(v1Root, name)}
	if err := os.Mkdir(g.dir, 0o755); err != nil {
		return nil, err
	}
	// The period first: a quota is checked against the period in force.
	for _, w := range []struct{ file, value string }{
		{"cpu.cfs_period_us", period},
		{"cpu.cfs_quota_us", strconv.FormatInt(quota, 10)},
	} {
		if err := os.WriteFile(filepath.Join(g.dir, w.file), []byte(w.value), 0o644); err != nil {
			g.Close()
			return nil, err
		}
	}
	return g, nil
}

// Add moves process pid, all its threads, into the group; the threads and
// children it starts later are in it too.
func (g *Group) Add(pid int) error {
	if pid <= 0 {
		// The kernel takes 0 as the writing process: this one.
		return fmt.Errorf("cpucap: add process %d to %s: not a process id", pid, g.dir)
	}
	if err := os.WriteFile(filepath.Join(g.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return fmt.Errorf("cpucap: add process %d to %s: %w", pid, g.dir, err)
	}
	return nil
}

// Close removes the group. Its processes must have exited (the kernel
// refuses to remove a group that has any); it waits up to a second for the
// last to be gone.
func (g *Group) Close() error {
	var err error
	for deadline := time.Now().Add(time.Second); ; time.Sleep(10 * time.Millisecond) {
		if err = os.Remove(g.dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cpucap: remove %s: %w", g.dir, err)
		}
	}
}
