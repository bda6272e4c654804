package store

import (
	"context"
	"math/rand/v2"
	"time"
)

// RunEvery calls fn about every d until ctx is done: each wait is shortened
// by up to a fifth at random, so that loops on several server nodes (and
// their load on the store) spread out.
func RunEvery(ctx context.Context, d time.Duration, fn func()) {
	for {
		t := time.NewTimer(d - time.Duration(rand.Int64N(int64(d)/5+1)))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		fn()
	}
}
