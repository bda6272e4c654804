//go:build unix && !linux

package supervise

import (
	"os"
	"os/signal"
	"syscall"
)

// forwardedSignals are the signals passed on to the command; see the Linux
// version for what is left out and why.
func forwardedSignals() []os.Signal {
	var kept []os.Signal
	for _, s := range []os.Signal{
		syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGUSR1, syscall.SIGUSR2,
		syscall.SIGWINCH, syscall.SIGALRM, syscall.SIGVTALRM, syscall.SIGCONT, syscall.SIGIO,
	} {
		if !signal.Ignored(s) {
			kept = append(kept, s)
		}
	}
	return kept
}
