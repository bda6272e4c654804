package render_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/svcreg/svcreg/examples"
	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/render"
	"github.com/svcreg/svcreg/server/store"
	"github.com/svcreg/svcreg/watcher"
)

// exampleSet parses the nginx upstreams example into dir.
func exampleSet(b *testing.B, dir string, reload string) *render.Set {
	b.Helper()
	src := filepath.Join(dir, "upstreams.tmpl")
	if err := os.WriteFile(src, []byte(examples.NginxUpstreams), 0o644); err != nil {
		b.Fatal(err)
	}
	c := render.Config{Templates: []render.TemplateConfig{{Source: src, Destination: filepath.Join(dir, "upstreams.conf"), Reload: reload}},
		Wait: render.WaitConfig{Min: 0, Max: 0}}
	if err := c.Normalize(); err != nil {
		b.Fatal(err)
	}
	set, err := render.NewSet(c)
	if err != nil {
		b.Fatal(err)
	}
	return set
}

func services(n int) []registry.Service {
	out := make([]registry.Service, n)
	for i := range out {
		out[i] = registry.Service{ID: fmt.Sprintf("web-%05d", i), Tags: []string{"www"}, HeartbeatTimeout: 30,
			Metadata: map[string]string{"ip": fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), "port": "8080", "weight": "2"}}
	}
	return out
}

// handWritten renders what the nginx example renders, without templates:
// the baseline of BenchmarkRenderNginx.
func handWritten(snap *watcher.Snapshot) []byte {
	var sb strings.Builder
	sb.WriteString("# header\nupstream www {\n")
	for _, s := range snap.Services() {
		if !slices.Contains(s.Tags, "www") || s.Metadata["ip"] == "" || s.Metadata["port"] == "" {
			continue
		}
		sb.WriteString("    server " + s.Metadata["ip"] + ":" + s.Metadata["port"])
		if w := s.Metadata["weight"]; w != "" {
			sb.WriteString(" weight=" + w)
		}
		sb.WriteString(";  # " + s.ID + "\n")
	}
	sb.WriteString("    keepalive 16;\n}\n")
	return []byte(sb.String())
}

// BenchmarkRenderNginx renders the nginx upstreams example on 1,000 and
// 10,000 services; the baseline is the same output written by hand.
func BenchmarkRenderNginx(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		snap := watcher.NewSnapshot(services(n), nil, "m", time.Now())
		b.Run(fmt.Sprintf("services=%d/template", n), func(b *testing.B) {
			set := exampleSet(b, b.TempDir(), "")
			tmpl := set.Groups[0].Templates[0]
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tmpl.Render(snap); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("services=%d/baseline", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				handWritten(snap)
			}
		})
	}
}

// BenchmarkRenderMetaAs renders a server line a service with a
// metadata value checked by metaAs, on 10,000 services; the baseline is
// the same line with the value read by meta, unchecked.
func BenchmarkRenderMetaAs(b *testing.B) {
	snap := watcher.NewSnapshot(services(10000), nil, "m", time.Now())
	for _, c := range []struct{ name, value string }{
		{"metaAs", `metaAs . "weight" "1" "number" 1 100`},
		{"baseline", `meta . "weight" "1"`},
	} {
		b.Run(c.name, func(b *testing.B) {
			dir := b.TempDir()
			src := filepath.Join(dir, "t.tmpl")
			text := "{{range services}}server {{.ID}} weight={{" + c.value + "}};\n{{end}}"
			if err := os.WriteFile(src, []byte(text), 0o644); err != nil {
				b.Fatal(err)
			}
			cfg := render.Config{Templates: []render.TemplateConfig{{Source: src, Destination: filepath.Join(dir, "t.conf")}}}
			if err := cfg.Normalize(); err != nil {
				b.Fatal(err)
			}
			set, err := render.NewSet(cfg)
			if err != nil {
				b.Fatal(err)
			}
			tmpl := set.Groups[0].Templates[0]
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tmpl.Render(snap); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEventToInstall measures, with wait 0, the time from a
// registry write being acknowledged to the rendered file holding it:
// server, watcher long-poll, render and atomic install. It reports p50 and
// p99 over b.N changes.
func BenchmarkEventToInstall(b *testing.B) {
	srv := testserver.Start(b, testserver.Options{Limits: store.Limits{Services: 100000, ConfigValues: 1000}})
	c, err := registry.New(registry.Config{URL: srv.APIURL, AuthURL: srv.AuthURL, Username: "bench-latency", APIKey: "dev"})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := b.TempDir()
	set := exampleSet(b, dir, "")
	dest := set.Groups[0].Templates[0].Destination
	w := watcher.New(watcher.Config{Client: c})
	go w.Run(ctx)
	go (&render.Loop{Renderer: render.NewRenderer(nil, nil, nil), Source: w}).Run(ctx, set)
	// The first render, then b.N changes one at a time.
	waitFile(b, dest, "keepalive")
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := fmt.Sprintf("web-%06d", i)
		if _, err := c.CreateService(ctx, registry.Service{ID: id, Tags: []string{"www"}, HeartbeatTimeout: 120,
			Metadata: map[string]string{"ip": "10.0.0.1", "port": "80"}}); err != nil {
			b.Fatal(err)
		}
		acked := time.Now()
		waitFile(b, dest, "# "+id+"\n")
		lat = append(lat, time.Since(acked))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

func waitFile(b *testing.B, path, want string) {
	for deadline := time.Now().Add(30 * time.Second); ; {
		if data, err := os.ReadFile(path); err == nil && strings.Contains(string(data), want) {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s never held %q", path, want)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// BenchmarkReloadsDuringChurn runs 10 seconds of churn — services joining
// and leaving at 50 changes a second — against the default [wait]
// (100ms:2s) and reports how many reloads it caused per change. Run it with
// -benchtime=1x.
func BenchmarkReloadsDuringChurn(b *testing.B) {
	srv := testserver.Start(b, testserver.Options{Limits: store.Limits{Services: 100000, ConfigValues: 1000}})
	c, err := registry.New(registry.Config{URL: srv.APIURL, AuthURL: srv.AuthURL, Username: "bench-churn", APIKey: "dev"})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := b.TempDir()
	log := filepath.Join(dir, "reloads")
	set := exampleSet(b, dir, "echo reload >> "+log)
	set.Config.Wait = render.WaitConfig{Min: render.Duration(render.DefaultWaitMin), Max: render.Duration(render.DefaultWaitMax)}
	w := watcher.New(watcher.Config{Client: c})
	go w.Run(ctx)
	go (&render.Loop{Renderer: render.NewRenderer(nil, nil, nil), Source: w}).Run(ctx, set)
	waitFile(b, set.Groups[0].Templates[0].Destination, "keepalive")
	for i := 0; i < b.N; i++ {
		before := countLines(log)
		changes := 0
		tick := time.NewTicker(20 * time.Millisecond)
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); <-tick.C {
			id := fmt.Sprintf("churn-%d-%d", i, changes/2)
			if changes%2 == 0 {
				_, err = c.CreateService(ctx, registry.Service{ID: id, Tags: []string{"www"}, HeartbeatTimeout: 120,
					Metadata: map[string]string{"ip": "10.0.0.1", "port": "80"}})
			} else {
				err = c.DeleteService(ctx, id)
			}
			if err != nil {
				b.Fatal(err)
			}
			changes++
		}
		tick.Stop()
		time.Sleep(3 * time.Second) // the last debounce
		reloads := countLines(log) - before
		b.ReportMetric(float64(changes), "changes")
		b.ReportMetric(float64(reloads), "reloads")
		b.ReportMetric(float64(reloads)/float64(changes), "reloads/change")
	}
}

func countLines(path string) int {
	data, _ := os.ReadFile(path)
	return strings.Count(string(data), "\n")
}
