package render

import (
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
	// Only the end of the output is kept: a check that prints megabytes
	// (a loop, a dump) must not take the renderer's memory with it.
	out := &tailBuffer{max: keptOutput}
	cmd.Stdout, cmd.Stderr = out, out
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
		if len(output) > maxOutput || out.dropped() {
			output = "…" + output[max(0, len(output)-maxOutput):]
		}
		return output, &CommandError{Command: command, Err: err, Output: output}
	}
	return output, nil
}

// keptOutput is how much of a command's output runCommand keeps while it
// runs: the end of it, more than an error quotes (maxOutput).
const keptOutput = 64 << 10

// tailBuffer keeps the last max bytes written to it (up to twice that
// between trims). Used as a command's stdout and stderr both, it is
// written by one goroutine at a time (os/exec), and read after Wait.
type tailBuffer struct {
	b       []byte
	max     int
	written int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.written += len(p)
	t.b = append(t.b, p[max(0, len(p)-t.max):]...)
	if len(t.b) > 2*t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

// kept is the last max bytes written.
func (t *tailBuffer) kept() []byte { return t.b[max(0, len(t.b)-t.max):] }

func (t *tailBuffer) String() string { return string(t.kept()) }

// dropped reports whether anything before what String returns was written.
func (t *tailBuffer) dropped() bool { return t.written > len(t.kept()) }
