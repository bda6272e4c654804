// Package runtime is the interface between the renderer and a load
// balancer's runtime API: an Adapter turns the difference between the
// installed file and a newly rendered one into changes of the running load
// balancer, so that a change needs no reload.
package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Adapter changes a running load balancer to match a rendered file.
// The renderer keeps an Adapter from pass to pass (with the work its
// plans leave running); one pass at a time uses it.
type Adapter interface {
	// Plan compares the installed file with the new one. When every
	// difference can be applied through the runtime API it returns a Plan;
	// otherwise a *NeedsReload error saying why. Plan does no I/O.
	Plan(installed, rendered []byte) (Plan, error)
}

// Plan is a change an Adapter can apply without a reload.
type Plan interface {
	// Commands are the commands Apply would send if the load balancer's
	// live state were the installed file, for --dry.
	Commands() []string
	// Apply makes the load balancer's live state match the new file, then
	// reads the live state back and checks it. An error (a *Failure) means
	// the live state may not match the file: the caller reloads. Work that
	// waits (draining a removed server) is left to Settings.Go and done
	// after Apply returns; until then the live state is in a transition
	// that Apply and Revert know about. ctx's end does not cut Apply's
	// own commands short; it ends the work left to Settings.Go.
	Apply(ctx context.Context) error
	// Revert makes the live state the installed file's again, after Apply
	// went ahead of a new file that then failed its check or install. An
	// error means the live state may match neither: the caller reloads the
	// installed file.
	Revert(ctx context.Context) error
}

// Reconciler is an Adapter that can take the live state back to an
// installed file that did not change: when the renderer starts, the load
// balancer may hold what an earlier run left there (a change applied
// through the runtime API ahead of a file that was never installed, when
// that run died; drains cut short by its stop).
type Reconciler interface {
	// Reconcile reads the live state, makes it the installed file's, and
	// reads it back to check it, as Apply does; it returns the commands
	// it sent (none when the live state was the file's; drains it leaves
	// send more later). An error (a *Failure) means the live state may
	// not be the file's: the caller reloads, unless the error is
	// ErrUnreachable (nothing answers the runtime API, and nothing was
	// sent: a load balancer that starts later loads the installed file).
	Reconcile(ctx context.Context, installed []byte) ([]string, error)
	// ReconcileCommands reads the live state as Reconcile does and
	// returns the commands Reconcile would send (the drains it would
	// leave described as comments, as Plan.Commands describes them),
	// sending nothing else: what --dry shows. Its errors are
	// Reconcile's.
	ReconcileCommands(ctx context.Context, installed []byte) ([]string, error)
}

// Background is an Adapter that finishes changes after Apply returns.
type Background interface {
	// Reset drops the work still pending: the load balancer is about to
	// reload, which makes its live state the installed file's.
	Reset()
}

// Settings configure an Adapter; they come from a template's runtime_*
// settings.
type Settings struct {
	// Socket is the address of the runtime API.
	Socket string
	// DrainTimeout bounds how long a removed server is drained before its
	// remaining sessions are cut.
	DrainTimeout time.Duration
	// Timeout bounds one exchange with the runtime API.
	Timeout time.Duration
	Log     *slog.Logger
	// Go runs the work an Apply leaves behind (drains) in the background;
	// run returns when it is done or ctx, Apply's, is done. An error from
	// run is a runtime failure (a *Failure): the caller reloads. With no
	// Go, that work is done within Apply.
	Go func(ctx context.Context, run func(context.Context) error)
}

// Factory makes an Adapter; it checks the settings.
type Factory func(Settings) (Adapter, error)

// NeedsReload says why a change cannot be applied at runtime. It is not a
// failure: the change goes through the reload path.
type NeedsReload struct {
	Reason string
}

func (e *NeedsReload) Error() string { return "needs a reload: " + e.Reason }

// Reloadf returns a *NeedsReload.
func Reloadf(format string, args ...any) error {
	return &NeedsReload{Reason: fmt.Sprintf(format, args...)}
}

// ErrUnreachable is in a connect *Failure when nothing answered at the
// runtime API's address: no socket, a connection refused, or, before any
// command went, one closed by the load balancer (not running, or
// stopping).
var ErrUnreachable = errors.New("nothing answers")

// Failure is a runtime API exchange that went wrong; the caller falls back
// to a reload.
type Failure struct {
	// Step is a short, fixed word for metrics: connect, command, drain,
	// verify.
	Step string
	Err  error
}

func (e *Failure) Error() string { return e.Step + ": " + e.Err.Error() }

func (e *Failure) Unwrap() error { return e.Err }
