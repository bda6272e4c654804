package registry

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/svcreg/svcreg/internal/retry"
)

// HeartbeatOptions configure a Heartbeater. The zero value follows the
// spec's schedule (§11.2) with the default backoff.
type HeartbeatOptions struct {
	// OnBeat, if set, is called with the result of every heartbeat, in
	// order, from the heartbeater's goroutine. The next heartbeat waits
	// until it returns, so it should be quick. It must not call Stop; to
	// stop from it, cancel the heartbeater's context.
	OnBeat func(Beat)
	// Interval, if positive, replaces the spec's interval between
	// successful heartbeats (0.6 or 0.8 of the timeout, with jitter). It
	// should stay well below the timeout.
	Interval time.Duration
	// MinBackoff is the delay before the second retry after a failure (the
	// first retry goes at once); 50ms if 0. Delays double from there, with
	// jitter. A failure whose answer has a Retry-After (a rate limit) is
	// retried no sooner than that, up to the cap.
	MinBackoff time.Duration
	// MaxBackoff caps the delay between retries; 2s if 0. The cap is also
	// held to a tenth of the heartbeat timeout, so that retries keep going
	// well before the deadline.
	MaxBackoff time.Duration
}

// Beat is the result of one heartbeat.
type Beat struct {
	// Time is when the heartbeat's answer (or failure) came.
	Time time.Time
	// Token is the next token, on success.
	Token string
	// Err is why the heartbeat failed; nil on success. An error matching
	// ErrNotFound ends the heartbeater: the registry forgot the service.
	Err error
	// Failures counts the failed heartbeats in a row, this one included;
	// 0 on success.
	Failures int
	// Overdue reports that the deadline had passed when this heartbeat
	// ended: the registry may have timed the service out. On success it
	// means a late heartbeat was still accepted.
	Overdue bool
	// Deadline is the heartbeater's estimate of when the registry times
	// the service out unless a heartbeat succeeds before: the send time of
	// the last successful heartbeat plus the timeout, or of an earlier
	// attempt with its token that got no answer, which the registry may
	// have taken (before the first success: the create's send time for
	// Register, the start for StartHeartbeat).
	Deadline time.Time
}

// Heartbeater keeps a service alive: it heartbeats it on the schedule of
// spec §11.2, retries failures with a capped, jittered backoff, and stops
// when the registry answers 404 (the service or its token is gone), when
// its context ends, or on Stop. Its methods are safe for concurrent use.
type Heartbeater struct {
	c       *Client
	id      string
	timeout time.Duration
	opts    HeartbeatOptions
	parent  context.Context
	cancel  context.CancelFunc
	done    chan struct{}

	mu          sync.Mutex
	token       string
	lastSuccess time.Time
	deadline    time.Time
	err         error
}

// StartHeartbeat starts a Heartbeater for a service created with
// CreateService: id, the token its create (or last heartbeat) returned,
// and its heartbeat_timeout in seconds. The first heartbeat goes at once.
// It runs until ctx ends, Stop is called, or the registry answers 404.
func (c *Client) StartHeartbeat(ctx context.Context, id, token string, timeout int, opts HeartbeatOptions) *Heartbeater {
	return c.startHeartbeat(ctx, id, token, timeout, time.Now(), opts)
}

// startHeartbeat starts a Heartbeater whose token was issued no earlier
// than issued.
func (c *Client) startHeartbeat(ctx context.Context, id, token string, timeout int, issued time.Time, opts HeartbeatOptions) *Heartbeater {
	if timeout < 1 {
		timeout = 3 // the smallest timeout the registry accepts
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 50 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 2 * time.Second
	}
	h := &Heartbeater{
		c:        c,
		id:       id,
		timeout:  time.Duration(timeout) * time.Second,
		opts:     opts,
		parent:   ctx,
		done:     make(chan struct{}),
		token:    token,
		deadline: issued.Add(time.Duration(timeout) * time.Second),
	}
	var hctx context.Context
	hctx, h.cancel = context.WithCancel(ctx)
	go h.run(hctx)
	return h
}

// ID returns the service's id.
func (h *Heartbeater) ID() string { return h.id }

// Token returns the outstanding heartbeat token.
func (h *Heartbeater) Token() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.token
}

// LastSuccess returns when the last heartbeat succeeded; zero before the
// first.
func (h *Heartbeater) LastSuccess() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lastSuccess
}

// Deadline returns the heartbeater's estimate of when the registry times
// the service out unless a heartbeat succeeds before (see Beat.Deadline).
func (h *Heartbeater) Deadline() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.deadline
}

// Stop stops the heartbeater and waits until it has stopped. It does not
// delete the service; the registry times it out unless it is deleted. Stop
// may be called more than once, but not from OnBeat.
func (h *Heartbeater) Stop() {
	h.cancel()
	<-h.done
}

// Done is closed when the heartbeater has stopped.
func (h *Heartbeater) Done() <-chan struct{} { return h.done }

// Err reports why the heartbeater stopped: an error matching ErrNotFound
// when the registry forgot the service, the context's error when its
// context ended; nil after Stop or while it runs.
func (h *Heartbeater) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

func (h *Heartbeater) run(ctx context.Context) {
	defer close(h.done)
	defer h.cancel()
	bo := retry.Backoff{Min: h.opts.MinBackoff, Max: max(h.opts.MinBackoff, min(h.opts.MaxBackoff, h.timeout/10))}
	// An attempt with no answer in attemptTimeout is given up and sent
	// again (on another connection, if its own died). A registry that
	// answers slowly but answers is waited for: the timeout doubles after
	// each attempt given up, up to half the heartbeat timeout (two
	// attempts still fit in one), and after an answer is three times what
	// it took, at least the base. The first attempt with a token has no
	// more than half the time left before the deadline (see below).
	base := min(max(h.timeout/4, 500*time.Millisecond), 10*time.Second)
	most := max(h.timeout/2, base)
	attemptTimeout := base
	failures := 0
	// givenUp is when the first attempt with the outstanding token that was
	// given up without an answer (or got none: ErrOutcomeUnknown) was
	// sent; zero if none was. The registry
	// may have taken it and set the deadline then: a later attempt with
	// the same token gets the same next token and moves nothing, so the
	// next heartbeat counts its interval, and the deadline, from givenUp.
	// (An attempt answered with an error is taken not to have reached
	// it.)
	var givenUp time.Time
	for {
		token := h.Token()
		sent := time.Now()
		limit := attemptTimeout
		if failures == 0 {
			// The first attempt with a token is not waited for past
			// half the time left before the deadline (the base at
			// least): after answers that took long, the attempt's time
			// may be most of what is left, and a request lost on the
			// way (a connection that died silently, a node that froze)
			// would be given up only after the deadline. Its retries
			// wait as long as attemptTimeout says.
			limit = min(limit, max(base, h.Deadline().Sub(sent)/2))
		}
		actx, cancel := attemptContext(ctx, limit)
		next, err := h.c.Heartbeat(actx, h.id, token)
		gaveUp := errors.Is(actx.Err(), context.DeadlineExceeded)
		cancel()
		if ctx.Err() != nil {
			h.setErr(h.parent.Err())
			return
		}
		now := time.Now()
		counted := sent // what the next heartbeat's interval counts from
		switch {
		case err == nil:
			attemptTimeout = min(max(3*now.Sub(sent), base), most)
			if !givenUp.IsZero() {
				counted, givenUp = givenUp, time.Time{}
			}
		case gaveUp || errors.Is(err, ErrOutcomeUnknown):
			// Given up, or sent with no answer (a connection that broke,
			// or with several URLs a node's own time that ran out before
			// this attempt's): the registry may have taken it.
			if gaveUp {
				attemptTimeout = min(2*attemptTimeout, most)
			}
			if givenUp.IsZero() {
				givenUp = sent
			}
		}
		var wait time.Duration
		h.mu.Lock()
		b := Beat{Time: now, Err: err, Overdue: !now.Before(h.deadline)}
		if err == nil {
			failures = 0
			bo.Reset()
			// The deadline too: the registry's is no earlier than
			// counted's plus the timeout, and may be no later.
			h.token, h.lastSuccess, h.deadline = next, now, counted.Add(h.timeout)
			b.Token = next
			// The interval runs from the send that may have set the
			// registry's deadline: an answer that came late, or after
			// attempts given up, leaves less of it.
			wait = max(h.interval()-now.Sub(counted), 0)
		} else {
			// spec §11.2 and §13 item 23: retry the same token at once,
			// then back off; repeating a token is idempotent (design item 6).
			failures++
			if failures > 1 {
				wait = bo.Next()
			}
			// An answer that says when to come back (a rate limit's
			// Retry-After) is not retried sooner, up to the backoff's
			// cap, which keeps retries going well before the deadline.
			wait = bo.Heed(wait, RetryAfter(err))
		}
		b.Failures, b.Deadline = failures, h.deadline
		gone := errors.Is(err, ErrNotFound)
		if gone {
			h.err = err
		}
		h.mu.Unlock()
		if h.opts.OnBeat != nil {
			h.opts.OnBeat(b)
		}
		if gone {
			return
		}
		if retry.Sleep(ctx, wait) != nil {
			h.setErr(h.parent.Err())
			return
		}
	}
}

func (h *Heartbeater) setErr(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.err = err
}

// interval is the time from the send of a successful heartbeat (or of an
// earlier attempt with its token that got no answer) to the next one.
func (h *Heartbeater) interval() time.Duration {
	if h.opts.Interval > 0 {
		return retry.Jitter(h.opts.Interval, 0.1)
	}
	return heartbeatInterval(int(h.timeout/time.Second), rand.IntN)
}

// heartbeatInterval is the Node heartbeater's schedule (spec §11.2): base =
// timeout*0.6 if timeout < 15, else timeout*0.8; if base > 5 s, wait base +
// randInt(-3..1) - 3 seconds, plus 3 if that is not positive. randN(n)
// returns an int in [0, n).
func heartbeatInterval(timeout int, randN func(int) int) time.Duration {
	base := float64(timeout) * 0.8
	if timeout < 15 {
		base = float64(timeout) * 0.6
	}
	if base > 5 {
		base += float64(randN(5)-3) - 3
		if base <= 0 {
			base += 3
		}
	}
	return time.Duration(base * float64(time.Second))
}
