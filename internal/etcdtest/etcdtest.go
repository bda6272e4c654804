// Package etcdtest runs a real etcd for tests: a single member or a cluster
// of several on loopback, whose members can be stopped and started again on
// the same ports and data. Each member is a process of its own (the
// etcdmember program, built without the race detector: etcd's server is not
// the code under test, and instrumented it cost several times the CPU of
// the tests around it).
package etcdtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/svcreg/svcreg/internal/freeport"
	"github.com/svcreg/svcreg/internal/proccpu"
	"github.com/svcreg/svcreg/internal/testprog"
)

// Options configure a cluster. The zero value is one member configured for
// tests (no fsync, quick elections).
type Options struct {
	// Members is the cluster's size; 1 if zero.
	Members int
	// Production runs the members as etcd runs by default: syncing their
	// log to disk, with its default heartbeat interval (100 ms) and
	// election timeout (1 s). For benchmarks: tests run without, so that
	// they neither wait on the disk nor, with one member, on an election.
	Production bool
	// MaxTxnOps as etcd's --max-txn-ops; etcd's default (128) if zero.
	MaxTxnOps uint
	// AutoCompactionRevisions, if set, compacts history to keep about that
	// many revisions (etcd's --auto-compaction-mode=revision).
	AutoCompactionRevisions int
	// QuotaBackendBytes as etcd's --quota-backend-bytes; etcd's default
	// (2 GiB) if zero.
	QuotaBackendBytes int64
}

// Cluster is a running etcd cluster.
type Cluster struct {
	Members []*Member
	t       testing.TB
	opts    Options
	ports   []func() // releases the members' reserved ports
}

// Member is one etcd member.
type Member struct {
	Name string
	// ClientURL is where clients reach the member: a proxy in front of it,
	// which drops their connections when the member stops, as a crash
	// would (etcd's own stop waits seconds for clients' watch streams).
	ClientURL string
	listenURL string // the member's own client URL, behind the proxy
	proxy     *Proxy
	peerURL   string
	dir       string
	cluster   *Cluster

	mu      sync.Mutex
	proc    *memberProc // nil: stopped
	started bool        // bootstrapped once: later starts join the existing cluster
}

// Start starts a cluster and stops it when the test ends.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	c, err := start(opts, func() (string, error) { return t.TempDir(), nil })
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	c.t = t
	t.Cleanup(c.close)
	return c
}

// start starts a cluster whose members keep their data in directories dir
// makes.
func start(opts Options, dir func() (string, error)) (*Cluster, error) {
	if opts.Members == 0 {
		opts.Members = 1
	}
	c := &Cluster{opts: opts}
	addrs, err := c.reserveAddrs(2 * opts.Members)
	if err != nil {
		c.close()
		return nil, err
	}
	for i := range opts.Members {
		d, err := dir()
		if err != nil {
			c.close()
			return nil, err
		}
		p, err := NewProxy(addrs[2*i])
		if err != nil {
			c.close()
			return nil, err
		}
		c.Members = append(c.Members, &Member{
			Name:      fmt.Sprintf("m%d", i),
			ClientURL: "http://" + p.Addr(),
			listenURL: "http://" + addrs[2*i],
			proxy:     p,
			peerURL:   "http://" + addrs[2*i+1],
			dir:       d,
			cluster:   c,
		})
	}
	if err := c.startMembers(); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// startMembers starts every stopped member at once and returns the first
// error, once every start has ended: a member that started after a failure
// closed the cluster would be left running.
func (c *Cluster) startMembers() error {
	errs := make(chan error, len(c.Members))
	for _, m := range c.Members {
		go func() { errs <- m.Start() }()
	}
	var first error
	for range c.Members {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// close stops every member and closes the proxies.
func (c *Cluster) close() {
	c.Stop()
	for _, m := range c.Members {
		m.proxy.Close()
	}
	for _, release := range c.ports {
		release()
	}
}

// Endpoints returns the members' client URLs.
func (c *Cluster) Endpoints() []string {
	eps := make([]string, len(c.Members))
	for i, m := range c.Members {
		eps[i] = m.ClientURL
	}
	return eps
}

// Client returns a client of endpoints (c.Endpoints(), say), closed when
// t ends.
func Client(t testing.TB, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("etcdtest: client of %v: %v", endpoints, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// DirectEndpoints returns the members' own client URLs, not the proxies
// in front of them: for a benchmark whose clients are to cost only
// themselves and the members (a proxy runs in the test process). A
// member that stops then does not drop its clients' connections as a
// crash would.
func (c *Cluster) DirectEndpoints() []string {
	eps := make([]string, len(c.Members))
	for i, m := range c.Members {
		eps[i] = m.listenURL
	}
	return eps
}

// Stop stops every member: the followers together, then the leader. One by
// one each takes a second or more: a member waits for its peers'
// connections to close, and a leader stopped while followers run first
// hands its leadership over.
func (c *Cluster) Stop() {
	var lead []*Member
	var wg sync.WaitGroup
	for _, m := range c.Members {
		if m.leads() {
			lead = append(lead, m)
			continue
		}
		wg.Go(m.Stop)
	}
	wg.Wait()
	for _, m := range lead {
		m.Stop()
	}
}

// leads reports whether the member runs and is the cluster's leader, as
// far as it can tell within a couple of seconds.
func (m *Member) leads() bool {
	if !m.Running() {
		return false
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.listenURL}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return false
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := cli.Status(ctx, m.listenURL)
	return err == nil && st.Leader == st.Header.MemberId
}

// CPUTime returns the CPU time, user and system, that the running members'
// processes have used since they started: with the nodes' own, what a
// deployment costs (a benchmark takes it before and after its run; a
// member restarted in between counts from its restart). Linux only
// (proccpu.Of).
func (c *Cluster) CPUTime() (time.Duration, error) {
	var total time.Duration
	for _, m := range c.Members {
		m.mu.Lock()
		p := m.proc
		m.mu.Unlock()
		if p == nil || p.ended() {
			continue
		}
		d, err := proccpu.Of(p.cmd.Process.Pid)
		if err != nil {
			return 0, fmt.Errorf("etcdtest: CPU time of member %s: %w", m.Name, err)
		}
		total += d
	}
	return total, nil
}

// Restart starts every stopped member again and waits until they serve.
func (c *Cluster) Restart() {
	c.t.Helper()
	if err := c.startMembers(); err != nil {
		c.t.Fatalf("etcdtest: %v", err)
	}
}

func (c *Cluster) initialCluster() string {
	parts := make([]string, len(c.Members))
	for i, m := range c.Members {
		parts[i] = m.Name + "=" + m.peerURL
	}
	return strings.Join(parts, ",")
}

// Stop stops the member, and its clients lose their connections at once,
// as at a crash of its process (its data stays).
func (m *Member) Stop() {
	m.Resume() // a paused process would not stop
	m.mu.Lock()
	p := m.proc
	m.proc = nil
	m.mu.Unlock()
	if p != nil {
		m.proxy.Cut()
		p.stop()
	}
}

// Pause freezes the member's process (SIGSTOP) and leaves its connections
// open: requests reach it and nothing answers, as with a host powered off
// or a partition that drops packets. Resume lets it go on. Both do nothing
// to a member not running.
func (m *Member) Pause() { m.signal(syscall.SIGSTOP) }

// Resume lets a paused member go on (SIGCONT).
func (m *Member) Resume() { m.signal(syscall.SIGCONT) }

func (m *Member) signal(sig syscall.Signal) {
	if pid := m.Pid(); pid != 0 {
		syscall.Kill(pid, sig)
	}
}

// Start starts a stopped member again on its ports and data.
func (m *Member) Start() error {
	m.mu.Lock()
	old := m.proc
	m.mu.Unlock()
	if old != nil {
		if !old.ended() {
			return nil
		}
		old.stdin.Close() // it died by itself
	}
	return m.start()
}

// Running reports whether the member is started and its process has not
// ended: a member that died by itself (or was killed behind etcdtest's
// back) is stopped, and Start starts it again.
func (m *Member) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.proc != nil && !m.proc.ended()
}

// Pid returns the process id of the member's running process, 0 if it is
// not running.
func (m *Member) Pid() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc == nil || m.proc.ended() {
		return 0
	}
	return m.proc.cmd.Process.Pid
}

func (m *Member) start() error {
	bin, err := memberBinary()
	if err != nil {
		return err
	}
	m.mu.Lock()
	first := !m.started
	m.mu.Unlock()
	args := []string{
		"-name", m.Name,
		"-data-dir", m.dir,
		"-listen-client-url", m.listenURL,
		"-advertise-client-url", m.ClientURL,
		"-peer-url", m.peerURL,
		"-initial-cluster", m.cluster.initialCluster(),
	}
	if !first {
		args = append(args, "-existing")
	}
	if m.cluster.opts.Production {
		args = append(args, "-fsync")
	}
	if n := m.cluster.opts.MaxTxnOps; n != 0 {
		args = append(args, "-max-txn-ops", fmt.Sprint(n))
	}
	if n := m.cluster.opts.AutoCompactionRevisions; n > 0 {
		args = append(args, "-auto-compaction-revisions", fmt.Sprint(n))
	}
	if n := m.cluster.opts.QuotaBackendBytes; n > 0 {
		args = append(args, "-quota-backend-bytes", fmt.Sprint(n))
	}
	switch {
	case m.cluster.opts.Production:
		args = append(args, "-tick-ms", "100", "-election-ms", "1000")
	case len(m.cluster.Members) == 1:
		args = append(args, "-tick-ms", "20", "-election-ms", "200")
	default:
		// Slow enough that a loaded test machine (two cores, the tests'
		// processes beside it) does not lose its leader to a missed tick.
		args = append(args, "-tick-ms", "50", "-election-ms", "1000")
	}
	var p *memberProc
	for attempt := 0; ; attempt++ {
		p, err = startMember(bin, args)
		if err == nil {
			break
		}
		// A port of the member may still be held for a moment after a
		// stop.
		if attempt == 50 || !strings.Contains(err.Error(), "address already in use") {
			return fmt.Errorf("start member %s: %w", m.Name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	m.mu.Lock()
	m.proc, m.started = p, true
	m.mu.Unlock()
	m.proxy.Heal()
	return nil
}

// memberProc is a running etcdmember process.
type memberProc struct {
	cmd    *exec.Cmd
	stdin  io.Closer // closed: the member stops
	exited chan struct{}
	stderr *bytes.Buffer // read once exited is closed
}

// startMember starts etcdmember with args and waits until it serves.
func startMember(bin string, args []string) (*memberProc, error) {
	cmd := exec.Command(bin, args...)
	// A group of its own, killed whole: nothing the member started
	// outlives it holding its output open. (A member whose test binary
	// dies stops when its stdin closes.)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &memberProc{cmd: cmd, exited: make(chan struct{}), stderr: new(bytes.Buffer)}
	cmd.Stderr = p.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	p.stdin = stdin
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- line
		io.Copy(io.Discard, stdout)
		cmd.Wait()
		close(p.exited)
	}()
	select {
	case line := <-ready:
		if line == "ready\n" {
			return p, nil
		}
		// Exited, or wrote something else first: then it may be
		// running still.
		p.kill()
		msg := strings.TrimSpace(strings.TrimPrefix(p.stderr.String(), "etcdmember: "))
		if msg == "" {
			msg = fmt.Sprintf("%s, having written %q instead of \"ready\"", cmd.ProcessState, line)
		}
		return nil, errors.New(msg)
	case <-time.After(60 * time.Second):
		p.kill()
		return nil, errors.New("did not become ready within 60s")
	}
}

// ended reports whether the member's process has ended.
func (p *memberProc) ended() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// stop stops the member as etcd stops (SIGTERM) and waits for its process
// to end; one that takes longer than 30s is killed.
func (p *memberProc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.kill()
	}
}

func (p *memberProc) kill() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	p.stdin.Close()
	<-p.exited
}

// memberBinary returns the path of the etcdmember program, built without
// the race detector once per test binary. SVCREG_ETCD_MEMBER names a built
// one to use instead.
var memberBinary = sync.OnceValues(func() (string, error) {
	if bin := os.Getenv("SVCREG_ETCD_MEMBER"); bin != "" {
		if !filepath.IsAbs(bin) {
			// Each package's tests run in its own directory.
			return "", fmt.Errorf("etcdtest: SVCREG_ETCD_MEMBER=%s: give an absolute path", bin)
		}
		return bin, nil
	}
	dir, err := testprog.SourceDir("etcdmember")
	if err == nil {
		var bin string
		if bin, err = testprog.Build(dir); err == nil {
			return bin, nil
		}
	}
	return "", fmt.Errorf("etcdtest: %w (SVCREG_ETCD_MEMBER may name a built etcdmember instead)", err)
})

// StartShared starts a cluster (a single member unless opts say otherwise)
// that outlives the tests, for a test binary whose tests share it, each
// under a key prefix of its own (starting a cluster per test costs more
// than the tests). It is not bound to a test: call stop, which also removes
// its data, once the tests are done (from TestMain, after m.Run).
func StartShared(opts Options) (c *Cluster, stop func(), err error) {
	dir, err := os.MkdirTemp("", "etcdtest-shared-")
	if err != nil {
		return nil, nil, fmt.Errorf("etcdtest: %w", err)
	}
	n := 0
	c, err = start(opts, func() (string, error) {
		n++
		d := filepath.Join(dir, fmt.Sprint(n))
		return d, os.Mkdir(d, 0o700)
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("etcdtest: %w", err)
	}
	return c, func() { c.close(); os.RemoveAll(dir) }, nil
}

// reserveAddrs returns n loopback addresses on ports reserved for the
// cluster's members until it is closed (freeport): a member stopped and
// started again binds its ports again, and a port from the ephemeral range
// could meanwhile be the local port of another test's connection.
func (c *Cluster) reserveAddrs(n int) ([]string, error) {
	addrs := make([]string, n)
	for i := range addrs {
		port, release, err := freeport.Reserve()
		if err != nil {
			return nil, err
		}
		c.ports = append(c.ports, release)
		addrs[i] = "127.0.0.1:" + strconv.Itoa(port)
	}
	return addrs, nil
}

// Proxy passes TCP connections to a target address until cut: then it
// closes every connection it passes and each new one at once, until
// healed, as a crash of the target or a network partition would.
type Proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]bool

	fromTarget atomic.Int64 // bytes passed from the target to its clients
}

// NewProxy starts a proxy to target on a loopback port. Close stops it.
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	go p.serve()
	return p, nil
}

// Addr is the proxy's address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		go p.pipe(c, up, &p.fromTarget)
		go p.pipe(up, c, nil)
	}
}

func (p *Proxy) pipe(dst, src net.Conn, count *atomic.Int64) {
	var w io.Writer = dst
	if count != nil {
		w = countingWriter{dst, count}
	}
	io.Copy(w, src)
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// FromTarget is how many bytes the proxy has passed from its target to
// its clients.
func (p *Proxy) FromTarget() int64 { return p.fromTarget.Load() }

// countingWriter adds what it writes to n.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// Cut closes every connection and each new one.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
}

// Heal passes new connections again.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

// Close stops the proxy and closes its connections.
func (p *Proxy) Close() {
	p.ln.Close()
	p.Cut()
}
