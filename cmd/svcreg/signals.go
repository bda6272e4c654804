package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// errStopped ends a run group on SIGTERM or SIGINT: a graceful stop, exit
// status 0.
var errStopped = errors.New("stopped by signal")

// notifyStopOrReload starts catching SIGTERM, SIGINT and SIGHUP for
// stopOrReload. Call it before saying the daemon has started, so that a
// signal sent at once is not fatal; signal.Stop it when done.
func notifyStopOrReload() chan os.Signal {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	return sigs
}

// stopOrReload returns errStopped on SIGTERM or SIGINT and calls reload on
// each SIGHUP, until ctx is done.
func stopOrReload(ctx context.Context, log *slog.Logger, sigs <-chan os.Signal, reload func()) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case s := <-sigs:
			if s == syscall.SIGHUP {
				reload()
				continue
			}
			log.Info("stopping", "signal", s.String())
			return errStopped
		}
	}
}
