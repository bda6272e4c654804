package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/svcreg/svcreg/internal/connslots"
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
// conns connections at once, each closed once answered (an idle one would
// keep its slot, and a client with one request per connection would hold
// them all), with 5 s to send headers of at most 16 KiB. So it cannot take
// the descriptors the program needs for its own work. Past conns, a new
// connection takes the slot of one whose request has not arrived
// (connslots: of the client address with the most such), so connections
// that send nothing cannot keep a health probe or a scrape out; with
// every one in a request, it waits for one to end.
func addBoundedServer(g *run.Group, log *slog.Logger, ln net.Listener, h http.Handler, conns int) {
	limited := connslots.Listen(ln, conns)
	hs := &http.Server{Handler: limited.Handler(h), ConnContext: limited.ConnContext,
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, MaxHeaderBytes: 16 << 10, ErrorLog: logging.ErrorLog(log.Handler())}
	hs.SetKeepAlivesEnabled(false)
	addHTTPServer(g, log, hs, func() error { return hs.Serve(limited) }, nil, 5*time.Second)
}

// metricsHandler serves reg's metrics one request at a time: gathering
// and encoding them costs tens of times a /healthz (1.5 ms of CPU here), and
// /metrics is open to whoever reaches the port, so that clients asking at
// once, however many, keep at most one processor busy with it. Up to
// maxMetricsWaiting more wait their turn (a second scraper, say), for as
// long as their client does; past that a request is answered 503 at once.
func metricsHandler(reg prometheus.Gatherer) http.Handler {
	return oneAtATime(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), maxMetricsWaiting, nil)
}

// maxMetricsWaiting is how many /metrics requests wait for their turn.
const maxMetricsWaiting = 16

// oneAtATime serves h to one request at a time, with up to waiting more
// waiting their turn (each calls waited, if not nil, once it has its
// place); past that it answers 503 at once.
func oneAtATime(h http.Handler, waiting int, waited func()) http.Handler {
	turn := make(chan struct{}, 1)
	places := make(chan struct{}, waiting)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case places <- struct{}{}:
		default:
			w.Header().Set("Retry-After", "1")
			http.Error(w, "too many requests at once; try again", http.StatusServiceUnavailable)
			return
		}
		if waited != nil {
			waited()
		}
		select {
		case turn <- struct{}{}:
			<-places
		case <-r.Context().Done():
			<-places
			return
		}
		defer func() { <-turn }()
		h.ServeHTTP(w, r)
	})
}
