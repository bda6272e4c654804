package watcher

import "sync"

// Latest holds the newest snapshot and signals when it changes; a slow
// reader skips the snapshots it missed and sees the newest. It is a
// render.Source. It is safe for concurrent use, and its zero value is an
// empty Latest; it must not be copied after first use.
type Latest struct {
	mu   sync.Mutex
	snap *Snapshot
	ch   chan struct{}
}

// NewLatest returns an empty Latest.
func NewLatest() *Latest { return &Latest{ch: make(chan struct{}, 1)} }

// Put makes s the newest snapshot.
func (l *Latest) Put(s *Snapshot) {
	l.mu.Lock()
	l.snap = s
	ch := l.chanLocked()
	l.mu.Unlock()
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Snapshot returns the newest snapshot, or nil before the first.
func (l *Latest) Snapshot() *Snapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.snap
}

// Updates is signalled after Put: one signal stands for every Put since
// the last one was received, so a reader takes Snapshot after it. The
// channel is never closed. It is meant for one reader (the render loop):
// with several, each signal reaches only one of them.
func (l *Latest) Updates() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.chanLocked()
}

// chanLocked returns the update channel, made on first use for a zero
// Latest.
func (l *Latest) chanLocked() chan struct{} {
	if l.ch == nil {
		l.ch = make(chan struct{}, 1)
	}
	return l.ch
}
