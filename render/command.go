package render

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/svcreg/svcreg/internal/supervise"
)

// CommandError is a check or reload command that failed.
type CommandError struct {
	Command string
	Err     error
	Output  string // the last of its combined output
}

func (e *CommandError) Error() string {
	msg := fmt.Sprintf("%q: %v", e.Command, e.Err)
	if e.Output != "" {
		msg += ": " + e.Output
	}
	return msg
}

func (e *CommandError) Unwrap() error { return e.Err }

// maxOutput is how much of a command's output an error keeps.
const maxOutput = 2048

// runCommand runs command with sh -c in its own process group. When timeout
// passes or ctx is done, the whole group is killed, so a reload script's
// children do not linger.
func runCommand(ctx context.Context, command string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.Command("/bin/sh", "-c", command)
	// The renderer's credentials stay with it: a check's output goes to
	// logs, /healthz and the status page (and HAProxy expands ${VAR}).
	cmd.Env = childEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A command that leaves a background child holding its output open
	// (nohup, a daemon that does not close its descriptors) holds us up a
	// second, then its output is closed; it succeeded if it exited 0.
	cmd.WaitDelay = time.Second
	// Owned: a reaper of an --exec command leaves it to cmd.Wait.
	release, err := supervise.StartOwned(cmd)
	if err != nil {
		return "", &CommandError{Command: command, Err: err}
	}
	defer release()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
		if errors.Is(err, exec.ErrWaitDelay) {
			err = nil
		}
	case <-ctx.Done():
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		err = ctx.Err()
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("killed: still running after %s", timeout)
		}
	}
	output := strings.TrimSpace(out.String())
	if err != nil {
		if len(output) > maxOutput {
			output = "…" + output[len(output)-maxOutput:]
		}
		return output, &CommandError{Command: command, Err: err, Output: output}
	}
	return output, nil
}
