package supervise

import (
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// forwardedSignals are the signals passed on to the command: every signal a
// process can catch except SIGCHLD (the program's own), the fault signals
// (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT: a fault is
// the program's), the terminal job-control signals (SIGTSTP, SIGTTIN,
// SIGTTOU: the program stops with its command, as the shell expects),
// SIGXCPU and SIGXFSZ (the program's own limits), SIGPIPE (raised by the
// program's own writes) and SIGURG, SIGPROF (the Go runtime's). Realtime
// signals 34..64 are included; 32 and 33 belong to the C library. A signal
// ignored when the program started (nohup) stays ignored.
func forwardedSignals() []os.Signal {
	sigs := []os.Signal{
		unix.SIGHUP, unix.SIGINT, unix.SIGQUIT, unix.SIGTERM, unix.SIGUSR1, unix.SIGUSR2,
		unix.SIGWINCH, unix.SIGALRM, unix.SIGVTALRM, unix.SIGCONT, unix.SIGIO, unix.SIGPWR,
		unix.SIGSTKFLT,
	}
	for n := 34; n <= 64; n++ {
		sigs = append(sigs, syscall.Signal(n))
	}
	kept := sigs[:0]
	for _, s := range sigs {
		if !signal.Ignored(s) {
			kept = append(kept, s)
		}
	}
	return kept
}
