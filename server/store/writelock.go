package store

import "sync"

// WriteLock is a tenant's write lock, which a store's reaper takes ahead
// of the writes waiting for it (LockAhead): the lock goes to those taking
// it ahead first, then to the others, each in the order they came. The
// reaper times every tenant's services out, one tenant after another:
// behind a plain mutex it waited for every write one account had queued (a
// burst of a thousand, seconds), and every account's timeouts came that
// much late. Requests, a tenant's own timeouts included, take their turn
// (Lock): taken ahead on every read that finds a service due, writes could
// wait as long as a tenant's services went on falling due. The zero value
// is unlocked.
type WriteLock struct {
	mu             sync.Mutex
	held           bool
	aheads, writes []chan struct{} // waiting, each closed to hand it the lock
}

// Lock takes the lock in turn, after everyone waiting.
func (l *WriteLock) Lock() { l.wait(&l.writes) }

// LockAhead takes the lock for the reaper, after its holder and those
// waiting to take it ahead.
func (l *WriteLock) LockAhead() { l.wait(&l.aheads) }

// LockFor takes the lock ahead (LockAhead) if ahead, else in turn (Lock).
func (l *WriteLock) LockFor(ahead bool) {
	if ahead {
		l.LockAhead()
	} else {
		l.Lock()
	}
}

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

// Unlock hands the lock to the first waiting to take it ahead, else to the
// first waiting in turn, else releases it.
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
