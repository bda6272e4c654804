package registry

import (
	"context"
	"sync"
	"time"
)

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
// whose ctx ends stops waiting and gets its cause (context.Cause).
func (f *flight[T]) do(ctx context.Context, timeout time.Duration, fn func(context.Context) (T, error)) (T, error) {
	if ctx.Err() != nil {
		var zero T
		return zero, context.Cause(ctx)
	}
	c := f.join(ctx, timeout, fn)
	select {
	case <-c.done:
		return c.val, c.err
	case <-ctx.Done():
		var zero T
		return zero, context.Cause(ctx)
	}
}

// join starts fn as do does, or joins the run in progress, and returns it
// without waiting.
func (f *flight[T]) join(ctx context.Context, timeout time.Duration, fn func(context.Context) (T, error)) *flightCall[T] {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.call != nil {
		return f.call
	}
	c := &flightCall[T]{done: make(chan struct{})}
	f.call = c
	go func() {
		fctx, cancel := attemptContext(context.WithoutCancel(ctx), timeout)
		defer cancel()
		c.val, c.err = fn(fctx)
		f.mu.Lock()
		f.call = nil
		f.mu.Unlock()
		close(c.done)
	}()
	return c
}
