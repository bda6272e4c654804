//go:build linux

package etcdstore_test

import (
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/svcreg/svcreg/internal/cpucap"
	"github.com/svcreg/svcreg/internal/etcdtest"
	"github.com/svcreg/svcreg/internal/proccpu"
	"github.com/svcreg/svcreg/internal/testprog"
	"github.com/svcreg/svcreg/internal/testserver"
)

// BenchmarkHeartbeatsMachines measures what nodes add: BenchmarkHeartbeats'
// closed loop (8 services a client, client c at node c mod nodes), with
// 192 clients (SVCREG_BENCH_MACHINE_CLIENTS to change it), and with each
// svcreg server (the program, svcreg server --dev) on a machine
// of its own: a control group allowed a quarter of a core
// (SVCREG_BENCH_MACHINE_CORES to change it; see internal/cpucap). An etcd
// member runs on each node's machine and shares its quarter, as where
// each machine runs a node and a member. So the embedded store's server
// has one machine, the etcd store's n nodes have n, and the clients run
// outside them on the rest of this machine. Every process keeps Go's
// default GOMAXPROCS (the machine's CPUs, at least 2): a limit of a
// quarter core spreads it over more than one thread. A fourth setup,
// three nodes with copies off, is what the copies cost.
//
// 192 clients are 64 a node for three nodes, as many as
// BenchmarkHeartbeats gives its one embedded node. A capacity needs the
// heartbeats in flight to keep every machine busy, and with copies a node
// answers a heartbeat only a round trip to its peer later (2 ms here,
// where the peer may be waiting out its limit): 21 clients a node, each
// waiting for its answer before the next heartbeat, leave the node idle
// and waking between requests, which the services of a real deployment,
// each heartbeating on its own clock, do not. It reports
// heartbeats/s and the ratio to the embedded store's (x-bolt); the
// machines' CPU per 1,000 heartbeats (cpu-ms/1000hb, members included;
// etcd-cpu-ms/1000hb, the members' part) and its ratio (cpu-x-bolt); how
// much of their allowance the machines used (allowance-used, 1 when the
// CPU is what limits them); the cores the clients used (client-cores: the
// rest of the machine must not be what limits the rate); the times the
// nodes' threads slept to wait (sleeps/hb, voluntary context switches: a
// node that waits pays for waking); etcd transactions and copy requests
// per heartbeat, and a copy request's mean round trip (copy-µs/req, wall
// time). It needs root (a cgroup CPU controller to write). Run it with
//
//	go test -run '^$' -bench HeartbeatsMachines -benchtime 40000x ./server/store/etcdstore/
func BenchmarkHeartbeatsMachines(b *testing.B) {
	cores := positiveEnv(b, "SVCREG_BENCH_MACHINE_CORES", 0.25, func(v string) (float64, error) {
		return strconv.ParseFloat(v, 64)
	}, "cores, e.g. 0.5")
	clients := positiveEnv(b, "SVCREG_BENCH_MACHINE_CLIENTS", 3*heartbeatClients, strconv.Atoi, "clients, e.g. 64")
	if g, err := cpucap.New("svcreg-bench-probe", cores); err != nil {
		b.Skipf("servers on machines of their own need CPU-limited control groups: %v", err)
	} else if err := g.Close(); err != nil {
		b.Fatal(err)
	}
	src, err := testprog.SourceDir("..", "..", "..", "cmd", "svcreg")
	if err != nil {
		b.Fatal(err)
	}
	bin, err := testprog.Build(src)
	if err != nil {
		b.Fatal(err)
	}
	type machinesSetup struct {
		name   string
		nodes  int
		etcd   bool
		copies bool // copies of held heartbeats between the nodes
	}
	for _, su := range []machinesSetup{
		{"store=bolt", 1, false, false},
		{"store=etcd/nodes=1", 1, true, false},
		{"store=etcd/nodes=3", 3, true, true},
		// What the copies cost here.
		{"store=etcd/nodes=3/copies=off", 3, true, false},
		// Last again, so that the etcd runs are bracketed by two
		// baselines: the machine's load drifts.
		{"store=bolt/again", 1, false, false},
	} {
		b.Run(su.name, func(b *testing.B) {
			// The machines first: their cleanup, which needs them empty,
			// then runs after the processes in them have stopped.
			machines := make([]*cpucap.Group, su.nodes)
			for i := range machines {
				g, err := cpucap.New(fmt.Sprintf("svcreg-bench-machine-%d", i), cores)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() {
					if err := g.Close(); err != nil {
						b.Error(err)
					}
				})
				machines[i] = g
			}
			var cluster *etcdtest.Cluster
			if su.etcd {
				cluster = etcdtest.Start(b, etcdtest.Options{Members: su.nodes, Production: true})
			}
			var more []string
			if su.etcd && !su.copies {
				more = []string{"--etcd-peer-listen", "off"}
			}
			servers := startServers(b, bin, su.nodes, cluster, clients*servicesEach, more...)
			var nodePids, memberPids []int
			for i, s := range servers {
				nodePids = append(nodePids, s.pid)
				if err := machines[i].Add(s.pid); err != nil {
					b.Fatal(err)
				}
				if cluster != nil {
					pid := cluster.Members[i].Pid()
					if pid == 0 {
						b.Fatalf("etcd member %d is not running", i)
					}
					if err := machines[i].Add(pid); err != nil {
						b.Fatal(err)
					}
					memberPids = append(memberPids, pid)
				}
			}
			urls := make([]string, len(servers))
			gs := make([]prometheus.Gatherer, len(servers))
			for i, s := range servers {
				urls[i], gs[i] = s.url, s
			}
			if su.copies {
				// Copies go only once each node has chosen its peer.
				for _, s := range servers {
					s.waitMetric(b, "svcreg_store_heartbeat_copy_peer", 1)
				}
			}
			cmd := closedLoad(b, urls, "bench-machines", clients)
			t0 := heartbeatTotals(b, gs...)
			b.ResetTimer()
			nodes0, members0 := sumOf(b, nodePids, proccpu.Of), sumOf(b, memberPids, proccpu.Of)
			sleeps0 := sumOf(b, nodePids, proccpu.Sleeps)
			start := time.Now()
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("load: %v\n%s", err, out)
			}
			elapsed := time.Since(start)
			nodes1, members1 := sumOf(b, nodePids, proccpu.Of), sumOf(b, memberPids, proccpu.Of)
			sleeps1 := sumOf(b, nodePids, proccpu.Sleeps)
			b.StopTimer()
			b.ReportMetric(float64(sleeps1-sleeps0)/float64(b.N), "sleeps/hb")
			cpu := nodes1 - nodes0 + members1 - members0
			t1 := heartbeatTotals(b, gs...)
			rate := float64(b.N) / elapsed.Seconds()
			// CPU milliseconds per 1,000 heartbeats: microseconds per one.
			per1000 := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(b.N) }
			// The clients' cores: they must not be what limits the rate.
			clients := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
			b.ReportMetric(clients.Seconds()/elapsed.Seconds(), "client-cores")
			cpuPer1000 := per1000(cpu)
			b.ReportMetric(rate, "heartbeats/s")
			b.ReportMetric(cpuPer1000, "cpu-ms/1000hb")
			b.ReportMetric(cpu.Seconds()/elapsed.Seconds()/(cores*float64(su.nodes)), "allowance-used")
			if su.etcd {
				b.ReportMetric(per1000(members1-members0), "etcd-cpu-ms/1000hb")
				t1.reportSince(b, t0, float64(b.N))
			}
			reportRatio(b, "machines", su.name, rate, true)
			reportCPURatio(b, "machines", su.name, cpuPer1000)
		})
	}
}

// positiveEnv is the number in the environment variable name (parsed by
// parse), def if it is unset; anything but a positive number fails the
// benchmark, saying it wants a positive number of what.
func positiveEnv[T int | float64](b *testing.B, name string, def T, parse func(string) (T, error), what string) T {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := parse(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive number of %s", name, v, what)
	}
	return n
}

// sumOf is what f reads of each of processes pids, in all: their CPU time
// (proccpu.Of), or their threads' sleeps (proccpu.Sleeps).
func sumOf[T time.Duration | int64](b *testing.B, pids []int, f func(pid int) (T, error)) T {
	var total T
	for _, pid := range pids {
		v, err := f(pid)
		if err != nil {
			b.Fatal(err)
		}
		total += v
	}
	return total
}

// serverProc is a running svcreg server process.
type serverProc struct {
	url string
	pid int
}

// startServers starts n svcreg server processes (the program bin), with
// --dev, a limit of services services an account and the flags more: over
// the etcd cluster (its members' own URLs, not etcdtest's proxies, which
// run in this process) if not nil, else the embedded store (n must then be
// 1). It returns once each answers /healthz, and stops them when the
// benchmark ends.
func startServers(b *testing.B, bin string, n int, cluster *etcdtest.Cluster, services int, more ...string) []*serverProc {
	b.Helper()
	servers := make([]*serverProc, n)
	for i := range servers {
		dir := b.TempDir()
		ready := filepath.Join(dir, "ready")
		// No write rate limit: the benchmark creates every service in
		// one account at once.
		args := []string{"server", "--dev", "--listen", "127.0.0.1:0", "--ready-file", ready, "--ui=false",
			"--service-limit", strconv.Itoa(services), "--write-rate", "0", "--log-level", "warn"}
		if cluster != nil {
			args = append(args, "--etcd-endpoints", strings.Join(cluster.DirectEndpoints(), ","), "--etcd-prefix", "/bench/")
		} else {
			if n != 1 {
				b.Fatal("startServers: several servers need etcd")
			}
			args = append(args, "--data-dir", filepath.Join(dir, "data"))
		}
		cmd := exec.Command(bin, append(args, more...)...)
		// Killed with the benchmark, if it dies before its cleanup
		// (strictly, with the thread that started it: Go keeps it).
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		logFile, err := os.Create(filepath.Join(dir, "log"))
		if err != nil {
			b.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logFile, logFile
		if err := cmd.Start(); err != nil {
			logFile.Close()
			b.Fatal(err)
		}
		exited := make(chan struct{})
		go func() {
			cmd.Wait()
			logFile.Close()
			close(exited)
		}()
		b.Cleanup(func() {
			cmd.Process.Signal(os.Interrupt)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-exited
			}
			if b.Failed() {
				log, _ := os.ReadFile(logFile.Name())
				b.Logf("log of server %d:\n%s", i, log)
			}
		})
		servers[i] = &serverProc{pid: cmd.Process.Pid}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if raw, err := os.ReadFile(ready); err == nil && len(raw) > 0 {
				servers[i].url = strings.TrimSpace(string(raw))
				break
			}
			select {
			case <-exited:
				b.Fatalf("server %d exited before it listened", i)
			default:
			}
			if time.Now().After(deadline) {
				b.Fatalf("server %d did not listen within 30s", i)
			}
		}
	}
	for i, s := range servers {
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			resp, err := clientFor(s.url).Get(s.url + "/healthz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				b.Fatalf("server %d not healthy within 30s: %v", i, err)
			}
		}
	}
	return servers
}

// Gather reads the server's /metrics (Prometheus' text format), so that
// the helpers that read a node's metrics read the server's.
func (s *serverProc) Gather() ([]*dto.MetricFamily, error) {
	resp, err := clientFor(s.url).Get(s.url + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics of %s: status %d", s.url, resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	byName, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("metrics of %s: %w", s.url, err)
	}
	return slices.Collect(maps.Values(byName)), nil
}

// waitMetric waits up to 30 s until the server's metric name is want.
func (s *serverProc) waitMetric(b *testing.B, name string, want float64) {
	b.Helper()
	for deadline := time.Now().Add(30 * time.Second); testserver.Metric(b, s, name) != want; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("%s of %s is not %v after 30s", name, s.url, want)
		}
	}
}
