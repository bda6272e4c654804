// Package proccpu reads the CPU time (user and system) processes have
// used, and how often their threads slept, for benchmarks and load tools
// that report what a deployment cost.
package proccpu

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/svcreg/svcreg/internal/procstat"
)

// Of returns the CPU time process pid has used, from /proc/<pid>/stat (so
// on Linux only): its 14th and 15th fields, in clock ticks of USER_HZ,
// which Linux fixes at 100 a second for user space.
func Of(pid int) (time.Duration, error) {
	f, err := procstat.Fields(pid)
	if err != nil {
		return 0, err
	}
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat: %q", pid, f)
	}
	var ticks int64
	for _, v := range f[11:13] { // utime and stime, fields 14 and 15
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("unexpected /proc/%d/stat: %q", pid, f)
		}
		ticks += n
	}
	return time.Duration(ticks) * (time.Second / 100), nil
}

// Sleeps returns how many times the threads of process pid have given up
// their CPU to wait, each a sleep and a wake-up to pay for: the sum of
// voluntary_ctxt_switches over /proc/<pid>/task/*/status (Linux only).
// Threads that have ended no longer count.
func Sleeps(pid int) (int64, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil {
		return 0, err
	}
	if len(tasks) == 0 {
		return 0, fmt.Errorf("no threads of process %d in /proc", pid)
	}
	var total int64
	for _, task := range tasks {
		raw, err := os.ReadFile(task)
		if err != nil {
			continue // a thread that ended since the Glob
		}
		for line := range strings.Lines(string(raw)) {
			if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				if err != nil {
					return 0, fmt.Errorf("unexpected %s: %q", task, line)
				}
				total += n
			}
		}
	}
	return total, nil
}
