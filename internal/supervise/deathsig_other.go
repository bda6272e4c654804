//go:build unix && !linux

package supervise

import (
	"os/exec"
	"syscall"
)

// setDeathSignal does nothing: only Linux has a parent-death signal.
func setDeathSignal(cmd *exec.Cmd, sig syscall.Signal) {}
