package supervise

import (
	"log/slog"
	"os"
	"syscall"
	"time"
)

// ownedRetry is how soon the reaper looks again when a child that
// exec.Cmd.Wait collects is a zombie ahead of the others: it leaves that
// one to its waiter, which collects it promptly.
const ownedRetry = 20 * time.Millisecond

// reap collects the exit status of every child of the process, on each
// SIGCHLD, until stop is closed. The command's status goes to exited
// (once); other children are orphaned descendants of the command that were
// re-parented to the program (a subreaper, or PID 1) and are reaped so that
// they do not linger as zombies. Children started with StartOwned are left
// to their own waiter. Since one loop reaps everything else, it never
// steals the command's status from another waiter.
func reap(chld <-chan os.Signal, stop <-chan struct{}, command int, exited func(syscall.WaitStatus), log *slog.Logger) {
	exited = once(exited, log)
	var retry <-chan time.Time
	for {
		if reapOnce(command, exited, log) {
			retry = time.After(ownedRetry)
		} else {
			retry = nil
		}
		select {
		case <-chld:
		case <-retry:
		case <-stop:
			return
		}
	}
}

// once calls exited for the command's status only: an orphan that took
// the command's pid after the command was reaped (the reaper goes on until
// the program closes the Child) is reaped as any other.
func once(exited func(syscall.WaitStatus), log *slog.Logger) func(syscall.WaitStatus) {
	done := false
	return func(ws syscall.WaitStatus) {
		if done {
			log.Debug("reaped an orphaned process that took the command's pid", "status", Describe(ws))
			return
		}
		done = true
		exited(ws)
	}
}

// reapOnce reaps every child that has exited and is not owned; blocked
// reports that an owned zombie is in the way of the others.
func reapOnce(command int, exited func(syscall.WaitStatus), log *slog.Logger) (blocked bool) {
	starting.Lock()
	defer starting.Unlock()
	for {
		pid, blocked := nextZombie(command)
		if pid == 0 {
			return blocked
		}
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || got <= 0 {
			return blocked // ECHILD: no child at all
		}
		if got == command {
			exited(ws)
			continue
		}
		log.Debug("reaped an orphaned process", "pid", got, "status", Describe(ws))
	}
}
