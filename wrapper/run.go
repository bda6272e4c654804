package wrapper

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/svcreg/svcreg/internal/registryflags"
	"github.com/svcreg/svcreg/internal/supervise"
	"github.com/svcreg/svcreg/internal/undumpable"
	"github.com/svcreg/svcreg/registry"
)

// deregisterTimeout bounds the DELETE when the command has exited: the
// wrapper should exit promptly even when the registry is down (the service
// then times out).
const deregisterTimeout = 5 * time.Second

// ServiceIDEnv is the environment variable that gives the command its
// service id.
const ServiceIDEnv = "SVCREG_SERVICE_ID"

// Deps are what Run works with.
type Deps struct {
	// Client reaches the registry; required. Run does not close it. Its
	// HTTP client's Timeout, if any, bounds each request (Main sets none:
	// each request is bounded by its attempt).
	Client *registry.Client
	// Logger receives the wrapper's own log; nothing is logged if nil.
	Logger *slog.Logger
	// Stdin, Stdout and Stderr are the command's; an *os.File is passed
	// to it as is.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// Run registers cfg.Service, runs cfg.Command, keeps the service in the
// registry while the command lives, deletes it when the command exits, and
// returns the wrapper's exit status: the command's, or one of the Exit
// codes. If ctx ends, the command is stopped as on --abort-on-failure, and
// its status is returned.
//
// Run owns the process: it becomes a child subreaper (on Linux), reaps
// every child of the process, and takes the signals it passes on to the
// command. A program calls it once and starts no other child processes.
//
// cfg is as ParseArgs returns it: a Command, an Interval within
// MinInterval..MaxInterval and a Service.HeartbeatTimeout of
// HeartbeatTimeout(Interval). A Config without a Command is ExitUsage.
func Run(ctx context.Context, cfg Config, d Deps) int {
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if len(cfg.Command) == 0 {
		log.Error("no command to run")
		return ExitUsage
	}
	path, err := exec.LookPath(cfg.Command[0])
	if err != nil {
		log.Error("cannot run the command", "command", cfg.Command[0], "err", err)
		return supervise.StartFailure(err)
	}

	// Subscribe before the command starts, so that no signal is missed.
	sup := supervise.New(log)
	defer sup.Close()

	log.Info("registering the service", "tags", cfg.Service.Tags, "metadata", cfg.Service.Metadata,
		"heartbeat_timeout", cfg.Service.HeartbeatTimeout, "interval", cfg.Interval, "abort_on_failure", cfg.AbortOnFailure)
	k := newKeeper(d.Client, cfg, log)
	kctx, cancel := context.WithCancel(ctx)
	keeperDone := make(chan struct{})
	go func() {
		defer close(keeperDone)
		k.run(kctx)
	}()
	stopKeeper := func() {
		cancel()
		<-keeperDone
	}
	defer stopKeeper()
	s := &supervisor{cfg: cfg, log: log, client: d.Client, keeper: k, stopKeeper: stopKeeper, sigs: sup.Signals()}

	// Start the command once the first registration has succeeded or failed
	// (fail open), not while an old instance still holds the id.
	if code, done := s.awaitRegistration(ctx); done {
		return code
	}

	if !cfg.PassCredentials {
		if err := undumpable.Set(); err != nil {
			log.Warn("cannot keep the command from reading the wrapper's memory and environment (prctl PR_SET_DUMPABLE)", "err", err)
		}
	}
	cmd := &exec.Cmd{Path: path, Args: cfg.Command, Stdin: d.Stdin, Stdout: d.Stdout, Stderr: d.Stderr,
		Env: commandEnv(os.Environ(), cfg)}
	child, err := sup.Start(cmd, supervise.Options{GracePeriod: cfg.GracePeriod, ParentDeathSignal: !cfg.NoParentDeathSignal})
	if err != nil {
		if _, serr := os.Stat(path); serr == nil && errors.Is(err, fs.ErrNotExist) {
			// The kernel says ENOENT of a file that exists: what it
			// names to run it is missing (a script's #! interpreter,
			// a program's dynamic loader).
			err = fmt.Errorf("%w (the file exists: the interpreter its #! line names, or the dynamic loader it needs, does not)", err)
		}
		log.Error("cannot start the command", "command", cfg.Command[0], "err", err)
		s.finish()
		return supervise.StartFailure(err)
	}
	defer child.Close()
	s.child = child
	log.Info("command started", "pid", child.Pid(), "command", cfg.Command)
	return s.supervise(ctx)
}

// commandEnv is the command's environment: environ, without the
// registry credentials unless cfg.PassCredentials, and SVCREG_SERVICE_ID
// (exec.Cmd keeps the last of two values of a variable).
func commandEnv(environ []string, cfg Config) []string {
	if !cfg.PassCredentials {
		environ = registryflags.WithoutCredentials(environ)
	}
	return append(environ, ServiceIDEnv+"="+cfg.Service.ID)
}

// supervisor is the state of one Run.
type supervisor struct {
	cfg        Config
	log        *slog.Logger
	client     *registry.Client
	keeper     *keeper
	stopKeeper func() // stops the keeper and waits for it
	sigs       <-chan os.Signal

	child *supervise.Child
}

// awaitRegistration waits for the first registration to succeed or fail.
// done reports that the wrapper must exit with code instead of starting
// the command: a signal to stop, or a failure with --abort-on-failure.
func (s *supervisor) awaitRegistration(ctx context.Context) (code int, done bool) {
	for {
		select {
		case <-s.keeper.settled:
			select {
			case err := <-s.keeper.fatal:
				s.log.Error("aborting (--abort-on-failure): the registry refused the service; the command was not started", "err", err)
				s.finish()
				return ExitAborted, true
			default:
				return 0, false
			}
		case sig := <-s.sigs:
			// A signal that would have ended the command ends the
			// wrapper: a container runtime's stop signal may be SIGQUIT
			// (nginx's image) or SIGUSR1 (HAProxy's), as well as SIGTERM.
			if !supervise.EndsByDefault(sig) {
				s.log.Debug("signal before the command started; ignored", "signal", sig)
				continue
			}
			s.log.Info("signal before the command started; exiting", "signal", sig)
			s.finish()
			return 128 + int(sig.(syscall.Signal)), true
		case <-ctx.Done():
			s.finish()
			return ExitError, true
		}
	}
}

// supervise runs until the command has exited and the service is
// deregistered, and returns the wrapper's exit status.
func (s *supervisor) supervise(ctx context.Context) int {
	var deadline <-chan time.Time // with --abort-on-failure: the registry's deadline
	var timer *time.Timer
	if s.cfg.AbortOnFailure {
		d, _ := s.keeper.Deadline()
		timer = time.NewTimer(time.Until(d))
		defer timer.Stop()
		deadline = timer.C
	}
	for {
		select {
		case <-s.child.Done():
			code := s.child.ExitCode()
			s.wrapUp()
			return code
		case sig := <-s.sigs:
			s.child.Forward(sig)
		case <-deadline:
			d, err := s.keeper.Deadline()
			if wait := time.Until(d); wait > 0 {
				timer.Reset(wait)
				continue
			}
			if err == nil {
				err = errors.New("no answer")
			}
			return s.abort(fmt.Errorf("the registry accepted no registration or heartbeat for a heartbeat timeout (%ds); last error: %w", s.cfg.Service.HeartbeatTimeout, err))
		case <-ctx.Done():
			s.log.Info("stopping the command", "reason", context.Cause(ctx))
			code := s.child.Stop()
			s.wrapUp()
			return code
		}
	}
}

// abort stops the command because the service cannot be kept in the
// registry (--abort-on-failure).
func (s *supervisor) abort(err error) int {
	s.log.Error("aborting (--abort-on-failure): stopping the command", "err", err)
	s.child.Stop()
	s.wrapUp()
	return ExitAborted
}

// wrapUp, once the command has exited, deregisters the service (finish)
// and meanwhile stops the processes the command left running.
// A SIGINT or SIGTERM meanwhile ends the leftovers' grace period: they
// are killed at once.
func (s *supervisor) wrapUp() {
	hurry := make(chan struct{})
	done := s.stopLeftovers(hurry)
	s.finish()
	for {
		select {
		case <-done:
			return
		case sig := <-s.sigs:
			if (sig == syscall.SIGINT || sig == syscall.SIGTERM) && hurry != nil {
				s.log.Info("killing the leftover processes now", "signal", sig)
				close(hurry)
				hurry = nil
			}
		}
	}
}

// leftoverKillWait is how long, after SIGKILL, the wrapper waits for the
// leftovers to be gone (their children come to it as they end).
const leftoverKillWait = 5 * time.Second

// stopLeftovers stops, unless --keep-leftovers, the processes the command
// left running, re-parented to the wrapper (a subreaper, or PID 1): a
// shell's children, say, that a SIGTERM to the shell did not reach. They
// get SIGTERM, and SIGKILL after --grace-period or once hurry is closed.
// The channel is closed once they are gone, or have been killed. The log
// names the first 20 pids: one line, however many there are.
func (s *supervisor) stopLeftovers(hurry <-chan struct{}) <-chan struct{} {
	done := make(chan struct{})
	pids := supervise.Leftovers()
	if len(pids) == 0 {
		close(done)
		return done
	}
	if s.cfg.KeepLeftovers {
		s.log.Warn("the command left processes running: they are not registered, and run on after the wrapper (--keep-leftovers)", "count", len(pids), "pids", supervise.FirstPids(pids))
		close(done)
		return done
	}
	s.log.Warn("the command left processes running: stopping them (SIGTERM, then SIGKILL after --grace-period; a script should exec its program)", "count", len(pids), "pids", supervise.FirstPids(pids), "grace_period", s.cfg.GracePeriod)
	go func() {
		defer close(done)
		st := supervise.StopLeftovers(s.cfg.GracePeriod, leftoverKillWait, hurry)
		if len(st.Killed) > 0 {
			s.log.Warn("leftover processes did not end on SIGTERM: killed them (SIGKILL)", "count", len(st.Killed), "pids", supervise.FirstPids(st.Killed))
		}
		switch {
		case len(st.Left) > 0 && st.Err != nil:
			s.log.Error("cannot stop the leftover processes; leaving them", "count", len(st.Left), "pids", supervise.FirstPids(st.Left), "err", st.Err)
			return
		case len(st.Left) > 0:
			s.log.Error("leftover processes still run after SIGKILL (in uninterruptible sleep?); leaving them", "count", len(st.Left), "pids", supervise.FirstPids(st.Left))
			return
		}
		s.log.Info("leftover processes stopped", "count", st.Signalled)
	}()
	return done
}

// finish stops the keeper and, unless --no-deregister, deletes the
// service at once rather than letting it time out. A service whose
// command never started (it could not be run, or a signal came first) is
// deleted even with --no-deregister: it never stood for a running
// process, and left to time out it would send traffic to nothing and hold
// the id from the next instance.
func (s *supervisor) finish() {
	s.stopKeeper()
	held, maybe := s.keeper.Holding()
	if !held && !maybe {
		return
	}
	timeout := s.cfg.Service.HeartbeatTimeout
	if s.cfg.NoDeregister && s.child != nil {
		s.log.Info("leaving the service to time out (--no-deregister)", "heartbeat_timeout", timeout)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), deregisterTimeout)
	defer cancel()
	if deadline, _ := s.keeper.Deadline(); held && !time.Now().Before(deadline) {
		// Heartbeats failed past the deadline: the registry may have timed
		// the service out, and another instance registered the id since.
		// Only a heartbeat with this instance's token shows it is ours.
		if _, err := s.client.Heartbeat(ctx, s.cfg.Service.ID, s.keeper.Token()); err != nil {
			if errors.Is(err, registry.ErrNotFound) {
				s.log.Info("the service timed out while heartbeats failed (the id may be another instance's now); nothing to deregister")
			} else {
				s.log.Warn("cannot tell whether the registry still holds this instance's service after heartbeats failed past the deadline; leaving it to time out", "heartbeat_timeout", timeout, "err", err)
			}
			return
		}
	}
	err := s.client.DeleteService(ctx, s.cfg.Service.ID)
	switch {
	case err == nil && maybe:
		s.log.Info("service deregistered (a registration had got no answer, and had been made)")
	case err == nil:
		s.log.Info("service deregistered")
	case errors.Is(err, registry.ErrNotFound) && maybe:
		s.log.Info("the registration that got no answer is not in the registry (not made, or timed out since); nothing to deregister")
	case errors.Is(err, registry.ErrNotFound):
		s.log.Info("service already gone from the registry")
	default:
		s.log.Warn("cannot deregister the service; the registry times it out", "heartbeat_timeout", timeout, "err", err)
	}
}
