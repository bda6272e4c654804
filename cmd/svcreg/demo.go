package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/oklog/run"

	"github.com/svcreg/svcreg/examples"
	"github.com/svcreg/svcreg/internal/logging"
	"github.com/svcreg/svcreg/internal/retry"
	"github.com/svcreg/svcreg/internal/statuspage"
	"github.com/svcreg/svcreg/internal/supervise"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/render"
	"github.com/svcreg/svcreg/server"
	"github.com/svcreg/svcreg/server/store/boltstore"
	"github.com/svcreg/svcreg/watcher"
)

const demoDescription = `
Shows svcreg's main job on one machine, with nothing to set up: it starts a
registry server (embedded store in a temporary directory), runs the renderer
on the nginx upstreams example (examples/nginx/upstreams.tmpl), and registers
example services that join, leave and time out, printing the rendered file
each time it changes. It takes about half a minute; Ctrl-C stops it. The
renderer's errors are printed to standard error, and make the demo exit 1.`

func runDemo(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", "svcreg demo [--out FILE] [--step D]", demoDescription, stdout)
	out := fs.String("out", "", "`file` to render into (default: a temporary file)")
	step := fs.Duration("step", 3*time.Second, "pause between the demo's steps")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// Output piped into head: a write to the closed pipe returns EPIPE,
	// rather than kill the demo (SIGPIPE, once asked for, is not fatal),
	// and stops it, which then removes its temporary directory. Other
	// descriptors' broken pipes (a client of its registry gone) are only
	// their own errors.
	supervise.SurviveClosedOutput()
	ctx, closedOutput := context.WithCancel(ctx)
	defer closedOutput()
	if *out != "" {
		if fi, err := os.Stat(filepath.Dir(*out)); err != nil || !fi.IsDir() {
			return usageError{fmt.Sprintf("--out %s: its directory %s does not exist: create it, or give a file in one that does", *out, filepath.Dir(*out))}
		}
	}
	stdout = &lockedWriter{w: stdout, onEPIPE: closedOutput} // the steps and the file printer share it
	dir, err := os.MkdirTemp("", "svcreg-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	log := slog.New(slog.DiscardHandler)

	// 1. A registry.
	st, err := boltstore.Open(filepath.Join(dir, "data"), boltstore.Options{})
	if err != nil {
		return err
	}
	defer st.Close() // after the run group: nothing uses the store then
	api := server.New(server.Config{Store: st, Auth: server.NewAuth(server.AuthConfig{Store: st, Dev: true})})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	// Its dev credentials are every web page's: as a --dev server's,
	// requests by another name (DNS rebinding) are refused.
	hs := &http.Server{Handler: statuspage.AddressedOnly(api), ReadHeaderTimeout: 10 * time.Second}
	apiURL := "http://" + ln.Addr().String() + "/v1.0"

	// 2. The renderer on the nginx example.
	tmpl := filepath.Join(dir, "upstreams.tmpl")
	if err := os.WriteFile(tmpl, []byte(examples.NginxUpstreams), 0o644); err != nil {
		return err
	}
	dest := *out
	if dest == "" {
		dest = filepath.Join(dir, "upstreams.conf")
	}
	cfg := render.Config{Templates: []render.TemplateConfig{{Source: tmpl, Destination: dest}},
		Wait: render.WaitConfig{Min: render.Duration(100 * time.Millisecond), Max: render.Duration(time.Second)}}
	if err := cfg.Normalize(); err != nil {
		return err
	}
	set, err := render.NewSet(cfg)
	if err != nil {
		return err
	}
	client, err := registry.New(registry.Config{URL: apiURL, AuthURL: "http://" + ln.Addr().String() + "/v2.0", Username: "dev", APIKey: "dev"})
	if err != nil {
		return err
	}
	defer client.Close()
	w := watcher.New(watcher.Config{Client: client, Logger: log})
	// Every part runs in one group: the first to return (the steps, when
	// done or stopped) stops the others, and the group returns only when
	// all have, so the store is closed after everything that uses it.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The renderer's errors are the demo's: shown, and counted for its
	// exit status, until it stops.
	var failed atomic.Int64
	text, err := logging.New(stderr, "text", "error") // registry text escaped, as in every log
	if err != nil {
		return err
	}
	renderLog := slog.New(countingHandler{text.Handler(), &failed, ctx.Done()})
	loop := &render.Loop{Renderer: render.NewRenderer(renderLog, nil, nil), Source: w}
	var g run.Group
	g.Add(func() error { return st.Run(ctx) }, func(error) { cancel() })
	addHTTPServer(&g, log, hs, func() error { return api.Serve(hs, ln) }, api.Drain, 5*time.Second)
	g.Add(func() error { return w.Run(ctx) }, func(error) { cancel() })
	g.Add(func() error { return loop.Run(ctx, set) }, func(error) { cancel() })
	g.Add(func() error { printChanges(ctx, stdout, dest); return nil }, func(error) { cancel() })
	g.Add(func() error {
		fmt.Fprintf(stdout, "registry: %s (user dev, API key dev)\n", apiURL)
		fmt.Fprintf(stdout, "rendering examples/nginx/upstreams.tmpl into %s\n", dest)
		return demoSteps(ctx, stdout, client, *step)
	}, func(error) { cancel() })
	err = g.Run()
	if n := failed.Load(); err == nil && n > 0 {
		return fmt.Errorf("the renderer failed %d times (see above): %s did not always follow the registry", n, dest)
	}
	return err
}

// countingHandler counts the records it handles in n, until stopped is
// closed: a render the stop cuts short is reported as failed, and is
// none of the demo's failures.
type countingHandler struct {
	slog.Handler
	n       *atomic.Int64
	stopped <-chan struct{}
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	select {
	case <-h.stopped:
		return nil
	default:
	}
	h.n.Add(1)
	return h.Handler.Handle(ctx, r)
}

func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return countingHandler{h.Handler.WithAttrs(as), h.n, h.stopped}
}

func (h countingHandler) WithGroup(name string) slog.Handler {
	return countingHandler{h.Handler.WithGroup(name), h.n, h.stopped}
}

// demoSteps registers services that join, leave and time out, one step
// at a time. It returns nil when done or when ctx ends.
func demoSteps(ctx context.Context, stdout io.Writer, client *registry.Client, step time.Duration) error {
	beaters := map[string]*registry.Heartbeater{}
	defer func() {
		for _, hb := range beaters {
			hb.Stop()
		}
	}()
	join := func(id, ip, port, weight string, timeout int) error {
		md := map[string]string{"ip": ip, "port": port}
		if weight != "" {
			md["weight"] = weight
		}
		fmt.Fprintf(stdout, "\n>>> %s joins (tag www, %s:%s, heartbeat timeout %ds)\n", id, ip, port, timeout)
		hb, err := client.Register(ctx, registry.Service{ID: id, Tags: []string{"www"}, Metadata: md, HeartbeatTimeout: timeout}, registry.RegisterOptions{})
		if hb != nil {
			beaters[id] = hb
		}
		return err
	}
	steps := []func() error{
		func() error { return join("web-1", "10.0.0.11", "8080", "", 30) },
		func() error { return join("web-2", "10.0.0.12", "8080", "3", 30) },
		func() error { return join("web-3", "10.0.0.13", "8080", "", 3) },
		func() error {
			fmt.Fprintf(stdout, "\n>>> configuration /nginx/keepalive = 64\n")
			return client.SetConfig(ctx, "/nginx/keepalive", "64")
		},
		func() error {
			fmt.Fprintf(stdout, "\n>>> web-2 leaves (deregisters)\n")
			beaters["web-2"].Stop()
			return client.DeleteService(ctx, "web-2")
		},
		func() error {
			fmt.Fprintf(stdout, "\n>>> web-3 stops heartbeating; the registry times it out within its 3s\n")
			beaters["web-3"].Stop()
			return nil
		},
	}
	for _, s := range steps {
		if err := retry.Sleep(ctx, step); err != nil {
			return nil
		}
		if err := s(); err != nil {
			if ctx.Err() != nil {
				return nil // stopped by a signal during the step
			}
			return fmt.Errorf("demo step: %w", err)
		}
	}
	if err := retry.Sleep(ctx, step+4*time.Second); err != nil {
		return nil
	}
	fmt.Fprintf(stdout, "\ndone: that was `svcreg template` keeping an nginx upstream in step with the registry.\n")
	return nil
}

// printChanges prints the file whenever its content changes.
func printChanges(ctx context.Context, w io.Writer, path string) {
	last := ""
	for {
		if b, err := os.ReadFile(path); err == nil && string(b) != last {
			last = string(b)
			fmt.Fprintf(w, "--- %s rendered at %s:\n%s", filepath.Base(path), time.Now().Format("15:04:05.000"), last)
		}
		if retry.Sleep(ctx, 50*time.Millisecond) != nil {
			return
		}
	}
}

// lockedWriter serialises writes from several goroutines, and calls
// onEPIPE (if set) when a write finds its reader gone.
type lockedWriter struct {
	mu      sync.Mutex
	w       io.Writer
	onEPIPE func()
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, err := l.w.Write(p)
	if errors.Is(err, syscall.EPIPE) && l.onEPIPE != nil {
		l.onEPIPE()
	}
	return n, err
}
