package wrapper

import "golang.org/x/sys/unix"

// hideFromCommand makes the wrapper not dumpable: a process of its user
// (the command, run as that user) can then no longer read its memory or
// its environment (/proc/PID/environ, /proc/PID/mem) nor ptrace it, which
// would hand it the credentials left out of its own environment. The
// kernel also makes no core dump of the wrapper.
func hideFromCommand() error { return unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0) }
