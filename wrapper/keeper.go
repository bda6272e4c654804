package wrapper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/svcreg/svcreg/internal/retry"
	"github.com/svcreg/svcreg/registry"
)

const (
	// minRetry is the first delay between failed registrations; delays
	// double up to the heartbeat interval.
	minRetry = 250 * time.Millisecond
	// permanentRetry is the delay after a failure that retrying will not
	// fix by itself (a refused service, bad credentials): without
	// --abort-on-failure the wrapper still retries, in case an operator
	// fixes the cause, but slowly (jittered: permanentWait).
	permanentRetry = 30 * time.Second
	// reminderEvery limits the log lines of a failure that goes on.
	reminderEvery = time.Minute
	// waitingLogEvery is how often the wrapper says it still waits for an
	// old instance to time out.
	waitingLogEvery = 15 * time.Second
	// createGrace is how long a registration under way when the wrapper
	// stops may still take to be answered: created, the wrapper deletes
	// the service; refused because another instance holds the id, it
	// leaves that instance's service alone.
	createGrace = 3 * time.Second
)

// permanentWait is the wait after a failure that retrying will not fix
// by itself: permanentRetry, less up to a fifth, so that wrappers started
// together (a host's services, after a key was revoked) do not retry in
// step.
func permanentWait() time.Duration { return retry.Jitter(permanentRetry, 0.2) }

// keeper keeps the service in the registry: it registers it, heartbeats it
// with the client's Heartbeater, and registers it again whenever the
// registry forgets it, retrying failures with a capped, jittered backoff
// until its context ends.
type keeper struct {
	client   *registry.Client
	service  registry.Service
	interval time.Duration
	abort    bool
	log      *slog.Logger

	// settled is closed when the first registration has succeeded or
	// failed, or has had no answer for firstWait (Register waits there
	// while an old instance holds the id): the command starts then. It is
	// closed under mu.
	settled chan struct{}
	// fatal gets, with --abort-on-failure, a first registration's failure
	// that retrying will not fix, before settled closes; the keeper has
	// stopped then. After the command starts, the deadline decides.
	fatal chan error

	mu       sync.Mutex
	held     bool                  // a heartbeater holds the service
	deadline time.Time             // when the registry times the service out unless heartbeated
	lastErr  error                 // why the last registration or heartbeat failed; nil if it succeeded
	hb       *registry.Heartbeater // the last registration's; nil before the first
	// maybeUntil is when a service that the registrations without an
	// answer may have made has surely timed out (see Holding); zero when
	// none may have (never set while held).
	maybeUntil time.Time
}

func newKeeper(c *registry.Client, cfg Config, log *slog.Logger) *keeper {
	return &keeper{
		client:   c,
		service:  cfg.Service,
		interval: cfg.Interval,
		abort:    cfg.AbortOnFailure,
		log:      log,
		settled:  make(chan struct{}),
		fatal:    make(chan error, 1),
		deadline: time.Now().Add(time.Duration(cfg.Service.HeartbeatTimeout) * time.Second),
	}
}

// Holding reports whether the wrapper holds the service in the registry
// (it registered it, and the registry has not forgotten it since), and,
// when it does not, whether the registry may hold it all the same: a
// registration was sent and got no answer (the wrapper stopped while it
// was under way, the connection broke, or the registry answered 5xx), no
// other instance held the id, and a service it made, never heartbeated,
// would not have timed out yet (a heartbeat timeout and maybeMargin after
// it; past that, a service at the id is another instance's).
func (k *keeper) Holding() (held, maybe bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.held, time.Now().Before(k.maybeUntil)
}

// maybeMargin is how long past its timeout a service that a registration
// without an answer may have made can still be in the registry: the
// create committed a little after the wrapper gave up on it, and the
// registry's timeout, within about a second of the deadline.
const maybeMargin = 5 * time.Second

// Token is the outstanding heartbeat token of the service the keeper
// holds, or of the last it held.
func (k *keeper) Token() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.hb == nil {
		return ""
	}
	return k.hb.Token()
}

// Deadline is when the registry times the service out unless a heartbeat
// or registration succeeds before, and why the last attempt failed (nil if
// it succeeded). Before the first success the deadline is one heartbeat
// timeout after the keeper started, or after the command was let start
// (the first registration failed, or had no answer within firstWait).
func (k *keeper) Deadline() (time.Time, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.deadline, k.lastErr
}

func (k *keeper) timeout() time.Duration {
	return time.Duration(k.service.HeartbeatTimeout) * time.Second
}

// firstWait is how long the command waits for the first registration
// (the login it needs first included) to be answered, as a heartbeat
// attempt is: a quarter of the heartbeat timeout, 0.5 to 10 s. Past it,
// the command starts (fail open), and the registration goes on waiting
// for its answer, up to its own 30 s: a registry that answers slowly is
// still waited for, and not sent a second create that would find the
// first one's service holding the id.
func (k *keeper) firstWait() time.Duration {
	return min(max(k.timeout()/4, 500*time.Millisecond), 10*time.Second)
}

// settle lets the command start, if it has not been let start yet, and
// reports whether it did so now: with fatal (a refusal, with
// --abort-on-failure) it is not started at all. It logs msg first (the
// command's start comes after it in the log) with args, and, when the
// command starts, gives it a heartbeat timeout from now.
func (k *keeper) settle(fatal error, msg string, args ...any) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.started() {
		return false
	}
	if msg != "" {
		k.log.Warn(msg, args...)
	}
	if fatal != nil {
		k.fatal <- fatal
	} else if k.hb == nil {
		k.deadline = time.Now().Add(k.timeout())
	}
	close(k.settled)
	return true
}

// started reports whether the command has been let start: settled is
// closed.
func (k *keeper) started() bool {
	select {
	case <-k.settled:
		return true
	default:
		return false
	}
}

// firstLogin logs in before the first registration, for at most wait:
// a login that has no answer by then is told apart from a registration
// that has none. The command then starts, and the login goes on for the
// registration that follows. A login that fails otherwise is left to the
// registration, which gets the same failure, or logs in again.
func (k *keeper) firstLogin(ctx context.Context, wait time.Duration) {
	lctx, cancel := context.WithTimeoutCause(ctx, wait, fmt.Errorf("no answer within %s", wait))
	defer cancel()
	_, err := k.client.Authenticate(lctx)
	if err == nil || lctx.Err() == nil || ctx.Err() != nil {
		return
	}
	k.mu.Lock()
	k.lastErr = err
	k.mu.Unlock()
	if k.abort {
		// The command waits for the answer: a refusal must keep it
		// from starting.
		k.log.Warn("the identity service has not answered the login yet; with --abort-on-failure the command waits for the answer", "err", err)
		return
	}
	k.settle(nil, "the identity service has not answered the login; the command runs anyway, the login goes on", "err", err)
}

func (k *keeper) run(ctx context.Context) {
	defer k.settle(nil, "")
	wait := k.firstWait()
	begun := time.Now()
	k.firstLogin(ctx, wait)
	bo := retry.Backoff{Min: minRetry, Max: k.interval}
	var failures int
	// The reminders of failures that retrying may fix, and of refusals:
	// apart, so that a refusal after a passing failure is told at once.
	var remind, remindRefused throttle
	// taken: the registry said another instance holds the id, and no
	// registration succeeded since; a create without an answer may then
	// have failed the same way, and does not make the service maybe held.
	taken := false
	// The first registration has what is left of firstWait (a quarter of
	// it at least) before the command starts, unless an old instance
	// holds the id (holder): that is waited out. Every later turn of the
	// loop comes after the command started.
	var holder atomic.Bool
	var noAnswer *time.Timer
	// With --abort-on-failure the command waits for the answer: a
	// refusal must keep it from starting.
	if !k.started() && !k.abort {
		noAnswer = time.AfterFunc(max(wait-time.Since(begun), wait/4), func() {
			if !holder.Load() {
				k.settle(nil, "the registry has not answered the registration yet; the command runs anyway, still waiting for the answer",
					"url", k.client.URL(), "waited", time.Since(begun).Round(time.Millisecond))
			}
		})
	}
	for {
		var logged time.Time
		hb, err := k.client.Register(ctx, k.service, registry.RegisterOptions{
			Heartbeat:   registry.HeartbeatOptions{Interval: k.interval, OnBeat: k.onBeat()},
			CreateGrace: createGrace,
			// Answered that an old instance holds the id: waited out,
			// as long as reading its timeout takes too.
			OnConflict: func() { holder.Store(true) },
			OnTaken: func(until time.Time) { // after OnConflict
				taken = true
				// A create that got no answer before may have failed the
				// same way: the id is not known to be ours, and deleting
				// it at exit would delete the other instance's service.
				k.mu.Lock()
				k.maybeUntil = time.Time{}
				k.mu.Unlock()
				if until.IsZero() {
					return // stopping: Register does not wait
				}
				// This lasts up to the old instance's heartbeat timeout
				// (two minutes at most): say so, and now and then how long.
				if now := time.Now(); now.Sub(logged) >= waitingLogEvery {
					logged = now
					k.log.Info("another instance holds the id (one that exited without deregistering?); waiting for the registry to time it out",
						"gives_up_in", time.Until(until).Round(time.Second))
				}
			},
		})
		if noAnswer != nil {
			noAnswer.Stop()
			noAnswer = nil
		}
		if err == nil {
			k.mu.Lock()
			k.held, k.maybeUntil, k.deadline, k.lastErr, k.hb = true, time.Time{}, hb.Deadline(), nil, hb
			taken = false
			k.mu.Unlock()
			k.log.Info("service registered", "heartbeat_timeout", k.service.HeartbeatTimeout, "interval", k.interval, "failed_attempts", failures)
			k.settle(nil, "")
			failures, remind, remindRefused = 0, throttle{}, throttle{}
			registered := time.Now()
			<-hb.Done()
			if ctx.Err() != nil {
				return
			}
			// Only a 404 stops a heartbeater on its own.
			k.mu.Lock()
			k.held, k.lastErr = false, hb.Err()
			k.mu.Unlock()
			k.log.Warn("the registry forgot the service (heartbeat answered 404); registering it again", "err", hb.Err())
			// Register again at once, unless the registry keeps forgetting.
			if time.Since(registered) >= k.interval {
				bo.Reset()
			} else if retry.Sleep(ctx, bo.Next()) != nil {
				return
			}
			continue
		}
		if errors.Is(err, registry.ErrOutcomeUnknown) && !taken {
			k.mu.Lock()
			k.maybeUntil = time.Now().Add(k.timeout() + maybeMargin)
			k.mu.Unlock()
		}
		if ctx.Err() != nil {
			return
		}
		failures++
		permanent := !retryable(err)
		k.mu.Lock()
		k.lastErr = err
		k.mu.Unlock()
		// A refusal aborts at once only before the command starts; after
		// it, the deadline decides, as for any failure (README).
		if permanent && k.abort && k.settle(err, "") {
			return
		}
		// A rate limit's Retry-After is waited out, up to the backoff's cap.
		wait := bo.Heed(bo.Next(), registry.RetryAfter(err))
		if permanent {
			wait = permanentWait()
		}
		switch {
		case permanent && remindRefused.allow(time.Now()):
			k.log.Error("the registry refused the service; retrying", "err", err, "attempts", failures, "retry_in", wait.Round(time.Millisecond))
		case !permanent && remind.allow(time.Now()):
			k.log.Warn("cannot register the service; the command runs anyway, retrying", "err", err, "attempts", failures, "retry_in", wait.Round(time.Millisecond))
		default:
			k.log.Debug("registration failed", "err", err, "attempts", failures)
		}
		k.settle(nil, "")
		if retry.Sleep(ctx, wait) != nil {
			return
		}
	}
}

// onBeat returns the OnBeat callback of one heartbeater: it moves the
// deadline and logs changes (first failure, overdue, recovery), not every
// retry.
func (k *keeper) onBeat() func(registry.Beat) {
	failing := 0
	overdueLogged := false
	var remind throttle
	return func(b registry.Beat) {
		k.mu.Lock()
		k.deadline, k.lastErr = b.Deadline, b.Err
		k.mu.Unlock()
		switch {
		case b.Err == nil && failing > 0:
			k.log.Info("heartbeats accepted again", "failed_heartbeats", failing, "late", b.Overdue)
			failing, overdueLogged, remind = 0, false, throttle{}
		case b.Err == nil:
			k.log.Debug("heartbeat")
		case errors.Is(b.Err, registry.ErrNotFound):
			failing = b.Failures // run logs it
		case b.Overdue && !overdueLogged:
			overdueLogged, failing = true, b.Failures
			k.log.Error("heartbeats failing past the deadline; the registry may time the service out", "err", b.Err, "failed_heartbeats", b.Failures, "deadline", b.Deadline)
		case remind.allow(b.Time):
			failing = b.Failures
			k.log.Warn("heartbeat failed; retrying", "err", b.Err, "failed_heartbeats", b.Failures, "deadline", b.Deadline)
		default:
			failing = b.Failures
			k.log.Debug("heartbeat failed", "err", b.Err, "failed_heartbeats", b.Failures)
		}
	}
}

// retryable reports whether a registration that failed with err may
// succeed if tried again unchanged: what the client counts as temporary,
// except refused credentials, which need someone to act, as a refused
// service does.
func retryable(err error) bool {
	return registry.Temporary(err) && !errors.Is(err, registry.ErrUnauthorized)
}

// throttle lets a repeated log line through once per reminderEvery.
type throttle struct{ last time.Time }

func (t *throttle) allow(now time.Time) bool {
	if t.last.IsZero() || now.Sub(t.last) >= reminderEvery {
		t.last = now
		return true
	}
	return false
}
