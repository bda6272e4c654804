package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/svcreg/svcreg/render"
)

// applyExec puts --exec, --grace-period and --start-without-registry into
// the configuration; they override its [exec]. The last two need a
// command, from --exec or the configuration.
func (f *templateFlags) applyExec(c *render.Config, set func(name string) bool) error {
	if set("exec") {
		words, err := render.SplitCommand(f.exec)
		if err != nil {
			return fmt.Errorf("--exec: %w", err)
		}
		if len(words) == 0 {
			return errors.New("--exec: no command given: give the command to run, or leave --exec out")
		}
		c.Exec.Command = words
	}
	if set("grace-period") {
		if f.gracePeriod <= 0 {
			return errors.New("--grace-period must be positive")
		}
		c.Exec.GracePeriod = render.Duration(f.gracePeriod)
	}
	if set("start-without-registry") {
		if f.startWithout < 0 {
			return errors.New("--start-without-registry must be 0 (wait for the registry) or positive")
		}
		c.Exec.StartWithoutRegistry = render.Duration(f.startWithout)
	}
	if c.Exec.StartWithoutRegistry < 0 {
		return errors.New("[exec] start_without_registry must be 0 (wait for the registry) or positive")
	}
	if len(c.Exec.Command) == 0 {
		// Said of the flags alone: a config may hold [exec] settings for
		// the runs that give --exec.
		for _, name := range []string{"grace-period", "start-without-registry"} {
			if set(name) {
				return usagef("--%s is about the command --exec runs: give --exec (or [exec] command in the config), or leave --%s out", name, name)
			}
		}
	}
	return nil
}

// checkExecMode refuses --exec (or [exec]) with the modes that run no
// daemon.
func (f *templateFlags) checkExecMode(c render.Config) error {
	if len(c.Exec.Command) == 0 {
		return nil
	}
	from := "--exec"
	if f.exec == "" {
		from = "[exec] in " + f.config
	}
	for _, m := range []struct {
		on   bool
		flag string
	}{{f.once, "--once"}, {f.print, "--print"}, {f.dry, "--dry"}} {
		if m.on {
			return usagef("%s runs the command beside the daemon; it cannot be used with %s", from, m.flag)
		}
	}
	return nil
}

// newExec finds the command to run and subscribes to the signals passed
// on to it, before anything is rendered. A command that cannot be run
// exits 127 (not found) or 126.
func newExec(c render.ExecConfig, log *slog.Logger, stdin io.Reader, stdout, stderr io.Writer) (*render.Exec, error) {
	ex := &render.Exec{Command: c.Command, GracePeriod: c.GracePeriod.D(), StartWithout: c.StartWithoutRegistry.D(),
		Log: log.With("exec", c.Command[0]), Stdin: stdin, Stdout: stdout, Stderr: stderr}
	if err := ex.Prepare(); err != nil {
		var ee *render.ExecError
		if errors.As(err, &ee) {
			return nil, exitCodeError{ee.Code, fmt.Errorf("--exec: %w", err)}
		}
		return nil, err
	}
	return ex, nil
}

// execExit is the renderer's exit for the command's exit status.
func execExit(code int) error {
	if code == 0 {
		return nil
	}
	return exitCodeError{code: code}
}
