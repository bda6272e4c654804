package render

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// handlesSignal reports whether process pid catches sig (SigCgt in
// /proc/PID/status), so that sig does not take its default action, which
// ends most programs, and whether it blocks it (SigBlk, the main
// thread's mask: a program that reads its signals from a signalfd keeps
// them blocked, and one may hold a block for a moment while it forks);
// known is false when that cannot be read. A signal the process ignores
// (SigIgn) is neither handled nor taken as blocked, blocked or not: it is
// lost, as a SIGUSR2 is that reaches HAProxy's master while it starts,
// when it ignores it (and blocks it) for a moment after reading its
// configuration and before it catches it.
func handlesSignal(pid int, sig syscall.Signal) (handles, blocked, known bool) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false, false, false
	}
	defer f.Close()
	bit := uint64(1) << (uint(sig) - 1)
	masks, ignored := 0, false
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
		case name == "SigIgn":
			ignored = true
		default:
			handles = true
		}
		masks++
	}
	if masks != 3 {
		return false, false, false
	}
	if ignored {
		return false, false, true
	}
	return handles, blocked, true
}
