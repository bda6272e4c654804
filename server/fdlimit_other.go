//go:build !unix

package server

// descriptorLimit is unknown here; the defaults assume 4096.
func descriptorLimit() int { return 0 }
