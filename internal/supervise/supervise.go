// Package supervise runs one command as a program's foreground child:
// signals passed on, orphaned descendants reaped, the exit status passed
// back as a shell would (128+N for signal N), and a grace period between
// SIGTERM and SIGKILL. The wrapper and svcreg template --exec share it.
package supervise

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Exit codes for a command that could not be started, as the shell has
// them.
const (
	// ExitCannotRun: the command was found but could not be started.
	ExitCannotRun = 126
	// ExitNotFound: the command was not found.
	ExitNotFound = 127
)

// StartFailure maps an error finding or starting a command to the shell's
// exit codes: 127 when the command does not exist, 126 otherwise.
func StartFailure(err error) int {
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		return ExitNotFound
	}
	return ExitCannotRun
}

// Supervisor holds what a program that supervises a command owns: the
// signals it passes on, SIGCHLD, and (on Linux) the role of child
// subreaper. Create it before anything can send the program a signal that
// must reach the command; a program has one.
type Supervisor struct {
	log  *slog.Logger
	sigs chan os.Signal
	chld chan os.Signal
	// early reaps orphans until the command starts: a subreaper (or PID
	// 1) inherits the orphans of check and reload commands run before it,
	// and a first pass that keeps failing would pile them up as zombies.
	stopEarly context.CancelFunc
	earlyDone chan struct{}
}

// SurviveClosedOutput keeps a long-running program alive when what reads
// its standard output or error goes away (a log pipe's reader, a
// journald restart): without it, the Go runtime ends the program with
// SIGPIPE at its next log line, a wrapper's command and registration
// with it. Writes then fail with EPIPE instead. A command the program
// starts still gets SIGPIPE's default action: the subscription is not
// inherited, as an ignored signal would be.
func SurviveClosedOutput() {
	surviveOnce.Do(func() { signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE) })
}

var surviveOnce sync.Once

// New subscribes to the signals that are passed on and to SIGCHLD, makes
// the program a child subreaper, and reaps orphans from then on; the
// program survives a closed output (SurviveClosedOutput). The children
// the program has already (started before it was executed) are not the
// command's leftovers.
func New(log *slog.Logger) *Supervisor {
	SurviveClosedOutput()
	noteInherited()
	early, stop := context.WithCancel(context.Background())
	s := &Supervisor{log: log, sigs: make(chan os.Signal, 32), chld: make(chan os.Signal, 1),
		stopEarly: stop, earlyDone: make(chan struct{})}
	signal.Notify(s.sigs, forwardedSignals()...)
	signal.Notify(s.chld, syscall.SIGCHLD)
	becomeSubreaper(log)
	go func() {
		defer close(s.earlyDone)
		// No command yet: pid -1 is no child's.
		reap(s.chld, early.Done(), -1, func(syscall.WaitStatus) {}, log)
	}()
	return s
}

// endEarly stops reaping orphans without a command, and waits for it: a
// command started meanwhile could have its status taken as an orphan's.
func (s *Supervisor) endEarly() {
	s.stopEarly()
	<-s.earlyDone
}

// EndsByDefault reports whether sig, one of those Signals delivers, ends
// a process that does not handle it: every one but SIGWINCH and SIGCONT.
// Before the command has started, such a signal ends the program as it
// would have ended the command.
func EndsByDefault(sig os.Signal) bool {
	return sig != syscall.SIGWINCH && sig != syscall.SIGCONT
}

// Signals delivers the signals the program got that a command may want:
// the program decides which to pass on (Child.Forward) and which are its
// own.
func (s *Supervisor) Signals() <-chan os.Signal { return s.sigs }

// Close stops the subscriptions, and the reaping of orphans if no
// command started.
func (s *Supervisor) Close() {
	s.endEarly()
	signal.Stop(s.sigs)
	signal.Stop(s.chld)
}

// Options say how a command is run.
type Options struct {
	// GracePeriod is how long the command has after SIGTERM before it is
	// killed, and after a first SIGINT/SIGTERM before a second one kills
	// it.
	GracePeriod time.Duration
	// ParentDeathSignal has the kernel kill the command when the program
	// dies without passing anything on (Linux only), with DeathSignal.
	ParentDeathSignal bool
	// DeathSignal is the signal the kernel sends then; SIGKILL if 0. A
	// command that stops processes of its own on SIGTERM (nginx's and
	// HAProxy's masters, their workers) leaves none behind with SIGTERM,
	// where SIGKILL leaves them running.
	DeathSignal syscall.Signal
	// Kept are signals the program keeps for itself: Stop does not pass
	// them on while it waits for the command (svcreg template --exec
	// keeps SIGHUP, which re-reads its own configuration).
	Kept []os.Signal
}

// Child is a started command.
type Child struct {
	cmd     *exec.Cmd
	log     *slog.Logger
	opts    Options
	sigs    <-chan os.Signal
	done    chan struct{}
	status  syscall.WaitStatus // valid once done is closed
	stop    chan struct{}      // stops the reaper
	reaped  chan struct{}      // closed when the reaper has stopped
	release chan struct{}      // frees the thread that forked the command
	// termAt is when the first SIGINT or SIGTERM was passed on; only the
	// goroutine that supervises the command uses it.
	termAt time.Time
}

// Start starts cmd and reaps, from then on, every child of the process
// except those started with StartOwned: the command's exit status ends up
// in Done, and orphaned descendants re-parented to the program are
// collected so that they do not linger as zombies.
func (s *Supervisor) Start(cmd *exec.Cmd, opts Options) (*Child, error) {
	c := &Child{cmd: cmd, log: s.log, opts: opts, sigs: s.sigs, done: make(chan struct{}),
		stop: make(chan struct{}), reaped: make(chan struct{}), release: make(chan struct{})}
	s.endEarly()
	if err := c.startCommand(); err != nil {
		return nil, err
	}
	go func() {
		defer close(c.reaped)
		reap(s.chld, c.stop, cmd.Process.Pid, func(ws syscall.WaitStatus) {
			c.status = ws
			close(c.done)
		}, s.log)
	}()
	return c, nil
}

// startCommand starts the command, with the parent-death signal if asked.
// Linux sends that signal when the thread that forked the command exits,
// not the process, and the Go runtime ends a thread when a goroutine locked
// to it returns: so the fork happens on a goroutine locked to its thread
// that keeps it until Close, after the command has been reaped.
func (c *Child) startCommand() error {
	if !c.opts.ParentDeathSignal {
		return c.cmd.Start()
	}
	sig := c.opts.DeathSignal
	if sig == 0 {
		sig = syscall.SIGKILL
	}
	setDeathSignal(c.cmd, sig)
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := c.cmd.Start()
		started <- err
		if err == nil {
			<-c.release
		}
	}()
	return <-started
}

// Pid is the command's process id.
func (c *Child) Pid() int { return c.cmd.Process.Pid }

// Done is closed when the command has exited and been reaped.
func (c *Child) Done() <-chan struct{} { return c.done }

// Status is the command's wait status, once Done is closed.
func (c *Child) Status() syscall.WaitStatus { return c.status }

// Close stops reaping and releases what the command held; call it once,
// after Done.
func (c *Child) Close() {
	close(c.stop)
	<-c.reaped
	// The reaper has collected the status; Wait releases what exec holds
	// for the command (copying goroutines, pidfd) and reports ECHILD.
	c.cmd.Wait()
	close(c.release)
}

// Signal sends the command sig. The process handle is a pidfd on Linux: a
// command that has exited, even one already reaped, is never confused with
// a new process; it reports os.ErrProcessDone. Safe for concurrent use.
func (c *Child) Signal(sig os.Signal) error { return c.cmd.Process.Signal(sig) }

func (c *Child) signal(sig os.Signal) {
	if err := c.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		c.log.Warn("cannot signal the command", "signal", sig, "err", err)
	}
}

// Forward passes a signal the program got on to the command, unless the
// terminal sent it to the command too (fromTerminal); a SIGINT or SIGTERM
// is followed by SIGCONT, as in Stop. A SIGINT or SIGTERM
// that comes at least a grace period after the first one kills the
// command: it had its chance to stop.
func (c *Child) Forward(sig os.Signal) {
	if sig == syscall.SIGINT || sig == syscall.SIGTERM {
		if c.stopping() && time.Since(c.termAt) >= c.opts.GracePeriod {
			c.log.Warn("another signal after the grace period; killing the command", "signal", sig, "grace_period", c.opts.GracePeriod)
			c.signal(syscall.SIGKILL)
			return
		}
		if !c.stopping() {
			c.termAt = time.Now()
		}
	}
	if c.fromTerminal(sig) {
		c.log.Info("not passing a signal on: the terminal sent it to the command too", "signal", sig)
		return
	}
	c.log.Info("passing a signal on to the command", "signal", sig)
	c.signal(sig)
	if sig == syscall.SIGINT || sig == syscall.SIGTERM {
		c.signal(syscall.SIGCONT) // a stopped command acts on it once continued
	}
}

// stopping reports whether a SIGINT or SIGTERM began a stop that is still
// under way: within twice the grace period of it. One the command outlived
// longer ago (a terminal's Ctrl-C to a program that goes on) does not
// count, or a stop long after it would leave the command no grace period.
func (c *Child) stopping() bool {
	// Halved rather than the period doubled, which past half the
	// largest duration would wrap round to a negative one.
	return !c.termAt.IsZero() && time.Since(c.termAt)/2 < c.opts.GracePeriod
}

// Stop sends the command SIGTERM (and SIGCONT, should it be stopped: it
// acts on SIGTERM only once continued), unless a stop is under way
// (stopping), and SIGKILL if it is still running a grace period after the
// stop began; meanwhile the program's signals are passed on. It returns
// the command's exit status (ExitCode).
func (c *Child) Stop() int {
	if !c.stopping() {
		c.signal(syscall.SIGTERM)
		c.signal(syscall.SIGCONT) // should it be stopped
		c.termAt = time.Now()
	}
	grace := time.NewTimer(time.Until(c.termAt.Add(c.opts.GracePeriod)))
	defer grace.Stop()
	for {
		select {
		case <-c.done:
			return c.ExitCode()
		case <-grace.C:
			c.log.Warn("the command is still running after the grace period; killing it", "grace_period", c.opts.GracePeriod)
			c.signal(syscall.SIGKILL)
		case sig := <-c.sigs:
			if slices.Contains(c.opts.Kept, sig) {
				c.log.Info("not passing a signal on while the command stops: it is the program's own", "signal", sig)
				continue
			}
			c.Forward(sig)
		}
	}
}

// ExitCode is the program's exit status for the command's, once Done is
// closed: its exit code, or 128+N when signal N killed it.
func (c *Child) ExitCode() int {
	ws := c.status
	switch {
	case ws.Exited():
		c.log.Info("command exited", "code", ws.ExitStatus())
		return ws.ExitStatus()
	case ws.Signaled():
		c.log.Info("command killed by a signal", "signal", ws.Signal(), "code", 128+int(ws.Signal()))
		return 128 + int(ws.Signal())
	}
	c.log.Error("command ended with an unknown wait status", "status", uint32(ws))
	return 1
}

// Describe says how a process ended, for logs and errors.
func Describe(ws syscall.WaitStatus) string {
	if ws.Signaled() {
		// By its name, as kill(1) takes it: the description reads as a
		// verb ("killed by killed").
		name := unix.SignalName(ws.Signal())
		if name == "" {
			name = "signal"
		}
		return "killed by " + name + " (signal " + strconv.Itoa(int(ws.Signal())) + ")"
	}
	return "exit status " + strconv.Itoa(ws.ExitStatus())
}
