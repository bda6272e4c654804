package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/oklog/run"
	"golang.org/x/net/netutil"

	"github.com/svcreg/svcreg/internal/logging"
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

// addBoundedServer adds to g a plain-HTTP server of h on ln for
// whoever reaches the port (a status page, health probes, /metrics):
// conns connections at once, the rest waiting in the kernel's queue, each
// closed once answered (an idle one would keep its slot, and a client
// with one request per connection would hold them all), with 5 s to send
// headers of at most 16 KiB. So it cannot take the descriptors the
// program needs for its own work.
func addBoundedServer(g *run.Group, log *slog.Logger, ln net.Listener, h http.Handler, conns int) {
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, MaxHeaderBytes: 16 << 10, ErrorLog: logging.ErrorLog(log.Handler())}
	hs.SetKeepAlivesEnabled(false)
	limited := netutil.LimitListener(ln, conns)
	addHTTPServer(g, log, hs, func() error { return hs.Serve(limited) }, nil, 5*time.Second)
}
