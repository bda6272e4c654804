package supervise

import (
	"bytes"
	"errors"
	"os"
	"slices"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Leftovers are the program's live children other than owned ones: once
// the command has exited, the descendants it left, which were re-parented
// to the program (a subreaper, or PID 1). Read from /proc (each process's
// parent and state); a process that ends meanwhile is left out.
func Leftovers() []int {
	self := os.Getpid()
	dir, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range dir {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if leftover(pid, self) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// leftover reports whether pid is a live (not a zombie) child of self
// that is not owned.
func leftover(pid, self int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return false
	}
	f := bytes.Fields(stat[i+1:])
	if len(f) < 2 || string(f[0]) == "Z" || string(f[0]) == "X" {
		return false
	}
	ppid, err := strconv.Atoi(string(f[1]))
	return err == nil && ppid == self && !isOwned(pid)
}

// leftoverPoll is how often StopLeftovers looks for leftovers.
const leftoverPoll = 20 * time.Millisecond

// StopLeftovers stops the leftovers: SIGTERM (and SIGCONT, for one that
// is stopped) to each, and to each that comes later (a leftover's own
// children come to the program as it ends), then, for those still
// running after grace, SIGKILL, again until none is left or killWait
// has passed. It returns how many processes it signalled, and the pids
// it killed.
func StopLeftovers(grace, killWait time.Duration) (stopped int, killed []int) {
	self := os.Getpid()
	sent := map[int]bool{}
	deadline := time.Now().Add(grace)
	for {
		pids := Leftovers()
		if len(pids) == 0 {
			return len(sent), nil
		}
		if !time.Now().Before(deadline) {
			break
		}
		for _, pid := range pids {
			if !sent[pid] {
				sent[pid] = true
				signalLeftover(pid, self, unix.SIGTERM)
				signalLeftover(pid, self, unix.SIGCONT)
			}
		}
		time.Sleep(leftoverPoll)
	}
	end := time.Now().Add(killWait)
	for {
		pids := Leftovers()
		if len(pids) == 0 || !time.Now().Before(end) {
			return len(sent), killed
		}
		for _, pid := range pids {
			if signalLeftover(pid, self, unix.SIGKILL) && !slices.Contains(killed, pid) {
				killed = append(killed, pid)
				sent[pid] = true
			}
		}
		time.Sleep(leftoverPoll)
	}
}

// signalLeftover sends sig to pid if it is still a leftover: through a
// pidfd opened first, so that a pid that ended and was used again
// meanwhile is not signalled (the pidfd is of the process, the check
// after its opening sees its parent), or, where the kernel has no
// pidfds, with kill.
func signalLeftover(pid, self int, sig unix.Signal) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, syscall.ENOSYS) {
		return leftover(pid, self) && unix.Kill(pid, sig) == nil
	}
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return leftover(pid, self) && unix.PidfdSendSignal(fd, sig, nil, 0) == nil
}
