//go:build unix && !linux

package supervise

import "os/exec"

// setDeathSignal does nothing: only Linux has a parent-death signal.
func setDeathSignal(cmd *exec.Cmd) {}
