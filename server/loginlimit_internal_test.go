package server

import (
	"context"
	"errors"
	"testing"
	"time"
)

// The bcrypt gate runs at most BcryptConcurrency checks at once, queues at
// most BcryptQueue, and refuses the rest with errBusy at once.
func TestBcryptGateBoundsRunningAndWaitingChecks(t *testing.T) {
	t.Parallel()
	g := newBcryptGate(AuthLimits{BcryptConcurrency: 1, BcryptQueue: 1, BcryptWait: time.Hour})
	running, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() { first <- g.do(context.Background(), func() { close(running); <-release }) }()
	<-running

	ctx, cancel := context.WithCancel(context.Background())
	queued := make(chan error, 1)
	ran := false
	go func() { queued <- g.do(ctx, func() { ran = true }) }()
	for len(g.waiting) == 0 {
		time.Sleep(time.Millisecond)
	}
	if err := g.do(context.Background(), func() { t.Error("a check past the queue ran") }); !errors.Is(err, errBusy) {
		t.Errorf("a check past the queue: %v, want errBusy", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Errorf("first check: %v", err)
	}
	if err := <-queued; err != nil || !ran {
		t.Errorf("queued check: %v, ran %v; want it run once the slot is free", err, ran)
	}
	cancel()
}

// A check that waits longer than BcryptWait is refused with errBusy.
func TestBcryptGateWaitIsBounded(t *testing.T) {
	t.Parallel()
	g := newBcryptGate(AuthLimits{BcryptConcurrency: 1, BcryptQueue: 4, BcryptWait: 10 * time.Millisecond})
	release := make(chan struct{})
	running := make(chan struct{})
	go g.do(context.Background(), func() { close(running); <-release })
	<-running
	defer close(release)
	if err := g.do(context.Background(), func() { t.Error("ran while the slot was taken") }); !errors.Is(err, errBusy) {
		t.Errorf("got %v, want errBusy", err)
	}
}
