package render

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/svcreg/svcreg/internal/registryflags"
	"github.com/svcreg/svcreg/internal/supervise"
)

// ExecConfig is [exec]: the load balancer runs as the renderer's child,
// started once the first pass has installed every group, reloaded by the
// groups' reload_signal, and stopped with the renderer.
type ExecConfig struct {
	// Command is the program and its arguments: a TOML array, or a string
	// split into words as a shell would, without a shell (quotes and
	// backslashes work; $, `, |, ;, &, <, >, ( and ) must be quoted).
	Command CommandLine `toml:"command"`
	// GracePeriod is how long the command has to exit after SIGTERM
	// before SIGKILL; 10s if zero.
	GracePeriod Duration `toml:"grace_period"`
	// StartWithoutRegistry, if positive, starts the command that long
	// after the renderer's start if no pass has finished by then (the
	// registry has not answered, or the first pass is still under way)
	// and every destination has a file a previous run installed: it
	// reads those, and is reloaded once a pass installs what the
	// registry holds. Zero waits for the registry however long it takes.
	StartWithoutRegistry Duration `toml:"start_without_registry"`
}

// DefaultGracePeriod is [exec]'s grace_period when none is set.
const DefaultGracePeriod = 10 * time.Second

// SignalSettle is how long a reload by signal waits for the command to
// die of it (a command that exits within it failed the reload), and how
// long a command has after its start before a reload signals it (on Linux
// also until it handles the signal: SignalReady).
const SignalSettle = time.Second

// SignalReady bounds how long a reload by signal waits, on Linux, for a
// command to handle the signal (catch or block it) before sending it: a
// load balancer sets its handlers only once it has read its configuration
// (HAProxy parsing 100,000 backends takes over a second), and the
// signal's default action would end it (or, ignored, it would be lost).
const SignalReady = 30 * time.Second

// CommandLine is a command and its arguments.
type CommandLine []string

// UnmarshalTOML takes an array of strings or one string to split.
func (c *CommandLine) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		words, err := SplitCommand(v)
		if err != nil {
			return err
		}
		*c = words
		return nil
	case []any:
		words := make([]string, len(v))
		for i, w := range v {
			s, ok := w.(string)
			if !ok {
				return fmt.Errorf("command: element %d is not a string", i+1)
			}
			words[i] = s
		}
		*c = words
		return nil
	}
	return errors.New("command: want a string or an array of strings")
}

// SplitCommand splits a command line into words as a shell would, without
// running a shell: blanks separate words; single quotes keep everything
// up to the next single quote; double quotes keep everything but \" \\ \$
// and \` (backslash escapes); a backslash outside quotes keeps the next
// character. Unquoted $ ` | ; & < > ( ) are refused: they mean something
// only to a shell (give "sh -c '...'" for that).
func SplitCommand(s string) ([]string, error) {
	var words []string
	var word strings.Builder
	inWord := false
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				words = append(words, word.String())
				word.Reset()
				inWord = false
			}
		case r == '\'':
			j := i + 1
			for j < len(rs) && rs[j] != '\'' {
				j++
			}
			if j == len(rs) {
				return nil, fmt.Errorf("command %q: a single quote is not closed", s)
			}
			word.WriteString(string(rs[i+1 : j]))
			inWord, i = true, j
		case r == '"':
			j := i + 1
			for ; j < len(rs) && rs[j] != '"'; j++ {
				if rs[j] == '\\' && j+1 < len(rs) && strings.ContainsRune("\"\\$`", rs[j+1]) {
					j++
				}
				word.WriteRune(rs[j])
			}
			if j == len(rs) {
				return nil, fmt.Errorf("command %q: a double quote is not closed", s)
			}
			inWord, i = true, j
		case r == '\\':
			if i+1 == len(rs) {
				return nil, fmt.Errorf("command %q ends with a backslash", s)
			}
			i++
			word.WriteRune(rs[i])
			inWord = true
		case strings.ContainsRune("$`|;&<>()", r):
			return nil, fmt.Errorf("command %q: %q means something only to a shell, and the command runs without one: quote it, or run \"sh -c '...'\"", s, r)
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, word.String())
	}
	return words, nil
}

// ParseSignal parses a reload_signal: "SIGHUP", "HUP" or "hup". Signals
// that stop a process (KILL, STOP, TERM, INT) are refused.
func ParseSignal(name string) (syscall.Signal, error) {
	n := strings.ToUpper(strings.TrimSpace(name))
	if !strings.HasPrefix(n, "SIG") {
		n = "SIG" + n
	}
	sig := unix.SignalNum(n)
	if sig == 0 {
		return 0, fmt.Errorf("%q is not a signal name such as SIGHUP or SIGUSR2", name)
	}
	switch sig {
	case syscall.SIGKILL, syscall.SIGSTOP, syscall.SIGTERM, syscall.SIGINT:
		return 0, fmt.Errorf("%s stops the command; a reload needs a signal that reloads it, such as SIGHUP (nginx) or SIGUSR2 (HAProxy master-worker)", n)
	}
	return sig, nil
}

// normalizeExec checks [exec] and the reload_signal settings.
func (c *Config) normalizeExec() error {
	if c.Exec.GracePeriod == 0 {
		c.Exec.GracePeriod = Duration(DefaultGracePeriod)
	}
	if len(c.Exec.Command) > 0 && c.Exec.Command[0] == "" {
		return errors.New("[exec] command: the program name is empty")
	}
	for _, t := range c.Templates {
		if t.ReloadSignal == "" {
			continue
		}
		if _, err := ParseSignal(t.ReloadSignal); err != nil {
			return fmt.Errorf("template %s: reload_signal: %w", t.Name(), err)
		}
		if len(c.Exec.Command) == 0 {
			return fmt.Errorf("template %s: reload_signal %s needs a command to signal: give [exec] command or --exec", t.Name(), t.ReloadSignal)
		}
	}
	return nil
}

// reloads reports whether the group reloads after an install.
func (g *Group) reloads() bool { return g.Reload != "" || g.ReloadSignal != 0 }

// reload runs the group's reload command, or signals the --exec command.
// With a runtime API, the reload counts once a new process answers it.
// When there was nothing to reload (the --exec command has not started
// yet, or is stopping), skipped says why, and nothing was signalled.
func (r *Renderer) reload(ctx context.Context, g *Group) (skipped string, _ error) {
	r.runtimes.reset(g) // the reload makes the live state the files'
	var ws []reloadWatch
	switch child := r.Child.running(); {
	case g.ReloadSignal == 0: // a command: the load balancer is not the child
		ws = r.watchReload(ctx, g, nil)
	case child != nil:
		ws = r.watchReload(ctx, g, child)
	}
	skipped, err := r.sendReload(ctx, g)
	if err != nil || skipped != "" {
		return skipped, err
	}
	if err := r.confirmReload(ctx, g, ws); err != nil {
		return "", err
	}
	r.runtimes.reloaded(g)
	if ctx.Err() == nil {
		r.reconcileReloaded(ctx, g)
	}
	return "", nil
}

func (r *Renderer) sendReload(ctx context.Context, g *Group) (skipped string, _ error) {
	if g.ReloadSignal == 0 {
		// A reload command runs to its end (or reload_timeout) also when
		// svcreg is told to stop meanwhile: cut off half-way, a reload
		// that starts a new process and then retires the old one (haproxy
		// -sf) may have done either, and the files would be put back
		// under a load balancer that runs them.
		_, err := runCommand(context.WithoutCancel(ctx), g.Reload, g.ReloadTimeout)
		return "", err
	}
	if r.Child == nil {
		return "", fmt.Errorf("reload_signal %s: no command to signal (run with --exec)", g.ReloadSignal)
	}
	return r.Child.Reload(ctx, g.ReloadSignal)
}

// Exec is the command run with --exec or [exec]. It is started once a pass
// has gone through without a failure (Passed), so that it starts with a
// complete, checked configuration; the groups' reload_signal reaches it
// through Reload; Run supervises it with the internal/supervise package's
// rules, shared with the wrapper.
//
// Set its exported fields before Prepare and leave them alone afterwards;
// an Exec must not be copied.
type Exec struct {
	// Command is the program and its arguments (ExecConfig.Command).
	Command []string
	// GracePeriod is how long the command has to exit after SIGTERM
	// before SIGKILL (Config.Normalize makes ExecConfig's zero
	// DefaultGracePeriod; here zero means none).
	GracePeriod time.Duration
	// Log receives what the supervision logs; nothing is logged if nil.
	Log *slog.Logger
	// Stdin, Stdout and Stderr are the command's; an *os.File is passed
	// to it as is.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// SIGHUP is the renderer's own (it re-reads its configuration): OnHUP
	// is called for it instead of passing it on.
	OnHUP func()
	// StartWithout, if positive, and Installed: the command starts that
	// long after Run began if no pass has run (the registry has not been
	// synced with) and Installed reports a file at every destination
	// (ExecConfig.StartWithoutRegistry).
	StartWithout time.Duration
	Installed    func() bool

	sup    *supervise.Supervisor
	path   string
	ready  chan struct{} // closed by the first pass without a failure
	once   sync.Once
	passed atomic.Bool // a pass ran

	mu        sync.Mutex // held while the command starts and while a reload signals it
	child     *supervise.Child
	startedAt time.Time
	stopping  bool
	// stopPassedAt is when a signal that ends a process by default was
	// last passed on (signalUnlessStopping), stopPassed which.
	stopPassedAt time.Time
	stopPassed   os.Signal

	// hupQueued: a re-read (onHUP) waits for the one under way, hupRun.
	hupQueued atomic.Bool
	hupRun    sync.Mutex

	// signalReady is SignalReady if zero (tests set less).
	signalReady time.Duration
}

// ExecError is a command that cannot be run; Code is the shell's exit
// code for it (126, 127).
type ExecError struct {
	Code int
	Err  error
}

func (e *ExecError) Error() string { return e.Err.Error() }
func (e *ExecError) Unwrap() error { return e.Err }

// Prepare finds the command (before anything is rendered, so that a
// mistake is reported at once) and subscribes to the signals the renderer
// passes on to it. Call Close when done.
func (e *Exec) Prepare() error {
	if e.Log == nil {
		e.Log = slog.New(slog.DiscardHandler)
	}
	path, err := exec.LookPath(e.Command[0])
	if err != nil {
		return &ExecError{Code: supervise.StartFailure(err), Err: fmt.Errorf("cannot run %s: %w", e.Command[0], err)}
	}
	e.path = path
	e.ready = make(chan struct{})
	e.sup = supervise.New(e.Log)
	return nil
}

// Close undoes Prepare.
func (e *Exec) Close() { e.sup.Close() }

// Passed is told each pass's result: the first one without a failure, and
// not stopped short, lets the command start.
func (e *Exec) Passed(res PassResult) {
	e.passed.Store(true)
	if len(res.Failures) == 0 && !res.Stopped {
		e.once.Do(func() { close(e.ready) })
	}
}

// Reload sends the command sig for a group's reload. Before the command
// has started there is nothing to reload: it reads the installed files
// when it starts; nothing is sent then, nor while it is being stopped
// (signalUnlessStopping), and skipped says why. The reload failed if the signal cannot be
// delivered or the command exits within SignalSettle of it.
func (e *Exec) Reload(ctx context.Context, sig syscall.Signal) (skipped string, _ error) {
	e.mu.Lock()
	child, startedAt, stopping := e.child, e.startedAt, e.stopping
	e.mu.Unlock()
	switch {
	case child == nil:
		return "the command has not started yet; it reads the installed files when it starts", nil
	case stopping:
		return "the command is being stopped", nil
	}
	// A command just started may not handle the signal yet (its default
	// action kills it): wait until it does (Linux), or give it
	// SignalSettle to set up.
	if skipped, err := e.awaitHandler(ctx, child, startedAt, sig); skipped != "" || err != nil {
		return skipped, err
	}
	if skipped, err := e.signalUnlessStopping(ctx, child, sig); skipped != "" || err != nil {
		return skipped, err
	}
	e.Log.Info("sent the reload signal to the command", "signal", unix.SignalName(sig), "pid", child.Pid())
	settle := time.NewTimer(SignalSettle)
	defer settle.Stop()
	select {
	case <-child.Done():
	case <-settle.C:
	case <-ctx.Done():
	}
	select {
	case <-child.Done(): // also when ctx ended as it died
		return "", e.exited(child, "the command exited after "+unix.SignalName(sig))
	default:
		return "", nil
	}
}

// awaitHandler waits until SignalSettle after child's start and, where
// that can be told (Linux), until it handles sig (catches it, not ignores
// it, blocked or not, since an ignored signal is lost; or keeps it blocked
// for signalBlockedFor, as a program reading its signals from a signalfd
// does, and a wrapper such as tini or dumb-init that waits for them with
// sigwait and passes them on to its child, which may not be ready),
// polling, up to SignalReady. A handler is not enough alone: a Go program
// catches every signal from its start.
func (e *Exec) awaitHandler(ctx context.Context, child *supervise.Child, startedAt time.Time, sig syscall.Signal) (skipped string, _ error) {
	ready := cmp.Or(e.signalReady, SignalReady)
	giveUp := time.Now().Add(ready)
	seen := false              // /proc could be read: the command's handlers are known
	var blockedSince time.Time // kept blocked since: read from a signalfd
	for logged := false; ; {
		wait := time.Until(startedAt.Add(SignalSettle))
		if wait <= 0 {
			handles, blocked, known := handlesSignal(child.Pid(), sig)
			seen = seen || known
			switch {
			case !blocked:
				blockedSince = time.Time{}
			case blockedSince.IsZero():
				blockedSince = time.Now()
			case time.Since(blockedSince) >= signalBlockedFor:
				handles = true // not a block held while forking
			}
			if handles || !seen {
				return "", nil
			}
			if time.Now().After(giveUp) {
				return "", fmt.Errorf("%w: %s, after %s: its default action would end it, or it ignores it", errSignalNotHandled, unix.SignalName(sig), ready)
			}
			if !logged {
				e.Log.Info("the reload signal waits for the command to handle it", "signal", unix.SignalName(sig), "pid", child.Pid())
				logged = true
			}
			wait = 20 * time.Millisecond
		}
		t := time.NewTimer(wait)
		select {
		case <-child.Done():
			t.Stop()
			return "", e.exited(child, "cannot send "+unix.SignalName(sig)+": the command has exited")
		case <-ctx.Done():
			t.Stop()
			return "the renderer is stopping", nil
		case <-t.C:
		}
	}
}

// signalBlockedFor is how long a command must keep the reload signal
// blocked for a reload to take it as read (from a signalfd), not as held
// for a moment.
const signalBlockedFor = 100 * time.Millisecond

// errSignalNotHandled: a reload signal was not sent, since the command
// does not handle it; the command still runs the files it had.
var errSignalNotHandled = errors.New("not sent: the command does not handle the reload signal")

// signalUnlessStopping sends the command sig unless it is being stopped:
// told to stop, or sent a signal passed on that ends a process by
// default (it may be the command's stop signal: nginx's SIGQUIT,
// HAProxy's SIGUSR1) less than stopWindow ago. Then it waits for the
// command to exit (nothing is sent; skipped says so) or for that window
// to pass. The lock is held while the signal goes, so that it reaches the
// command before the stop's signal or not at all.
func (e *Exec) signalUnlessStopping(ctx context.Context, child *supervise.Child, sig syscall.Signal) (skipped string, _ error) {
	for {
		e.mu.Lock()
		if e.stopping {
			e.mu.Unlock()
			return "the command is being stopped", nil
		}
		wait := time.Until(e.stopPassedAt.Add(e.stopWindow()))
		if wait <= 0 {
			err := child.Signal(sig)
			e.mu.Unlock()
			if err != nil {
				return "", fmt.Errorf("send %s to the command: %w", unix.SignalName(sig), err)
			}
			return "", nil
		}
		e.mu.Unlock()
		e.Log.Info("the reload signal waits: a signal that may stop the command was passed on", "signal", unix.SignalName(sig), "wait", wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-child.Done():
			t.Stop()
			return "the command exited after a signal passed on", nil
		case <-ctx.Done():
			t.Stop()
			return "the renderer is stopping", nil
		case <-t.C:
		}
	}
}

// stopWindow is how long after a signal passed on that ends a process by
// default the command's exit is taken for a stop by that signal.
func (e *Exec) stopWindow() time.Duration { return max(e.GracePeriod, 10*time.Second) }

// started reports whether the command has been started.
func (e *Exec) started() bool {
	if e == nil {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.child != nil
}

// waiting reports whether there is an --exec command that is not
// running: not started yet, or stopping.
func (e *Exec) waiting() bool { return e != nil && e.running() == nil }

// running is closed when the command exits; nil when it has not started
// or is being stopped (a reload does not signal it then).
func (e *Exec) running() <-chan struct{} {
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.child == nil || e.stopping {
		return nil
	}
	return e.child.Done()
}

// Run waits for the first pass without a failure (or, with StartWithout,
// that long without a pass, the files of a previous run installed),
// starts the command and
// supervises it until it exits, and returns its exit status as the
// renderer's (128+N for signal N). Until the command starts, a signal
// other than SIGHUP, SIGWINCH and SIGCONT ends the wait with 128+N. SIGINT and SIGTERM are passed on and
// end the renderer once the command has exited (SIGKILL after the grace
// period); SIGHUP goes to OnHUP; other signals are passed on. A command
// that exits by itself ends the renderer with its exit status. When ctx
// ends, the command is stopped as on SIGTERM.
func (e *Exec) Run(ctx context.Context) int {
	sigs := e.sup.Signals()
	var without <-chan time.Time
	if e.StartWithout > 0 && e.Installed != nil {
		t := time.NewTimer(e.StartWithout)
		defer t.Stop()
		without = t.C
	}
	for waiting := true; waiting; {
		select {
		case <-e.ready:
			waiting = false
		case <-without:
			switch {
			case e.passed.Load():
				// The registry answered: the command starts once a pass
				// installs every group, as without the option.
			case !e.Installed():
				e.Log.Warn("the registry has not been synced with, and not every destination has a file installed before: the command waits for the registry", "waited", e.StartWithout)
			default:
				e.Log.Warn("the registry has not been synced with: starting the command on the files installed before; it is reloaded once the registry answers", "waited", e.StartWithout)
				waiting = false
			}
		case sig := <-sigs:
			// A signal that would have ended the command ends svcreg: a
			// container runtime's stop signal may be SIGQUIT (nginx's
			// image) or SIGUSR1 (HAProxy's).
			switch {
			case sig == syscall.SIGHUP:
				e.onHUP() // as in supervise: a pass may be long
			case !supervise.EndsByDefault(sig):
				e.Log.Debug("signal before the command started; ignored", "signal", sig)
			default:
				e.Log.Info("signal before the command started; stopping", "signal", sig)
				return 128 + int(sig.(syscall.Signal))
			}
		case <-ctx.Done():
			return 0
		}
	}

	cmd := &exec.Cmd{Path: e.path, Args: e.Command, Stdin: e.Stdin, Stdout: e.Stdout, Stderr: e.Stderr, Env: childEnv(),
		// Its own process group, so that what is left of it when it has
		// exited (the workers of a killed master) can go too.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true}}
	e.mu.Lock()
	// SIGTERM when svcreg dies: nginx's and HAProxy's masters then stop
	// their workers, which SIGKILL of the master alone leaves serving.
	child, err := e.sup.Start(cmd, supervise.Options{GracePeriod: e.GracePeriod, ParentDeathSignal: true, DeathSignal: syscall.SIGTERM, Kept: []os.Signal{syscall.SIGHUP}})
	e.child, e.startedAt = child, time.Now()
	e.mu.Unlock()
	if err != nil {
		e.Log.Error("cannot start the command", "command", e.Command[0], "err", err)
		return supervise.StartFailure(err)
	}
	defer child.Close()
	e.Log.Info("command started", "pid", child.Pid(), "command", e.Command)
	code := e.supervise(ctx, child)
	if err := syscall.Kill(-child.Pid(), syscall.SIGKILL); err == nil {
		e.Log.Warn("killed what was left of the command's process group")
	}
	return code
}

// supervise passes signals on until the command has exited, and returns
// the renderer's exit status.
func (e *Exec) supervise(ctx context.Context, child *supervise.Child) int {
	sigs := e.sup.Signals()
	for {
		select {
		case <-child.Done():
			st := child.Status()
			if passed, ok := e.endedByPassedSignal(st); ok {
				e.Log.Info("the command exited after a signal passed on; stopping", "signal", passed, "status", supervise.Describe(st))
			} else if st.Exited() && st.ExitStatus() == 0 {
				// Most often a command that puts itself in the background,
				// beyond the renderer's reach (a daemon calls setsid, so
				// the process group is not its own any more).
				e.Log.Error("the command exited by itself; stopping", "status", supervise.Describe(st),
					"hint", "a command --exec runs must stay in the foreground: nginx -g 'daemon off;', haproxy -W or -Ws without -D; one that forked into the background still runs")
			} else {
				e.Log.Error("the command exited by itself; stopping", "status", supervise.Describe(st))
			}
			return child.ExitCode()
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP:
				e.onHUP()
			case syscall.SIGINT, syscall.SIGTERM:
				e.mu.Lock()
				e.stopping = true
				e.mu.Unlock()
				child.Forward(sig)
				return child.Stop()
			default:
				if supervise.EndsByDefault(sig) {
					e.mu.Lock()
					e.stopPassedAt, e.stopPassed = time.Now(), sig
					e.mu.Unlock()
				}
				child.Forward(sig)
			}
		case <-ctx.Done():
			e.mu.Lock()
			e.stopping = true
			e.mu.Unlock()
			e.Log.Info("stopping the command", "reason", context.Cause(ctx))
			return child.Stop()
		}
	}
}

// endedByPassedSignal reports whether the command's exit status st is
// its end by the signal last passed on that ends a process by default
// (stopPassed), returned: with 0, or of that signal, within stopWindow of
// it. That is a container runtime's stop signal (SIGQUIT for nginx's
// image, SIGUSR1 for HAProxy's), passed on.
func (e *Exec) endedByPassedSignal(st syscall.WaitStatus) (os.Signal, bool) {
	e.mu.Lock()
	passed, at := e.stopPassed, e.stopPassedAt
	e.mu.Unlock()
	if passed == nil || time.Since(at) >= e.stopWindow() {
		return nil, false
	}
	return passed, st.Exited() && st.ExitStatus() == 0 || st.Signaled() && st.Signal() == passed
}

// exited is the reload's failure when the command has exited, unless the
// renderer asked it to stop, or it ended by a signal passed on
// (endedByPassedSignal), such as the container runtime's SIGQUIT that
// came after the reload signal: the reload did not end it, and the files
// it was reloaded for stay.
func (e *Exec) exited(child *supervise.Child, what string) error {
	st := child.Status()
	e.mu.Lock()
	stopping := e.stopping
	e.mu.Unlock()
	if _, passed := e.endedByPassedSignal(st); stopping || passed {
		return nil
	}
	return fmt.Errorf("%s (%s)", what, supervise.Describe(st))
}

// onHUP calls OnHUP on a goroutine of its own: the new configuration
// waits for the render loop, which a pass (a check, a reload held back for
// up to stopWindow) may keep busy, and the signals after the SIGHUP must
// not wait with it. SIGHUPs that come while one waits to be read make one
// more re-read, which reads the newest files.
func (e *Exec) onHUP() {
	if e.OnHUP == nil || !e.hupQueued.CompareAndSwap(false, true) {
		return
	}
	go func() {
		e.hupRun.Lock()
		defer e.hupRun.Unlock()
		e.hupQueued.Store(false)
		e.OnHUP()
	}()
}

// childEnv is the renderer's environment without its credentials.
func childEnv() []string { return registryflags.WithoutCredentials(os.Environ()) }
