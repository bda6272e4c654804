package supervise

import (
	"log/slog"
	"os"

	"golang.org/x/sys/unix"
)

// becomeSubreaper makes the program a child subreaper (prctl
// PR_SET_CHILD_SUBREAPER): descendants of the command orphaned by their
// parent's exit are re-parented to the program, which reaps them, instead
// of to init. PID 1 gets them anyway.
func becomeSubreaper(log *slog.Logger) {
	if os.Getpid() == 1 {
		log.Debug("running as PID 1: orphaned processes are reaped")
		return
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		log.Warn("cannot become a child subreaper; orphans of the command go to init", "err", err)
		return
	}
	log.Debug("child subreaper: orphaned descendants of the command are reaped")
}
