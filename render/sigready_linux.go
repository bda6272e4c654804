package render

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// handlesSignal reports whether process pid catches or ignores sig (its
// SigCgt and SigIgn in /proc/PID/status), so that sig does not take its
// default action, which ends most programs; known is false when that
// cannot be read. A signal blocked (SigBlk, the main thread's mask, which
// a program may hold for a moment while it forks) does not count.
func handlesSignal(pid int, sig syscall.Signal) (handles, known bool) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false, false
	}
	defer f.Close()
	bit := uint64(1) << (uint(sig) - 1)
	masks := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != "SigIgn" && name != "SigCgt" {
			continue
		}
		m, err := strconv.ParseUint(strings.TrimSpace(value), 16, 64)
		if err != nil {
			return false, false
		}
		if m&bit != 0 {
			return true, true
		}
		masks++
	}
	return false, masks == 2
}
