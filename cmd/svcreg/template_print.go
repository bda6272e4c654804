package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/render"
	"github.com/svcreg/svcreg/watcher"
)

// runPrint is --print: sync, render every template, print each full
// output to stdout, exit. No file is written and no command run.
func runPrint(ctx context.Context, log *slog.Logger, w *watcher.Watcher, r *render.Renderer, set *render.Set, timeout time.Duration, stdout io.Writer) error {
	ctx, stop := watchUntilSignal(ctx, w)
	defer stop(nil)
	snap, err := render.WaitSynced(ctx, w, timeout)
	if err := interruptedError(ctx); err != nil {
		return err
	}
	if err != nil {
		return syncError(ctx, err, w, stop)
	}
	if err := r.Print(ctx, set, snap, stdout); err != nil {
		if err := interruptedError(ctx); err != nil {
			return err
		}
		return exitCodeError{exitRender, err}
	}
	log.Debug("printed every template", "marker", snap.Marker)
	return nil
}

// watchUntilSignal runs w in the background for a one-shot command (--once,
// --print). The context it returns ends on SIGINT or SIGTERM, and when the
// watcher gives up (refused credentials: StopOnRefusedCredentials), with
// its error as the cause; stop ends the watcher, its requests under way
// with cause (if not nil), and waits for it. stop may be called again.
func watchUntilSignal(ctx context.Context, w *watcher.Watcher) (context.Context, func(cause error)) {
	ctx, interrupt := context.WithCancelCause(ctx)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	quit := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			// A second signal takes its default action: it ends a stop
			// that waits (a reload under way runs to its end).
			signal.Stop(sigs)
			interrupt(interrupted{s.(syscall.Signal)})
		case <-quit:
		}
	}()
	stopSignals := func() { signal.Stop(sigs); close(quit) }
	ctx, gaveUp := context.WithCancelCause(ctx)
	wctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.Run(wctx); err != nil {
			gaveUp(err)
		}
	}()
	var once sync.Once
	return ctx, func(cause error) {
		once.Do(func() { cancel(cause); <-done; gaveUp(nil); stopSignals() })
	}
}

// interrupted is the cause of a one-shot command's end by SIGINT or
// SIGTERM: it exits with 128+N, as a process the signal ended, so that a
// deploy script tells a stop from a failure.
type interrupted struct{ sig syscall.Signal }

func (i interrupted) Error() string { return "stopped by " + unix.SignalName(i.sig) }

// interruptedError is the exit of a one-shot command that a signal
// ended, or nil.
func interruptedError(ctx context.Context) error {
	var in interrupted
	if errors.As(context.Cause(ctx), &in) {
		return exitCodeError{128 + int(in.sig), in}
	}
	return nil
}

// syncError is the error of a one-shot command that could not wait for
// the first sync: exit 3 when the registry refused the credentials, 4 on a
// timeout, with the watcher's last error and what it was still waiting for
// (the login at the identity service, or a page of the list: stop ends
// the watcher, and the request it cuts short says which, and where).
func syncError(ctx context.Context, err error, w *watcher.Watcher, stop func(cause error)) error {
	if cause := context.Cause(ctx); errors.Is(cause, registry.ErrUnauthorized) {
		return exitCodeError{exitConfig, cause}
	}
	if !errors.Is(err, render.ErrSyncTimeout) {
		return err
	}
	stop(errGivenUp)
	st := w.Status()
	var why []string
	if st.LastError != "" {
		why = append(why, "last error: "+st.LastError)
	}
	if st.Unanswered != "" {
		why = append(why, "still waiting for: "+st.Unanswered)
	}
	if len(why) > 0 {
		err = fmt.Errorf("%w (%s)", err, strings.Join(why, "; "))
	}
	return exitCodeError{exitSync, err}
}

// errGivenUp ends the requests of a one-shot command's watcher still
// under way at --once-timeout: their errors, which name them, end with it.
var errGivenUp = errors.New("given up at --once-timeout")
