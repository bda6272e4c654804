package registry

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// backoff is a capped exponential delay with jitter: each delay is drawn
// from [d/2, d], where d doubles from min up to max. The zero value is not
// usable; set min and max.
type backoff struct {
	min, max time.Duration
	d        time.Duration // the next delay before jitter; 0 = min
}

// next returns the delay before the next attempt and doubles the one after.
func (b *backoff) next() time.Duration {
	if b.d < b.min {
		b.d = b.min
	}
	d := min(b.d, b.max)
	b.d = min(2*d, b.max)
	return jitter(d, 0.5)
}

// reset starts again from min after a success.
func (b *backoff) reset() { b.d = 0 }

// jitter returns a duration drawn from [d*(1-frac), d].
func jitter(d time.Duration, frac float64) time.Duration {
	span := int64(float64(d) * frac)
	if span <= 0 {
		return d
	}
	return d - time.Duration(rand.Int64N(span+1))
}

// sleep waits for d or until ctx is done, and returns ctx's error then.
func sleep(ctx context.Context, d time.Duration) error {
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

// flight merges concurrent calls of one function (as
// golang.org/x/sync/singleflight does for one key): while a call runs,
// later callers wait for its result instead of starting another.
type flight[T any] struct {
	mu   sync.Mutex
	call *flightCall[T]
}

type flightCall[T any] struct {
	done chan struct{}
	val  T
	err  error
}

// do runs fn, or joins the run in progress, and returns its result. fn runs
// on a context that keeps ctx's values but not its cancellation, bounded by
// timeout, so that one caller giving up does not fail the others; a caller
// whose ctx ends stops waiting and gets ctx's error.
func (f *flight[T]) do(ctx context.Context, timeout time.Duration, fn func(context.Context) (T, error)) (T, error) {
	if err := ctx.Err(); err != nil {
		var zero T
		return zero, err
	}
	f.mu.Lock()
	c := f.call
	if c == nil {
		c = &flightCall[T]{done: make(chan struct{})}
		f.call = c
		go func() {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
			defer cancel()
			c.val, c.err = fn(fctx)
			f.mu.Lock()
			f.call = nil
			f.mu.Unlock()
			close(c.done)
		}()
	}
	f.mu.Unlock()
	select {
	case <-c.done:
		return c.val, c.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}
