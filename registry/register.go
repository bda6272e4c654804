package registry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/svcreg/svcreg/internal/retry"
)

// RegisterOptions configure Register.
type RegisterOptions struct {
	// RetryDelay is the wait between creates while an old instance holds
	// the id; 2s (the Node client's) if 0.
	RetryDelay time.Duration
	// Heartbeat configures the Heartbeater Register starts.
	Heartbeat HeartbeatOptions
	// OnTaken, if set, is called each time the create finds the id taken,
	// with the time until which Register keeps trying: a waiting caller
	// can say what it is waiting for. It is called too, with the zero
	// time, when ctx has ended as the create found the id taken (see
	// CreateGrace): the service is not the caller's.
	OnTaken func(until time.Time)
	// OnConflict, if set, is called as soon as a create is answered that
	// the id is taken (409), before Register reads the service that holds
	// it to learn its timeout and calls OnTaken, or creates again when
	// that service is gone by then: a caller that waits for an answer
	// knows one came.
	OnConflict func()
	// CreateGrace is how long a create under way when ctx ends (sent, or
	// still being sent: a login first, say) may still take to be answered,
	// so that the caller learns whether it holds the service: created
	// (Register returns a Heartbeater, stopped with ctx, and the caller may
	// delete the service) or taken by another instance (OnTaken is called,
	// and Register returns ctx's error). 0 abandons it with ctx: its
	// outcome is then unknown (ErrOutcomeUnknown).
	CreateGrace time.Duration
}

const (
	// registerMargin is how long after an old instance's deadline Register
	// keeps trying: the registry times a service out within about a
	// second of its deadline (design item 7), and clocks differ.
	registerMargin = 3 * time.Second
	// registerAttemptTimeout bounds each request of Register, so that a
	// registry that drops packets cannot hold it for the OS's TCP timeout.
	registerAttemptTimeout = 30 * time.Second
)

// Register creates the service s and starts a Heartbeater for it, which
// sends its first heartbeat at once with the create's token (spec §11.3).
//
// If the id is taken (ErrServiceExists), Register assumes an old instance
// of the service died without deleting it: it reads that instance's
// heartbeat_timeout and keeps creating, every RetryDelay, until the
// registry has timed it out, for at most that timeout plus a small margin.
// It then gives up with an error matching ErrServiceExists: the old
// instance is alive. Any other error ends Register at once.
//
// ctx bounds the registration and the heartbeater's life, as for
// StartHeartbeat: the heartbeater runs until ctx ends or Stop.
func (c *Client) Register(ctx context.Context, s Service, opts RegisterOptions) (*Heartbeater, error) {
	delay := opts.RetryDelay
	if delay <= 0 {
		delay = 2 * time.Second
	}
	var until time.Time
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("register %s: %w", s.ID, err)
		}
		sent := time.Now()
		actx, cancel := createContext(ctx, opts.CreateGrace)
		token, err := c.CreateService(actx, s)
		cancel()
		if err == nil {
			return c.startHeartbeat(ctx, s.ID, token, s.HeartbeatTimeout, sent, opts.Heartbeat), nil
		}
		if !errors.Is(err, ErrServiceExists) {
			return nil, fmt.Errorf("register %s: %w", s.ID, err)
		}
		if opts.OnConflict != nil {
			opts.OnConflict()
		}
		if ctx.Err() != nil {
			// ctx ended while the id was still taken: ctx's error, as
			// when it ends between creates, not the old instance's.
			if opts.OnTaken != nil {
				opts.OnTaken(time.Time{})
			}
			return nil, fmt.Errorf("register %s: %w (the id was still taken)", s.ID, ctx.Err())
		}
		if until.IsZero() {
			timeout := MaxHeartbeatTimeout
			actx, cancel := attemptContext(ctx, registerAttemptTimeout)
			old, gerr := c.GetService(actx, s.ID)
			cancel()
			switch {
			case gerr == nil:
				// The spec's longest, whatever the registry says: a
				// registry's answer alone cannot hold the caller back
				// for longer. A negative one is none (multiplied into
				// a Duration it could wrap round to centuries).
				timeout = max(min(old.HeartbeatTimeout, MaxHeartbeatTimeout), 0)
			case ctx.Err() != nil:
				if opts.OnTaken != nil {
					opts.OnTaken(time.Time{})
				}
				return nil, fmt.Errorf("register %s: %w (the id was still taken)", s.ID, ctx.Err())
			}
			until = time.Now().Add(time.Duration(timeout)*time.Second + registerMargin)
			if errors.Is(gerr, ErrNotFound) {
				continue // gone in between: create again at once
			}
		}
		if !time.Now().Before(until) {
			return nil, fmt.Errorf("register %s: another instance still holds the id after its heartbeat timeout; is it alive? %w", s.ID, err)
		}
		if opts.OnTaken != nil {
			opts.OnTaken(until)
		}
		if err := retry.Sleep(ctx, retry.Jitter(delay, 0.2)); err != nil {
			return nil, fmt.Errorf("register %s: %w", s.ID, err)
		}
	}
}

// createContext bounds one create of Register: registerAttemptTimeout
// from now, and grace after ctx ends (at once if grace is 0). Its cancel
// also stops the grace timer.
func createContext(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	if grace <= 0 {
		return attemptContext(ctx, registerAttemptTimeout)
	}
	actx, cancel := attemptContext(context.WithoutCancel(ctx), registerAttemptTimeout)
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(grace, cancel)
		context.AfterFunc(actx, func() { t.Stop() })
	})
	return actx, func() {
		stop()
		cancel()
	}
}
