package wrapper

import (
	"errors"
	"log/slog"
	"os"
	"strconv"
	"syscall"
)

// reap collects the exit status of every child of the process, on each
// SIGCHLD, until stop is closed. The command's status goes to exited;
// other children are orphaned descendants of the command that were
// re-parented to the wrapper (a subreaper, or PID 1) and are reaped so that
// they do not linger as zombies. Since one loop reaps everything, it never
// steals the command's status from another waiter.
func reap(chld <-chan os.Signal, stop <-chan struct{}, command int, exited chan<- syscall.WaitStatus, log *slog.Logger) {
	for {
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if err != nil || pid <= 0 {
				break // no child has exited (ECHILD: no child at all)
			}
			if pid == command {
				exited <- ws
				continue
			}
			log.Debug("reaped an orphaned process", "pid", pid, "status", describe(ws))
		}
		select {
		case <-chld:
		case <-stop:
			return
		}
	}
}

// describe says how a process ended, for logs.
func describe(ws syscall.WaitStatus) string {
	if ws.Signaled() {
		return "killed by " + ws.Signal().String()
	}
	return "exit " + strconv.Itoa(ws.ExitStatus())
}
