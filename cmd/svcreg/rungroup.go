package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/oklog/run"
)

// addHTTPServer adds hs to g as an actor: serve runs it (hs.Serve on a
// listener, or a handler's own Serve) until the group stops; then drain,
// if not nil, lets held requests (long-polls) answer, and connections get
// grace to finish before those still busy are closed.
func addHTTPServer(g *run.Group, log *slog.Logger, hs *http.Server, serve func() error, drain func(context.Context), grace time.Duration) {
	g.Add(func() error {
		if err := serve(); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}, func(error) {
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		if drain != nil {
			drain(ctx)
		}
		if err := hs.Shutdown(ctx); err != nil {
			log.Warn("shutdown: closing connections still busy", "err", err)
			hs.Close()
		}
	})
}
