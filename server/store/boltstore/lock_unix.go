//go:build unix

package boltstore

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/svcreg/svcreg/internal/flockwait"
)

// lockFile takes the lock a server takes on the database file at path
// (bbolt's flock), waiting up to lockTimeout for it, and returns what
// gives it back. A server that opens the file meanwhile waits for it.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if err := flockwait.Lock(context.Background(), f, time.Now().Add(lockTimeout), nil); err != nil {
		f.Close()
		if errors.Is(err, flockwait.ErrHeld) {
			return nil, &InUseError{Path: path}
		}
		return nil, err
	}
	return func() { f.Close() }, nil
}
