package supervise

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// nextZombie is a child that has exited and is not owned, without reaping
// it (waitid with WNOWAIT); 0 if there is none. blocked reports an owned
// zombie, which waitid keeps returning until its waiter collects it. The
// command itself is found like any other child.
func nextZombie(int) (pid int, blocked bool) {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, false // ECHILD: no child at all
		}
		pid := siginfoPid(&info)
		if pid > 0 && isOwned(pid) {
			return 0, true
		}
		return pid, false
	}
}

// siginfoPid is si_pid of a SIGCHLD siginfo: the first field of the union
// that follows si_signo, si_errno and si_code, aligned to the word size.
// Linux leaves it 0 when WNOHANG finds no child.
func siginfoPid(info *unix.Siginfo) int {
	off := uintptr(12)
	if unsafe.Sizeof(uintptr(0)) == 8 {
		off = 16
	}
	return int(*(*int32)(unsafe.Add(unsafe.Pointer(info), off)))
}
