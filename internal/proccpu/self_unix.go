//go:build unix

package proccpu

import (
	"syscall"
	"time"
)

// Self returns the CPU time this process has used (getrusage).
func Self() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
