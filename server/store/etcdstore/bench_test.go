package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/svcreg/svcreg/server"
	"github.com/svcreg/svcreg/server/store"
	"github.com/svcreg/svcreg/server/store/boltstore"
	"github.com/svcreg/svcreg/server/store/etcdstore"
	"github.com/svcreg/svcreg/server/store/etcdstore/etcdtest"
)

// The benchmarks compare the etcd store, over one etcd member with one
// svcreg node and over three members with three nodes, with the embedded
// store measured in the same run (the baseline): the same HTTP API, the
// same clients, on this machine. etcd syncs its log to disk as in
// production. Run them with
//
//	go test -run '^$' -bench . -benchtime 5s ./server/store/etcdstore/

// setup is one way of running the registry for a benchmark.
type setup struct {
	name  string
	start func(b *testing.B, limits store.Limits) []*node
}

var setups = []setup{
	{"store=bolt", func(b *testing.B, limits store.Limits) []*node {
		return []*node{startBoltNode(b, limits)}
	}},
	{"store=etcd/nodes=1", func(b *testing.B, limits store.Limits) []*node {
		c := etcdtest.Start(b, etcdtest.Options{Fsync: true})
		return startNodes(b, c, 1, etcdstore.Options{DefaultLimits: limits})
	}},
	{"store=etcd/nodes=3", func(b *testing.B, limits store.Limits) []*node {
		c := etcdtest.Start(b, etcdtest.Options{Members: 3, Fsync: true})
		return startNodes(b, c, 3, etcdstore.Options{DefaultLimits: limits})
	}},
}

// startBoltNode serves the embedded store as a node (it cannot be crashed
// or restarted; the benchmarks do neither).
func startBoltNode(b *testing.B, limits store.Limits) *node {
	b.Helper()
	st, err := boltstore.Open(b.TempDir(), boltstore.Options{DefaultLimits: limits})
	if err != nil {
		b.Fatal(err)
	}
	auth := server.NewAuth(server.AuthConfig{Store: st, Dev: true})
	reg := prometheus.NewRegistry()
	api := server.New(server.Config{Store: st, Auth: auth, Registerer: reg})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hs := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		go st.Run(ctx)
		if err := hs.Serve(api.Listener(ln)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			b.Error(err)
		}
	}()
	b.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		api.Drain(sctx)
		hs.Shutdown(sctx)
		cancel()
		<-done
		st.Close()
	})
	return &node{t: b, URL: "http://" + ln.Addr().String(), reg: reg}
}

// baseline holds the embedded store's results of this run, by benchmark.
var baseline sync.Map // string -> float64

// reportRatio reports metric/baseline as "x-bolt" once the embedded
// store's result of the same benchmark is known.
func reportRatio(b *testing.B, bench, setupName string, value float64, higherIsBetter bool) {
	if setupName == "store=bolt" {
		baseline.Store(bench, value)
		return
	}
	v, ok := baseline.Load(bench)
	if !ok || v.(float64) == 0 || value == 0 {
		return
	}
	if higherIsBetter {
		b.ReportMetric(value/v.(float64), "x-bolt")
	} else {
		b.ReportMetric(v.(float64)/value, "x-bolt")
	}
}

// BenchmarkHeartbeats measures heartbeat throughput: 64 clients, each
// heartbeating its own 8 services in turn over HTTP, spread over the
// nodes. It reports heartbeats/s, heartbeats per etcd transaction, and the
// ratio to the embedded store's (x-bolt: 0.5 is half as many per second).
// The batch=1 run commits each heartbeat in a transaction of its own, as
// many at once as there are clients: what group commit saves.
func BenchmarkHeartbeats(b *testing.B) {
	const clients, perClient = 64, 8
	unbatched := setup{"store=etcd/nodes=1/batch=1", func(b *testing.B, limits store.Limits) []*node {
		c := etcdtest.Start(b, etcdtest.Options{Fsync: true})
		return startNodes(b, c, 1, etcdstore.Options{DefaultLimits: limits, HeartbeatBatch: 1, HeartbeatCommitters: clients})
	}}
	for _, su := range append(slices.Clone(setups), unbatched) {
		b.Run(su.name, func(b *testing.B) {
			nodes := su.start(b, store.Limits{Services: clients * perClient, ConfigValues: 10})
			u := login(b, nodes[0], "bench-heartbeats")
			tokens := make([][]string, clients)
			for c := range clients {
				tokens[c] = make([]string, perClient)
				for i := range perClient {
					tokens[c][i] = u.create(nodes[c%len(nodes)], fmt.Sprintf("svc-%02d-%d", c, i), 120)
				}
			}
			var next atomic.Int64
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for c := range clients {
				wg.Go(func() {
					n := nodes[c%len(nodes)]
					for k := 0; next.Add(1) <= int64(b.N); k++ {
						i := k % perClient
						id := fmt.Sprintf("svc-%02d-%d", c, i)
						r, err := u.try(n, "POST", "/services/"+id+"/heartbeat", map[string]string{"token": tokens[c][i]})
						if err != nil || r.code != 200 {
							b.Errorf("heartbeat: %v %d %s", err, r.code, r.body)
							return
						}
						var out struct{ Token string }
						r.json(&out)
						tokens[c][i] = out.Token
					}
				})
			}
			wg.Wait()
			rate := float64(b.N) / time.Since(start).Seconds()
			b.ReportMetric(rate, "heartbeats/s")
			var batches, beats float64
			for _, n := range nodes {
				c, s := n.histogram("svcreg_store_heartbeat_batch_size")
				batches, beats = batches+c, beats+s
			}
			if batches > 0 {
				b.ReportMetric(beats/batches, "heartbeats/txn")
			}
			reportRatio(b, "heartbeats", su.name, rate, true)
		})
	}
}

// BenchmarkEventFanout measures how long one write takes to reach 600
// waiting long-polls spread over the nodes: from the write's request to
// the last poll's answer (ns/op), and the ratio to the embedded store's
// (x-bolt: 0.5 is twice as long).
func BenchmarkEventFanout(b *testing.B) {
	const waiters = 600
	for _, su := range setups {
		b.Run(su.name, func(b *testing.B) {
			nodes := su.start(b, store.Limits{Services: 10, ConfigValues: 10})
			u := login(b, nodes[0], "bench-fanout")
			b.ResetTimer()
			var total time.Duration
			for i := range b.N {
				b.StopTimer()
				marker := u.listMarker(nodes[0])
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				answered := make(chan error, waiters)
				for w := range waiters {
					go func() {
						r, err := u.tryCtx(ctx, nodes[w%len(nodes)], "GET", "/events?wait=60&marker="+marker, nil)
						if err == nil && r.code != 200 {
							err = fmt.Errorf("status %d", r.code)
						}
						answered <- err
					}()
				}
				waitParked(b, nodes, waiters)
				b.StartTimer()
				start := time.Now()
				u.do(nodes[i%len(nodes)], "PUT", "/configuration/key-1", map[string]string{"value": fmt.Sprint(i)}, 204)
				for range waiters {
					if err := <-answered; err != nil {
						b.Fatal(err)
					}
				}
				total += time.Since(start)
				cancel()
			}
			reportRatio(b, "fanout", su.name, float64(total)/float64(b.N), false)
		})
	}
}

// waitParked waits until the nodes hold n waiting long-polls between them.
func waitParked(b *testing.B, nodes []*node, n int) {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		total := 0.0
		for _, x := range nodes {
			total += x.metric("svcreg_longpolls_waiting")
		}
		if int(total) >= n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%v of %d long-polls waiting after a minute", total, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
