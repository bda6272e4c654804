package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/svcreg/svcreg/registry"
)

// BenchmarkHeartbeatFlood measures what one account heartbeating as fast
// as the server answers costs another account of a real `svcreg server
// --dev`: the other's median and 99th-percentile GET /services (50
// services) and configuration write, each once every 50 ms for 10 s,
// while the flooding account heartbeats its own services on 0, 16 and
// 64 connections (one service each, after 2 s of flood). Heartbeats are
// not rate-limited: this is the share of the server a flood takes. The
// flooding clients run in the benchmark's process, on the same cores.
//
//	go test ./cmd/svcreg -run '^$' -bench HeartbeatFlood -benchtime 1x
func BenchmarkHeartbeatFlood(b *testing.B) {
	for _, conns := range []int{0, 16, 64} {
		b.Run("conns="+strconv.Itoa(conns), func(b *testing.B) {
			for b.Loop() {
				heartbeatFlood(b, conns)
			}
		})
	}
}

func heartbeatFlood(b *testing.B, conns int) {
	bin := os.Args[0]
	if v := os.Getenv("SVCREG_BENCH_BINARY"); v != "" {
		bin = v
	}
	cmd := exec.Command(bin, "server", "--dev", "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(b.TempDir(), "data"))
	cmd.Env = append(os.Environ(), execEnv+"=1")
	base, _, stopServer := startBenchServer(b, cmd)
	defer stopServer()
	ctx := context.Background()
	client := func(user string) *registry.Client {
		c, err := registry.New(registry.Config{URL: base + "/v1.0", Username: user, APIKey: "dev"})
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	victim := client("victim")
	for i := range 50 {
		if _, err := victim.CreateService(ctx, registry.Service{ID: fmt.Sprintf("v-%d", i), HeartbeatTimeout: 120,
			Tags: []string{"www"}, Metadata: map[string]string{"ip": "10.0.0.1", "port": "80"}}); err != nil {
			b.Fatal(err)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var beats atomic.Int64
	for i := range conns {
		c := client("flood")
		id := fmt.Sprintf("f-%d", i)
		token, err := c.CreateService(ctx, registry.Service{ID: id, HeartbeatTimeout: 120})
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if next, err := c.Heartbeat(ctx, id, token); err == nil {
					token = next
					beats.Add(1)
				}
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	if conns > 0 {
		time.Sleep(2 * time.Second)
	}
	var reads, writes []time.Duration
	start, before := time.Now(), beats.Load()
	for i := 0; time.Since(start) < 10*time.Second; i++ {
		t0 := time.Now()
		for _, err := range victim.ListServices(ctx, registry.ServiceListOptions{}) {
			if err != nil {
				b.Fatal(err)
			}
		}
		reads = append(reads, time.Since(t0))
		t0 = time.Now()
		if err := victim.SetConfig(ctx, "bench-key", strconv.Itoa(i)); err != nil {
			b.Fatal(err)
		}
		writes = append(writes, time.Since(t0))
		time.Sleep(50 * time.Millisecond)
	}
	b.ReportMetric(float64(beats.Load()-before)/time.Since(start).Seconds(), "flood-heartbeats/s")
	b.ReportMetric(percentile(reads, 0.5), "list-p50-ms")
	b.ReportMetric(percentile(reads, 0.99), "list-p99-ms")
	b.ReportMetric(percentile(writes, 0.5), "write-p50-ms")
	b.ReportMetric(percentile(writes, 0.99), "write-p99-ms")
}
