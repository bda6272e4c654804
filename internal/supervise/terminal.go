package supervise

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// fromTerminal reports whether sig, which the program got, most likely
// reached the command as well from the terminal: it is one the terminal
// sends (SIGINT for Ctrl-C, SIGQUIT for Ctrl-\, SIGWINCH for a new window
// size) to its foreground process group, and the command is in the
// program's process group, which is that group. Passed on, the command
// would get it twice. (Sent to the program alone with kill while it is the
// terminal's foreground job, such a signal is not passed on either.)
func (c *Child) fromTerminal(sig os.Signal) bool {
	if sig != syscall.SIGINT && sig != syscall.SIGQUIT && sig != syscall.SIGWINCH {
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
