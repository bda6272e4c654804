package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/svcreg/svcreg/examples"
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
each time it changes. It takes about half a minute; Ctrl-C stops it.`

func runDemo(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", "svcreg demo [--out FILE]", demoDescription, stderr)
	out := fs.String("out", "", "`file` to render into (default: a temporary file)")
	step := fs.Duration("step", 3*time.Second, "pause between the demo's steps")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	stdout = &lockedWriter{w: stdout} // the steps and the file printer share it
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
	defer st.Close()
	api := server.New(server.Config{Store: st, Auth: server.NewAuth(server.AuthConfig{Store: st, Dev: true})})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second}
	go api.Serve(hs, ln)
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		api.Drain(sctx)
		hs.Shutdown(sctx)
	}()
	sctx, cancelStore := context.WithCancel(ctx)
	defer cancelStore()
	go st.Run(sctx)
	apiURL := "http://" + ln.Addr().String() + "/v1.0"
	fmt.Fprintf(stdout, "registry: %s (user dev, API key dev)\n", apiURL)

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
	renderer := render.NewRenderer(log, nil, nil)
	loop := &render.Loop{Renderer: renderer, Source: w}
	go w.Run(sctx)
	go loop.Run(sctx, set)
	fmt.Fprintf(stdout, "rendering examples/nginx/upstreams.tmpl into %s\n", dest)
	printed := make(chan struct{})
	go func() { defer close(printed); printChanges(sctx, stdout, dest) }()
	defer func() { cancelStore(); <-printed }()

	// 3. Services come and go.
	beaters := map[string]*registry.Heartbeater{}
	join := func(id, ip, port, weight string, timeout int) error {
		md := map[string]string{"ip": ip, "port": port}
		if weight != "" {
			md["weight"] = weight
		}
		fmt.Fprintf(stdout, "\n>>> %s joins (tag www, %s:%s, heartbeat timeout %ds)\n", id, ip, port, timeout)
		hb, err := client.Register(sctx, registry.Service{ID: id, Tags: []string{"www"}, Metadata: md, HeartbeatTimeout: timeout}, registry.RegisterOptions{})
		beaters[id] = hb
		return err
	}
	steps := []func() error{
		func() error { return join("web-1", "10.0.0.11", "8080", "", 30) },
		func() error { return join("web-2", "10.0.0.12", "8080", "3", 30) },
		func() error { return join("web-3", "10.0.0.13", "8080", "", 3) },
		func() error {
			fmt.Fprintf(stdout, "\n>>> configuration /nginx/keepalive = 64\n")
			return client.SetConfig(sctx, "/nginx/keepalive", "64")
		},
		func() error {
			fmt.Fprintf(stdout, "\n>>> web-2 leaves (deregisters)\n")
			beaters["web-2"].Stop()
			return client.DeleteService(sctx, "web-2")
		},
		func() error {
			fmt.Fprintf(stdout, "\n>>> web-3 stops heartbeating; the registry times it out within its 3s\n")
			beaters["web-3"].Stop()
			return nil
		},
	}
	for _, s := range steps {
		if err := sleepCtx(ctx, *step); err != nil {
			return nil
		}
		if err := s(); err != nil {
			return fmt.Errorf("demo step: %w", err)
		}
	}
	if err := sleepCtx(ctx, *step+4*time.Second); err != nil {
		return nil
	}
	fmt.Fprintf(stdout, "\ndone: that was `svcreg template` keeping an nginx upstream in step with the registry.\n")
	for _, hb := range beaters {
		hb.Stop()
	}
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
		if sleepCtx(ctx, 50*time.Millisecond) != nil {
			return
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// lockedWriter serialises writes from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
