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

// stopOrReload returns errStopped on SIGTERM or SIGINT and has reload
// called after each SIGHUP, until ctx is done. reload runs on a goroutine
// of its own, once for any number of SIGHUPs that come while it runs: a
// reload of the templates waits for the pass under way (a check of up to
// its check_timeout), and the signals must still be read meanwhile, or a
// SIGTERM would wait behind it, and past the channel's few be dropped.
// The goroutine ends with ctx.
func stopOrReload(ctx context.Context, log *slog.Logger, sigs <-chan os.Signal, reload func()) error {
	hups := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hups:
				if ctx.Err() == nil { // not when stopping meanwhile
					reload()
				}
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case s := <-sigs:
			if s == syscall.SIGHUP {
				select {
				case hups <- struct{}{}:
				default: // one is waiting already: it reloads what this would
				}
				continue
			}
			log.Info("stopping", "signal", s.String())
			return errStopped
		}
	}
}
