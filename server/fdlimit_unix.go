//go:build unix

package server

import "golang.org/x/sys/unix"

// descriptorLimit is the process's RLIMIT_NOFILE (the soft limit, which Go
// raises to the hard one at startup), or 0 if unknown.
func descriptorLimit() int {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil || r.Cur == 0 {
		return 0
	}
	return int(min(r.Cur, 1<<30))
}
