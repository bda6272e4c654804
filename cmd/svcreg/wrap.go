package main

import (
	"context"
	"io"

	"github.com/svcreg/svcreg/wrapper"
)

// runWrap is `svcreg wrap`: service-registry-wrapper under the svcreg
// command, with the same flags and behaviour (package wrapper). It owns the
// process's children and signals, so tests run it as a child process.
func runWrap(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if code := wrapper.Main(ctx, "svcreg wrap", args, stdin, stdout, stderr); code != exitOK {
		// wrapper.Main has said what went wrong.
		return exitCodeError{code: code}
	}
	return nil
}
