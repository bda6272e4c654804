// Package mailbox holds a latest-value mailbox: a writer that never blocks
// and never loses the newest value, and a reader that wakes once for any
// number of writes and takes the newest.
package mailbox

import "sync"

// Mailbox holds the newest value put in it. Put never blocks and replaces
// a value not taken yet; Ready is signalled after a Put, once however many
// Puts came before the reader looked. The zero value is not usable; use
// New.
type Mailbox[T any] struct {
	mu    sync.Mutex
	v     T
	full  bool
	ready chan struct{}
}

// New returns an empty Mailbox.
func New[T any]() *Mailbox[T] { return &Mailbox[T]{ready: make(chan struct{}, 1)} }

// Put makes v the value to take, replacing one not taken yet.
func (m *Mailbox[T]) Put(v T) {
	m.mu.Lock()
	m.v, m.full = v, true
	m.mu.Unlock()
	select {
	case m.ready <- struct{}{}:
	default: // already signalled; the reader will take v
	}
}

// Take returns the newest value put and empties the mailbox; ok is false
// if nothing was put since the last Take.
func (m *Mailbox[T]) Take() (v T, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok = m.v, m.full
	var zero T
	m.v, m.full = zero, false
	return v, ok
}

// Ready is signalled after a Put; receive from it, then Take.
func (m *Mailbox[T]) Ready() <-chan struct{} { return m.ready }
