//go:build !linux

package wrapper

// hideFromCommand does nothing: only Linux has PR_SET_DUMPABLE.
func hideFromCommand() error { return nil }
