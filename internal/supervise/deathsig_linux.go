package supervise

import (
	"os/exec"
	"syscall"
)

// setDeathSignal asks the kernel to send the command sig when the thread
// that forked it exits (prctl PR_SET_PDEATHSIG); see startCommand.
func setDeathSignal(cmd *exec.Cmd, sig syscall.Signal) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = sig
}
