package watcher

import "sync"

// Latest holds the newest snapshot and signals when it changes; a slow
// reader skips the snapshots it missed and sees the newest. It is a
// render.Source.
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
	l.mu.Unlock()
	select {
	case l.ch <- struct{}{}:
	default:
	}
}

// Snapshot returns the newest snapshot, or nil before the first.
func (l *Latest) Snapshot() *Snapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.snap
}

// Updates is signalled after Put.
func (l *Latest) Updates() <-chan struct{} { return l.ch }
