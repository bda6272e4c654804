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
// default action, which ends most programs, and whether it blocks it
// (SigBlk, the main thread's mask: a program that reads its signals from
// a signalfd keeps them blocked, and one may hold a block for a moment
// while it forks); known is false when that cannot be read.
func handlesSignal(pid int, sig syscall.Signal) (handles, blocked, known bool) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false, false, false
	}
	defer f.Close()
	bit := uint64(1) << (uint(sig) - 1)
	masks := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != "SigBlk" && name != "SigIgn" && name != "SigCgt" {
			continue
		}
		m, err := strconv.ParseUint(strings.TrimSpace(value), 16, 64)
		if err != nil {
			return false, false, false
		}
		switch {
		case m&bit == 0:
		case name == "SigBlk":
			blocked = true
		default:
			handles = true
		}
		masks++
	}
	if masks != 3 {
		return false, false, false
	}
	return handles, blocked, true
}
