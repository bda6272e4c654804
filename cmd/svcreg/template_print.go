package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"syscall"
	"time"

	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/render"
	"github.com/svcreg/svcreg/watcher"
)

// runPrint is --print: sync, render every template, print each full
// output to stdout, exit. No file is written and no command run.
func runPrint(ctx context.Context, log *slog.Logger, w *watcher.Watcher, r *render.Renderer, set *render.Set, timeout time.Duration, stdout io.Writer) error {
	ctx, stop := watchUntilSignal(ctx, w)
	defer stop()
	snap, err := render.WaitSynced(ctx, w, timeout)
	if err != nil {
		return syncError(ctx, err, w)
	}
	if err := r.Print(ctx, set, snap, stdout); err != nil {
		return exitCodeError{exitRender, err}
	}
	log.Debug("printed every template", "marker", snap.Marker)
	return nil
}

// watchUntilSignal runs w in the background for a one-shot command (--once,
// --print). The context it returns ends on SIGINT or SIGTERM, and when the
// watcher gives up (refused credentials: StopOnRefusedCredentials), with
// its error as the cause; stop ends the watcher and waits for it.
func watchUntilSignal(ctx context.Context, w *watcher.Watcher) (context.Context, func()) {
	ctx, stopSignals := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	ctx, gaveUp := context.WithCancelCause(ctx)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.Run(wctx); err != nil {
			gaveUp(err)
		}
	}()
	return ctx, func() { cancel(); <-done; gaveUp(nil); stopSignals() }
}

// syncError is the error of a one-shot command that could not wait for
// the first sync: exit 3 when the registry refused the credentials, 4 on a
// timeout, with the watcher's last error.
func syncError(ctx context.Context, err error, w *watcher.Watcher) error {
	if cause := context.Cause(ctx); errors.Is(cause, registry.ErrUnauthorized) {
		return exitCodeError{exitConfig, cause}
	}
	if !errors.Is(err, render.ErrSyncTimeout) {
		return err
	}
	if st := w.Status(); st.LastError != "" {
		err = fmt.Errorf("%w (last error: %s)", err, st.LastError)
	}
	return exitCodeError{exitSync, err}
}
