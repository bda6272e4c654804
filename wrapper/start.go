package wrapper

import (
	"os/exec"
	"runtime"
)

// startCommand starts cmd, with the parent-death signal unless
// cfg.NoParentDeathSignal. The fork happens on a goroutine locked to its OS
// thread, and that goroutine keeps the thread until release is closed
// (close it once the command has been reaped): Linux sends the parent-death
// signal when the forking thread exits, and the Go runtime ends a thread
// when a goroutine locked to it returns, so an unlocked fork could land on
// a thread that some other locked goroutine later takes and ends, killing
// the command early. The goroutine returns still locked: its thread ends
// with it, after the command has gone.
func startCommand(cmd *exec.Cmd, cfg Config, release <-chan struct{}) error {
	if cfg.NoParentDeathSignal {
		return cmd.Start()
	}
	setDeathSignal(cmd)
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := cmd.Start()
		started <- err
		if err == nil {
			<-release
		}
	}()
	return <-started
}
