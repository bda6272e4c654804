// Package retry holds the waits between attempts: a capped exponential
// backoff with jitter, and a sleep that a context cuts short.
package retry

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is a capped exponential delay with jitter: each delay is drawn
// from [d/2, d], where d doubles from Min up to Max. The zero value is not
// usable; set Min and Max.
type Backoff struct {
	Min, Max time.Duration
	d        time.Duration // the next delay before jitter; 0 = Min
}

// Next returns the delay before the next attempt and doubles the one after.
func (b *Backoff) Next() time.Duration {
	if b.d < b.Min {
		b.d = b.Min
	}
	d := min(b.d, b.Max)
	b.d = min(2*d, b.Max)
	return Jitter(d, 0.5)
}

// Heed returns wait, or the wait the other side asked for (a Retry-After)
// if that is longer, spread evenly over up to half as much again (or up to
// Max, if that comes first) so that clients it turned away together do not
// come back in step, but never more than Max: asked for more, retries
// still go at the backoff's pace, spread over the last quarter below Max.
// (Drawn past Max and clamped to it, they would come back at once, and
// again at each refusal after.)
func (b *Backoff) Heed(wait, asked time.Duration) time.Duration {
	if asked >= b.Max {
		return max(wait, b.Max-time.Duration(rand.Int64N(int64(b.Max)/4+1)))
	}
	if asked <= wait {
		return wait
	}
	spread := min(asked/2, b.Max-asked)
	return asked + time.Duration(rand.Int64N(int64(spread)+1))
}

// Reset starts again from Min after a success.
func (b *Backoff) Reset() { b.d = 0 }

// Jitter returns a duration drawn from [d*(1-frac), d], so that many
// clients started together do not retry in step.
func Jitter(d time.Duration, frac float64) time.Duration {
	span := int64(float64(d) * frac)
	if span <= 0 {
		return d
	}
	return d - time.Duration(rand.Int64N(span+1))
}

// Sleep waits for d or until ctx is done, and returns ctx's error then.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
