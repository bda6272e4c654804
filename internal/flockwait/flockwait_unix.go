//go:build unix

// Package flockwait takes an exclusive flock(2) lock, waiting for another
// process to give it back.
package flockwait

import (
	"context"
	"errors"
	"os"
	"syscall"
	"time"

	"github.com/svcreg/svcreg/internal/retry"
)

// ErrHeld is Lock's error when another process held the lock until the
// deadline.
var ErrHeld = errors.New("the lock is held by another process")

// Lock takes the exclusive lock of f, trying again (20–250 ms apart,
// jittered) while another process holds it, until deadline (ErrHeld) or
// until ctx ends (its error). waiting, if not nil, is called once, when
// the first try finds the lock held.
func Lock(ctx context.Context, f *os.File, deadline time.Time, waiting func()) error {
	bo := retry.Backoff{Min: 20 * time.Millisecond, Max: 250 * time.Millisecond}
	for first := true; ; first = false {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return err
		}
		if time.Now().After(deadline) {
			return ErrHeld
		}
		if first && waiting != nil {
			waiting()
		}
		if err := retry.Sleep(ctx, bo.Next()); err != nil {
			return err
		}
	}
}
