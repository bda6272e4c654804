//go:build !unix

package boltstore

// lockFile does nothing where bbolt's lock is not a flock.
func lockFile(path string) (unlock func(), err error) { return func() {}, nil }
