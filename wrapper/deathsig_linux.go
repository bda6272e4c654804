package wrapper

import (
	"os/exec"
	"syscall"
)

// setDeathSignal asks the kernel to send the command SIGKILL when its
// parent dies (prctl PR_SET_PDEATHSIG), so that a wrapper killed with
// SIGKILL, which can pass nothing on, takes its command with it instead of
// leaving it running unregistered under init.
//
// The kernel's "parent" here is the thread that forked the command, not the
// process: the signal fires when that OS thread exits. startCommand
// therefore forks from a goroutine locked to its thread that holds the
// thread until the command has been reaped.
func setDeathSignal(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
