package store

import "sync"

// WriteLock is a tenant's write lock, which timeouts take ahead of the
// writes waiting for it: the lock goes to the waiting timeouts first, then
// to the writes, each in the order they came. A store's reaper times every
// tenant's services out, one tenant after another: behind a plain mutex it
// waited for every write one account had queued (a burst of a thousand,
// seconds), and every account's timeouts came that much late. The zero
// value is unlocked.
type WriteLock struct {
	mu             sync.Mutex
	held           bool
	aheads, writes []chan struct{} // waiting, each closed to hand it the lock
}

// Lock takes the lock for a write, after the writes and timeouts waiting.
func (l *WriteLock) Lock() { l.wait(&l.writes) }

// LockAhead takes the lock for timeouts, after its holder and the timeouts
// waiting.
func (l *WriteLock) LockAhead() { l.wait(&l.aheads) }

func (l *WriteLock) wait(queue *[]chan struct{}) {
	l.mu.Lock()
	if !l.held && len(l.aheads) == 0 && len(l.writes) == 0 {
		l.held = true
		l.mu.Unlock()
		return
	}
	ch := make(chan struct{})
	*queue = append(*queue, ch)
	l.mu.Unlock()
	<-ch
}

// Unlock hands the lock to the first timeout waiting, else to the first
// write, else releases it.
func (l *WriteLock) Unlock() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, q := range []*[]chan struct{}{&l.aheads, &l.writes} {
		if len(*q) > 0 {
			close((*q)[0])
			(*q)[0] = nil
			*q = (*q)[1:]
			return
		}
	}
	if !l.held {
		panic("store: unlock of an unlocked write lock")
	}
	l.held = false
}
