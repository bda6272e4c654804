package supervise

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// fromTerminal reports whether sig, which the program got, most likely
// reached the command as well from the terminal: it is one a terminal sends
// to its foreground process group (SIGINT for Ctrl-C, SIGWINCH for a new
// window size), the command is in the program's process group, and that
// group is the foreground group of the program's controlling terminal.
// Passed on, the command would get it twice.
//
// Go does not tell a signal from the terminal from one sent with kill, so
// the same signal sent to the program alone is not passed on either then.
// Hence only these two: SIGQUIT (Ctrl-\) is a container's stop signal as
// often (the nginx image's), as is SIGINT, rarely; and never as PID 1,
// which a container runtime with a terminal (docker run -t) makes the
// foreground group and sends its stop signal to.
func (c *Child) fromTerminal(sig os.Signal) bool {
	if sig != syscall.SIGINT && sig != syscall.SIGWINCH || os.Getpid() == 1 {
		return false
	}
	group := unix.Getpgrp()
	if g, err := unix.Getpgid(c.Pid()); err != nil || g != group {
		return false
	}
	tty, err := unix.Open("/dev/tty", unix.O_RDONLY|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return false // no controlling terminal
	}
	defer unix.Close(tty)
	fg, err := unix.IoctlGetInt(tty, unix.TIOCGPGRP)
	return err == nil && fg == group
}
