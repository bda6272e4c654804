package store

import (
	"sync"
	"testing"
	"time"
)

// A timeout takes a tenant's write lock after the write that holds it,
// ahead of those waiting: one account's queued burst of writes
// held up the reaper, and so every account's timeouts, for as long as the
// burst took.
func TestTimeoutsTakeTheWriteLockAhead(t *testing.T) {
	var l WriteLock
	l.Lock()
	const writes = 20
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	for range writes {
		wg.Go(func() {
			l.Lock()
			mu.Lock()
			order = append(order, "write")
			mu.Unlock()
			l.Unlock()
		})
	}
	queued := func(aheads, writes int) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
			l.mu.Lock()
			a, w := len(l.aheads), len(l.writes)
			l.mu.Unlock()
			if a == aheads && w == writes {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d timeouts and %d writes waiting, want %d and %d", a, w, aheads, writes)
			}
		}
	}
	queued(0, writes)
	wg.Go(func() {
		l.LockAhead()
		mu.Lock()
		order = append(order, "timeout")
		mu.Unlock()
		l.Unlock()
	})
	queued(1, writes)
	l.Unlock()
	wg.Wait()
	for i, o := range order {
		if o == "timeout" {
			if i > 0 {
				t.Errorf("the timeout took the lock after %d of the %d writes waiting before it, want it first", i, writes)
			}
			return
		}
	}
	t.Fatal("the timeout never took the lock")
}

// The lock is a lock: one holder at a time, whichever way it was taken,
// and every waiter gets it.
func TestWriteLockExcludes(t *testing.T) {
	var l WriteLock
	var inside, most, total int
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			if i%5 == 0 {
				l.LockAhead()
			} else {
				l.Lock()
			}
			inside++
			most = max(most, inside)
			total++
			inside--
			l.Unlock()
		})
	}
	wg.Wait()
	if most != 1 || total != 200 {
		t.Errorf("%d holders at once at most, %d of 200 took the lock; want 1 and all", most, total)
	}
}
