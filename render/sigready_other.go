//go:build !linux

package render

import "syscall"

// handlesSignal cannot tell here: a reload by signal waits SignalSettle
// after the command's start instead.
func handlesSignal(pid int, sig syscall.Signal) (handles, blocked, known bool) {
	return false, false, false
}
