//go:build !unix

package boltstore

// keepOwner does nothing where files have no unix owner.
func keepOwner(path, ref string) error { return nil }
