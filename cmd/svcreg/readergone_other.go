//go:build !linux

package main

import "io"

// readerGone: where the reader's end of a pipe is not watched, the
// command ends at its first write after the reader has gone.
func readerGone(io.Writer, func()) (stop func()) { return func() {} }
