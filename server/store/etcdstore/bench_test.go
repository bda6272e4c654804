package etcdstore_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/svcreg/svcreg/internal/etcdtest"
	"github.com/svcreg/svcreg/internal/proccpu"
	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/server"
	"github.com/svcreg/svcreg/server/store"
	"github.com/svcreg/svcreg/server/store/boltstore"
	"github.com/svcreg/svcreg/server/store/etcdstore"
)

// The benchmarks compare the etcd store, over one etcd member with one
// svcreg node and over three members with three nodes, with the embedded
// store measured in the same run (the baseline): the same HTTP API, the
// same clients, on this machine. The etcd members run as etcd does by
// default in production (syncing their log to disk, 100 ms heartbeats). Run them with
//
//	go test -run '^$' -bench . -benchtime 5s ./server/store/etcdstore/
//
// (-benchtime as a count, e.g. 40000x, suits BenchmarkHeartbeats: its one
// run does b.N heartbeats). For rounds, loop in the shell: -count repeats
// each sub-benchmark in a row, so the baseline would no longer be measured
// next to what it is compared with.

// setup is one way of running the registry for a benchmark. start
// returns its nodes, and the etcd cluster under them (nil for the
// embedded store).
type setup struct {
	name  string
	start func(b *testing.B, limits store.Limits) ([]*node, *etcdtest.Cluster)
}

var setups = []setup{
	{"store=bolt", func(b *testing.B, limits store.Limits) ([]*node, *etcdtest.Cluster) {
		return []*node{startBoltNode(b, limits)}, nil
	}},
	etcdSetup("store=etcd/nodes=1", 1, func(limits store.Limits) etcdstore.Options {
		return etcdstore.Options{DefaultLimits: limits}
	}),
	etcdSetup("store=etcd/nodes=3", 3, func(limits store.Limits) etcdstore.Options {
		return etcdstore.Options{DefaultLimits: limits}
	}),
}

// etcdSetup is n svcreg nodes over n etcd members run as in production,
// the nodes opened with opts. The nodes reach the members directly, not
// through the test proxies in front of them (etcdtest's ClientURL), which
// run in this process: their copying would count as the deployment's CPU
// and take the shared cores from it.
func etcdSetup(name string, n int, opts func(store.Limits) etcdstore.Options) setup {
	return setup{name, func(b *testing.B, limits store.Limits) ([]*node, *etcdtest.Cluster) {
		c := etcdtest.Start(b, etcdtest.Options{Members: n, Production: true})
		endpoints := make([][]string, n)
		for i := range endpoints {
			endpoints[i] = c.DirectEndpoints()
		}
		return startNodesAt(b, opts(limits), endpoints...), c
	}}
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

// reportCPURatio reports a setup's CPU per heartbeat over the embedded
// store's, as "cpu-x-bolt" (2 is twice its cost), once the embedded
// store's of the same benchmark is known.
func reportCPURatio(b *testing.B, bench, setupName string, cpu float64) {
	key := bench + "/cpu"
	if setupName == "store=bolt" {
		baseline.Store(key, cpu)
		return
	}
	if v, ok := baseline.Load(key); ok && v.(float64) > 0 {
		b.ReportMetric(cpu/v.(float64), "cpu-x-bolt")
	}
}

// BenchmarkHeartbeats measures heartbeat throughput and cost: 64 clients,
// each heartbeating its own 8 services in turn over HTTP, spread over the
// nodes (client c always at node c mod nodes), after one heartbeat of each
// service (on the etcd store, the write by which its node takes hold of
// it; the run counts the writes it still makes). The clients run in a child
// process (this test binary, TestHeartbeatLoad), so that the CPU time
// counted over the run is the deployment's alone: this process's (the
// svcreg nodes) and the etcd members' processes'. It reports
// heartbeats/s, CPU milliseconds per 1,000 heartbeats (cpu-ms/1000hb; the
// etcd members' part of it, etcd-cpu-ms/1000hb), etcd transactions and
// copy requests per heartbeat, a copy request's mean round trip
// (copy-µs/req, wall time), and the ratios to the
// embedded store's (x-bolt: heartbeats/s over bolt's; cpu-x-bolt: CPU per
// heartbeat over bolt's, so 2 is twice bolt's cost).
func BenchmarkHeartbeats(b *testing.B) {
	// The embedded store runs again last, so that the etcd runs are
	// bracketed by two baselines: the machine's load drifts.
	again := setup{"store=bolt/again", setups[0].start}
	// Three nodes without copies of held heartbeat state between them:
	// what the copies cost.
	noCopies := etcdSetup("store=etcd/nodes=3/copies=off", 3, func(limits store.Limits) etcdstore.Options {
		return etcdstore.Options{DefaultLimits: limits, PeerListen: "off"}
	})
	// Three nodes sending each copy at once, sharing a round trip only
	// with those in flight together: what the copy linger does here.
	noLinger := etcdSetup("store=etcd/nodes=3/linger=off", 3, func(limits store.Limits) etcdstore.Options {
		return etcdstore.Options{DefaultLimits: limits, HeartbeatLinger: -1, CopyLinger: -1}
	})
	for _, su := range append(slices.Clone(setups), noCopies, noLinger, again) {
		b.Run(su.name, func(b *testing.B) {
			nodes, cluster := su.start(b, store.Limits{Services: heartbeatClients * servicesEach, ConfigValues: 10})
			urls := make([]string, len(nodes))
			for i, n := range nodes {
				urls[i] = n.URL
			}
			cmd := closedLoad(b, urls, "bench-heartbeats", heartbeatClients)
			t0 := heartbeatTotals(b, gatherers(nodes)...)
			b.ResetTimer()
			self0, members0 := deploymentCPU(b, cluster)
			start := time.Now()
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("load: %v\n%s", err, out)
			}
			elapsed := time.Since(start)
			self1, members1 := deploymentCPU(b, cluster)
			b.StopTimer()
			per1000 := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(b.N) }
			rate := float64(b.N) / elapsed.Seconds()
			cpuPer1000 := per1000(self1 - self0 + members1 - members0)
			b.ReportMetric(rate, "heartbeats/s")
			b.ReportMetric(cpuPer1000, "cpu-ms/1000hb")
			if cluster != nil {
				b.ReportMetric(per1000(members1-members0), "etcd-cpu-ms/1000hb")
			}
			t1 := heartbeatTotals(b, gatherers(nodes)...)
			if su.name != "store=bolt" && su.name != again.name {
				t1.reportSince(b, t0, float64(b.N))
			}
			reportRatio(b, "heartbeats", su.name, rate, true)
			reportCPURatio(b, "heartbeats", su.name, cpuPer1000)
		})
	}
}

// BenchmarkHeartbeats' clients, and the services each client of the
// closed loop heartbeats in turn.
const heartbeatClients, servicesEach = 64, 8

// closedLoad prepares the closed loop of clients at the nodes at urls: an
// account (logged in as name) with clients×servicesEach services, client c
// creating its own at urls[c mod len(urls)] and heartbeating each once
// there (on the etcd store, the write by which its node takes hold of it:
// the run measures the heartbeats after). It returns the command that
// runs b.N heartbeats between the clients in a child process (this test
// binary, TestHeartbeatLoad), as fast as they are answered.
func closedLoad(b *testing.B, urls []string, name string, clients int) *exec.Cmd {
	b.Helper()
	u := login(b, &node{t: b, URL: urls[0]}, name)
	load := hbLoad{Token: u.token, Tenant: u.tenant, N: b.N}
	for c := range clients {
		n := &node{t: b, URL: urls[c%len(urls)]}
		cl := hbClient{URL: n.URL}
		for i := range servicesEach {
			id := fmt.Sprintf("svc-%02d-%d", c, i)
			cl.IDs = append(cl.IDs, id)
			cl.Tokens = append(cl.Tokens, u.create(n, id, 120))
		}
		load.Clients = append(load.Clients, cl)
	}
	// A goroutine a client; each says what failed rather than calling
	// Fatal, which must not be called off the benchmark's goroutine.
	var warm sync.WaitGroup
	errs := make([]error, len(load.Clients))
	for c, cl := range load.Clients {
		warm.Go(func() {
			for i := range cl.IDs {
				if errs[c] = cl.beat(u, &node{URL: cl.URL}, i); errs[c] != nil {
					return
				}
			}
		})
	}
	warm.Wait()
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	spec := filepath.Join(b.TempDir(), "load.json")
	raw, _ := json.Marshal(load)
	if err := os.WriteFile(spec, raw, 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestHeartbeatLoad$")
	cmd.Env = append(os.Environ(), "SVCREG_HEARTBEAT_LOAD="+spec)
	return cmd
}

// deploymentCPU is the user and system CPU time the deployment has used:
// this process's (the svcreg nodes run in it), and the etcd members'
// processes' (cluster, if not nil).
func deploymentCPU(b *testing.B, cluster *etcdtest.Cluster) (self, members time.Duration) {
	self, err := proccpu.Self()
	if err != nil {
		b.Fatal(err)
	}
	if cluster != nil {
		if members, err = cluster.CPUTime(); err != nil {
			b.Fatal(err)
		}
	}
	return self, members
}

// hbTotals are the heartbeat counters of a set of nodes, summed.
type hbTotals struct {
	beats       float64 // heartbeats accepted
	written     float64 // heartbeats written to etcd
	txns        float64 // etcd transactions that wrote them
	copyReqs    float64 // requests carrying copies to a peer
	copySeconds float64 // their round trips, in all
}

// reportSince reports the etcd transactions and copy requests per
// heartbeat (txn/hb, copyreq/hb) from t0 to t, over beats heartbeats, and
// a copy request's mean round trip (copy-µs/req, wall time) if any went.
func (t hbTotals) reportSince(b *testing.B, t0 hbTotals, beats float64) {
	b.ReportMetric((t.txns-t0.txns)/beats, "txn/hb")
	b.ReportMetric((t.copyReqs-t0.copyReqs)/beats, "copyreq/hb")
	if reqs := t.copyReqs - t0.copyReqs; reqs > 0 {
		b.ReportMetric((t.copySeconds-t0.copySeconds)/reqs*1e6, "copy-µs/req")
	}
}

// heartbeatTotals sums the heartbeat counters of the nodes whose metrics
// gs gather.
func heartbeatTotals(t testing.TB, gs ...prometheus.Gatherer) (tot hbTotals) {
	t.Helper()
	for _, g := range gs {
		tot.beats += testserver.Metric(t, g, "svcreg_heartbeats_total")
		tot.written += testserver.Metric(t, g, "svcreg_store_heartbeats_committed_total")
		c, _ := histogram(t, g, "svcreg_store_heartbeat_batch_size")
		tot.txns += c
		c, _ = histogram(t, g, "svcreg_store_heartbeat_copy_batch_size")
		tot.copyReqs += c
		_, sec := histogram(t, g, "svcreg_store_heartbeat_copy_seconds")
		tot.copySeconds += sec
	}
	return tot
}

// gatherers are the nodes' metrics, for heartbeatTotals.
func gatherers(nodes []*node) []prometheus.Gatherer {
	gs := make([]prometheus.Gatherer, len(nodes))
	for i, n := range nodes {
		gs[i] = n.gatherer()
	}
	return gs
}

// hbLoad is what the heartbeat benchmark's child process is to do: N
// heartbeats between the clients, as fast as they are answered; or, if
// Interval is set, each client's services created (Timeout) and then
// heartbeated each every Interval, for Duration.
type hbLoad struct {
	Token, Tenant string
	N             int
	Clients       []hbClient
	Interval      time.Duration
	Duration      time.Duration
	Timeout       int
}

// hbClient heartbeats its services, at one node, in turn; in a paced load,
// in the account of its own Token and Tenant.
type hbClient struct {
	URL           string
	IDs           []string
	Tokens        []string
	Token, Tenant string
}

// TestHeartbeatLoad is BenchmarkHeartbeats' client process; it does
// nothing unless SVCREG_HEARTBEAT_LOAD names a load to run.
func TestHeartbeatLoad(t *testing.T) {
	spec := os.Getenv("SVCREG_HEARTBEAT_LOAD")
	if spec == "" {
		t.Skip("the heartbeat benchmark's client process")
	}
	raw, err := os.ReadFile(spec)
	if err != nil {
		t.Fatal(err)
	}
	var load hbLoad
	if err := json.Unmarshal(raw, &load); err != nil {
		t.Fatal(err)
	}
	if load.Interval > 0 {
		pacedLoad(t, load)
		return
	}
	u := &user{t: t, token: load.Token, tenant: load.Tenant}
	var next atomic.Int64
	var wg sync.WaitGroup
	for _, cl := range load.Clients {
		wg.Go(func() {
			n := &node{URL: cl.URL}
			for k := 0; next.Add(1) <= int64(load.N); k++ {
				if err := cl.beat(u, n, k%len(cl.IDs)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// beat sends the heartbeat of cl's service i at n, with its token, and
// keeps the next token.
func (cl hbClient) beat(u *user, n *node, i int) error {
	r, err := u.try(n, "POST", "/services/"+cl.IDs[i]+"/heartbeat", map[string]string{"token": cl.Tokens[i]})
	if err != nil || r.code != 200 {
		return fmt.Errorf("heartbeat of %s (token %s) at %s: %v %d %s", cl.IDs[i], cl.Tokens[i], time.Now().UTC().Format("15:04:05.000"), err, r.code, r.body)
	}
	var out struct{ Token string }
	r.json(&out)
	cl.Tokens[i] = out.Token
	return nil
}

// pacedLoad runs a paced load, each client in its own account: each
// client creates its services, says "paced" on stdout once all have, then
// heartbeats each service every load.Interval, its heartbeats spread
// evenly over the interval, until load.Duration has passed since then.
func pacedLoad(t *testing.T, load hbLoad) {
	users := make([]*user, len(load.Clients))
	var created sync.WaitGroup
	for c, cl := range load.Clients {
		users[c] = &user{t: t, token: cl.Token, tenant: cl.Tenant}
		created.Go(func() {
			// Created with a long timeout, then given the load's: it
			// applies from the next heartbeat (the first of the pace), so
			// that none times out while the others are created.
			n := &node{t: t, URL: cl.URL}
			for i, id := range cl.IDs {
				cl.Tokens[i] = users[c].create(n, id, 120)
				users[c].do(n, "PUT", "/services/"+id, map[string]any{"heartbeat_timeout": load.Timeout}, 204)
			}
		})
	}
	created.Wait()
	if t.Failed() {
		return
	}
	start := time.Now()
	fmt.Println("paced")
	end := start.Add(load.Duration)
	var wg sync.WaitGroup
	for c, cl := range load.Clients {
		wg.Go(func() {
			n := &node{URL: cl.URL}
			slot := load.Interval / time.Duration(len(cl.IDs))
			offset := slot * time.Duration(c) / time.Duration(len(load.Clients))
			// A service's first heartbeat at its node is a write (the
			// node takes hold of it): sent on its own, so that the
			// client's next ones keep the pace rather than wait for its
			// commit, and those after it past their timeout. The service's
			// second heartbeat waits for it (its token).
			first := make([]chan struct{}, len(cl.IDs))
			for k := 0; ; k++ {
				at := start.Add(offset + slot*time.Duration(k))
				if at.After(end) {
					return
				}
				time.Sleep(time.Until(at))
				i := k % len(cl.IDs)
				if k < len(cl.IDs) {
					first[i] = make(chan struct{})
					wg.Go(func() {
						defer close(first[i])
						if err := cl.beat(users[c], n, i); err != nil {
							t.Errorf("round 0: %v", err)
						}
					})
					continue
				}
				if k < 2*len(cl.IDs) {
					<-first[i]
				}
				if err := cl.beat(users[c], n, i); err != nil {
					t.Errorf("round %d: %v", k/len(cl.IDs), err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkHeartbeatsPaced measures heartbeats at a pace like production's,
// where BenchmarkHeartbeats' services heartbeat tens of times a second:
// 64 clients, each with an account of its own and 64 services with a 3 s
// timeout, at one node (client c at node c mod nodes), heartbeating each
// service once a second (a third of its timeout), its heartbeats spread
// evenly: about 4,100 heartbeats a second. The etcd store's slack is twice
// the timeout (its default rule without the minute's floor), so that a
// service's deadline passes its stored one every seventh to tenth
// heartbeat, which is then written to etcd, as it would be at a 30 s
// timeout and a heartbeat every 10 s. After 8 s (past the first slack) it
// counts 12 s: heartbeats a second (under the pace if the deployment falls
// behind), the deployment's CPU milliseconds per 1,000 heartbeats, the
// etcd members' part of it, heartbeats written to etcd and the etcd
// transactions that wrote them per heartbeat, copy requests per
// heartbeat and their mean round trip, and the ratio to the embedded store's CPU per heartbeat
// (cpu-x-bolt). One run each:
//
//	go test -run '^$' -bench HeartbeatsPaced -benchtime 1x ./server/store/etcdstore/
func BenchmarkHeartbeatsPaced(b *testing.B) {
	const clients, perClient, timeout = 64, 64, 3
	const interval, warmup, window = time.Second, 8 * time.Second, 12 * time.Second
	// Three nodes, with the node options changed by change.
	threeNodes := func(name string, change func(*etcdstore.Options)) setup {
		return etcdSetup(name, 3, func(limits store.Limits) etcdstore.Options {
			// The slack's floor is the node TTL and two request
			// timeouts (MinHeartbeatSlack): shortened to fit twice the
			// timeout.
			opts := etcdstore.Options{DefaultLimits: limits,
				NodeTTL: 2 * time.Second, RequestTimeout: 2 * time.Second, HeartbeatSlack: 2 * timeout * time.Second}
			change(&opts)
			return opts
		})
	}
	setups := []setup{
		setups[0],
		threeNodes("store=etcd/nodes=3", func(*etcdstore.Options) {}),
		// Without copies a node answers from memory only while the
		// stored deadline is MinHeartbeatSlack past the token's: the
		// slack grows by that, so that as many heartbeats are written
		// and this is what the copies cost (at twice the timeout, the
		// least slack here, every heartbeat would be written).
		threeNodes("store=etcd/nodes=3/copies=off", func(o *etcdstore.Options) {
			o.PeerListen = "off"
			o.HeartbeatSlack += etcdstore.MinHeartbeatSlack(*o)
		}),
		// Ten times the slack: no heartbeat passes its stored deadline in
		// the counted 12 s (the first would at 30 s), so this is the cost
		// of copies without writes.
		threeNodes("store=etcd/nodes=3/slack=10x", func(o *etcdstore.Options) { o.HeartbeatSlack = 10 * timeout * time.Second }),
		// Without the lingers: each heartbeat write and each copy goes
		// at once, sharing a commit or a round trip only with those in
		// flight together.
		threeNodes("store=etcd/nodes=3/linger=off", func(o *etcdstore.Options) { o.HeartbeatLinger, o.CopyLinger = -1, -1 }),
		{"store=bolt/again", setups[0].start},
	}
	for _, su := range setups {
		b.Run(su.name, func(b *testing.B) {
			// An account a client: one account's writes are limited to a
			// burst of 1,000 (then 20 a second), and are serialized.
			nodes, cluster := su.start(b, store.Limits{Services: perClient, ConfigValues: 10})
			load := hbLoad{Interval: interval, Duration: warmup + window + time.Second, Timeout: timeout}
			for c := range clients {
				u := login(b, nodes[0], fmt.Sprint("bench-paced-", c))
				cl := hbClient{URL: nodes[c%len(nodes)].URL, Tokens: make([]string, perClient), Token: u.token, Tenant: u.tenant}
				for i := range perClient {
					cl.IDs = append(cl.IDs, fmt.Sprintf("svc-%02d-%d", c, i))
				}
				load.Clients = append(load.Clients, cl)
			}
			spec := filepath.Join(b.TempDir(), "load.json")
			raw, _ := json.Marshal(load)
			if err := os.WriteFile(spec, raw, 0o600); err != nil {
				b.Fatal(err)
			}
			cmd := exec.Command(os.Args[0], "-test.run", "^TestHeartbeatLoad$", "-test.v")
			cmd.Env = append(os.Environ(), "SVCREG_HEARTBEAT_LOAD="+spec)
			out, err := cmd.StdoutPipe()
			if err != nil {
				b.Fatal(err)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			lines := bufio.NewScanner(out)
			var log strings.Builder
			for lines.Scan() && lines.Text() != "paced" {
				log.WriteString(lines.Text() + "\n")
			}
			drained := make(chan struct{})
			go func() {
				defer close(drained)
				for lines.Scan() {
					log.WriteString(lines.Text() + "\n")
				}
			}()
			b.ResetTimer()
			time.Sleep(warmup)
			self0, members0 := deploymentCPU(b, cluster)
			t0 := heartbeatTotals(b, gatherers(nodes)...)
			time.Sleep(window)
			self1, members1 := deploymentCPU(b, cluster)
			t1 := heartbeatTotals(b, gatherers(nodes)...)
			b.StopTimer()
			<-drained
			if err := cmd.Wait(); err != nil {
				b.Fatalf("load: %v\n%s%s", err, log.String(), stderr.String())
			}
			beats := t1.beats - t0.beats
			if beats == 0 {
				b.Fatal("no heartbeats counted")
			}
			cpuPer1000 := float64((self1 - self0 + members1 - members0).Microseconds()) / beats
			b.ReportMetric(beats/window.Seconds(), "heartbeats/s")
			b.ReportMetric(cpuPer1000, "cpu-ms/1000hb")
			if cluster != nil {
				b.ReportMetric(float64((members1-members0).Microseconds())/beats, "etcd-cpu-ms/1000hb")
				b.ReportMetric((t1.written-t0.written)/beats, "written/hb")
				t1.reportSince(b, t0, beats)
			}
			reportCPURatio(b, "paced", su.name, cpuPer1000)
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
			nodes, _ := su.start(b, store.Limits{Services: 10, ConfigValues: 10})
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
