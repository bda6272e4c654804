package supervise

import (
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/svcreg/svcreg/internal/procstat"
	"github.com/svcreg/svcreg/internal/retry"
	"golang.org/x/sys/unix"
)

// Leftovers are the program's live children other than owned ones and
// those it had before New (inherited, not the command's): once
// the command has exited, the descendants it left, which were re-parented
// to the program (a subreaper, or PID 1). Read from /proc: the children
// its threads list where the kernel lists them, else every process's
// parent; then each one's state and parent. A process that ends meanwhile
// is left out. None where /proc is another PID namespace's (its pids are
// not the program's: /proc/self is not the program's pid), which a
// sandbox may give.
func Leftovers() []int {
	self := os.Getpid()
	if !ownProc(self) {
		return nil
	}
	var pids []int
	for _, pid := range candidates() {
		if leftover(pid, self) && !slices.Contains(pids, pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// candidates are the pids that may be the program's children: those
// its threads list, else every process's.
func candidates() []int {
	pids, ok := children()
	if ok {
		return pids
	}
	dir, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	for _, e := range dir {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// children are the pids the program's threads list as their children
// (/proc/self/task/TID/children), and false where the kernel has no such
// lists.
func children() ([]int, bool) {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, false
	}
	var pids []int
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + t.Name() + "/children")
		if errors.Is(err, os.ErrNotExist) && t.Name() == strconv.Itoa(os.Getpid()) {
			return nil, false // the main thread is there: no lists
		}
		if err != nil {
			continue // a thread that ended
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids, true
}

// ownProc reports whether /proc is of the program's PID namespace:
// /proc/self is self, the program's pid.
func ownProc(self int) bool {
	me, err := os.Readlink("/proc/self")
	return err == nil && me == strconv.Itoa(self)
}

// leftover reports whether pid is a live (not a zombie) child of self
// that is neither owned nor inherited.
func leftover(pid, self int) bool {
	start, ok := unownedChild(pid, self)
	if !ok {
		return false
	}
	inheritedMu.Lock()
	defer inheritedMu.Unlock()
	return inherited[pid] != start
}

// unownedChild reports whether pid is a live (not a zombie) child of
// self that is not owned, and gives its start time (in clock ticks after
// boot), which tells it from a process that takes its pid later. Read
// from /proc/PID/stat: state, ppid ... starttime, fields 3, 4 and 22.
func unownedChild(pid, self int) (start string, ok bool) {
	f, err := procstat.Fields(pid)
	if err != nil || len(f) < 20 || f[0] == "Z" || f[0] == "X" || f[1] != strconv.Itoa(self) || isOwned(pid) {
		return "", false
	}
	return f[19], true
}

// inherited are the children the program had before it supervised
// anything, by pid, with their start times: processes started by what
// ran in its process before it was executed (a script's `agent & exec
// service-registry-wrapper ...`), which are not the command's and are
// left alone. The start time tells one of them from a process that took
// its pid since.
var (
	inheritedMu sync.Mutex
	inherited   map[int]string
)

// noteInherited records the program's children as inherited (New).
func noteInherited() {
	self := os.Getpid()
	if !ownProc(self) {
		return
	}
	found := map[int]string{}
	for _, pid := range candidates() {
		if start, ok := unownedChild(pid, self); ok {
			found[pid] = start
		}
	}
	inheritedMu.Lock()
	inherited = found
	inheritedMu.Unlock()
}

// StopLeftovers stops the leftovers: SIGTERM (and SIGCONT, for one that
// is stopped) to each, and to each that comes later (a leftover's own
// children come to the program as it ends), then, for those still
// running after grace or once hurry is closed, SIGKILL, again until none
// is left or killWait has passed. It looks for them every 20 ms at first,
// every 250 ms at most.
func StopLeftovers(grace, killWait time.Duration, hurry <-chan struct{}) (st Stopped) {
	self := os.Getpid()
	reached := map[int]bool{} // by pid tried: whether a signal reached it
	send := func(pid int, sig unix.Signal) bool {
		ok, err := signalLeftover(pid, self, sig)
		if err != nil && st.Err == nil {
			st.Err = err
		}
		reached[pid] = reached[pid] || ok
		return ok
	}
	defer func() { // on the named result: a deferred change to a copy returned is lost
		for _, ok := range reached {
			if ok {
				st.Signalled++
			}
		}
	}()
	timer := time.NewTimer(grace)
	defer timer.Stop()
	bo := retry.Backoff{Min: 20 * time.Millisecond, Max: 250 * time.Millisecond}
	for waiting := true; waiting; {
		pids := Leftovers()
		if len(pids) == 0 {
			return st
		}
		for _, pid := range pids {
			if _, tried := reached[pid]; !tried && send(pid, unix.SIGTERM) {
				send(pid, unix.SIGCONT)
			}
		}
		select {
		case <-time.After(bo.Next()):
		case <-timer.C:
			waiting = false
		case <-hurry:
			waiting = false
		}
	}
	end := time.Now().Add(killWait)
	bo.Reset()
	for {
		pids := Leftovers()
		if len(pids) == 0 || !time.Now().Before(end) {
			st.Left = pids
			return st
		}
		for _, pid := range pids {
			if !slices.Contains(st.Killed, pid) && send(pid, unix.SIGKILL) {
				st.Killed = append(st.Killed, pid)
			}
		}
		time.Sleep(bo.Next())
	}
}

// signalLeftover sends sig to pid if it is still a leftover, and reports
// whether it did: through a pidfd opened first, so that a pid that ended
// and was used again meanwhile is not signalled (the pidfd is of the
// process, the check after its opening sees its parent), or, where no
// pidfd can be had (a kernel before 5.3, a sandbox that refuses the
// call), with kill after the check, which a pid used again between the
// two could still meet. A process that is gone is no error.
func signalLeftover(pid, self int, sig unix.Signal) (bool, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, syscall.ESRCH) {
		return false, nil
	}
	if err == nil {
		defer unix.Close(fd)
	}
	if !leftover(pid, self) {
		return false, nil
	}
	if err != nil {
		err = os.NewSyscallError("kill", unix.Kill(pid, sig))
	} else {
		err = os.NewSyscallError("pidfd_send_signal", unix.PidfdSendSignal(fd, sig, nil, 0))
	}
	if errors.Is(err, syscall.ESRCH) {
		return false, nil
	}
	return err == nil, err
}
