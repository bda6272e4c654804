//go:build !linux

// Package undumpable keeps a process's memory and environment from the
// other processes of its user.
package undumpable

// Set does nothing: only Linux has PR_SET_DUMPABLE.
func Set() error { return nil }
