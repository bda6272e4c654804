package supervise

import (
	"os/exec"
	"syscall"
)

// setDeathSignal asks the kernel to send the command SIGKILL when the
// thread that forked it exits (prctl PR_SET_PDEATHSIG); see startCommand.
func setDeathSignal(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
