package etcdstore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svcreg/svcreg/internal/etcdtest"
	"github.com/svcreg/svcreg/internal/freeport"
	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/server"
	"github.com/svcreg/svcreg/server/store/etcdstore"
)

// node is one svcreg server node over an etcd cluster, served on loopback
// as cmd/svcreg serves it (parked long-polls included). It can be stopped
// gracefully, crashed, and started again on the same address.
type node struct {
	t         testing.TB
	endpoints []string
	opts      etcdstore.Options
	URL       string
	addr      string

	mu      sync.Mutex
	running bool
	cli     *clientv3.Client
	st      *etcdstore.Store
	api     *server.Server
	hs      *http.Server
	cancel  context.CancelFunc
	done    chan struct{}
	reg     *prometheus.Registry

	// log is the node's store log, at debug level, across restarts;
	// printed if the test fails.
	log *testserver.Buffer
}

// logBuffer is where the node's store log goes (logger).
func (n *node) logBuffer() *testserver.Buffer {
	n.logger()
	return n.log
}

// logger is the node's store logger: the test prints what it logged if the
// test fails.
func (n *node) logger() *slog.Logger {
	if n.log == nil {
		n.log = new(testserver.Buffer)
		n.t.Cleanup(func() {
			if n.t.Failed() {
				n.t.Logf("store log of node %s:\n%s", n.addr, n.log)
			}
		})
	}
	return slog.New(slog.NewTextHandler(n.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testPrefix begins the key prefix of the tests' registries: not the
// default, so that the prefix is honoured everywhere. Each test's registry
// is under a prefix of its own (testPrefix, the test's name and a number
// that -count does not repeat), so that tests can share a cluster.
const testPrefix = "/svcreg-test/"

// prefixes are the tests' key prefixes, by test.
var prefixes struct {
	sync.Mutex
	n  int
	of map[testing.TB]string
}

// registryPrefix returns the key prefix of t's registry.
func registryPrefix(t testing.TB) string {
	prefixes.Lock()
	defer prefixes.Unlock()
	if p, ok := prefixes.of[t]; ok {
		return p
	}
	if prefixes.of == nil {
		prefixes.of = map[testing.TB]string{}
	}
	prefixes.n++
	p := fmt.Sprintf("%s%s-%d/", testPrefix, strings.ReplaceAll(t.Name(), "/", "-"), prefixes.n)
	prefixes.of[t] = p
	return p
}

// shared is the three-member cluster that the tests which leave etcd alone
// (they stop no member, compact nothing, read no revision) share: starting
// and stopping one takes seconds, longer than most tests.
var shared struct {
	once sync.Once
	c    *etcdtest.Cluster
	stop func()
	err  error
}

// sharedCluster returns the shared cluster, starting it on first use.
func sharedCluster(t *testing.T) *etcdtest.Cluster {
	t.Helper()
	shared.once.Do(func() { shared.c, shared.stop, shared.err = etcdtest.StartShared(etcdtest.Options{Members: 3}) })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.c
}

// TestMain stops the shared cluster once the tests are done.
func TestMain(m *testing.M) {
	code := m.Run()
	if shared.stop != nil {
		shared.stop()
	}
	os.Exit(code)
}

// startNodes starts n nodes over the cluster's endpoints.
func startNodes(t testing.TB, c *etcdtest.Cluster, n int, opts etcdstore.Options) []*node {
	t.Helper()
	endpoints := make([][]string, n)
	for i := range endpoints {
		endpoints[i] = c.Endpoints()
	}
	return startNodesAt(t, opts, endpoints...)
}

func startNode(t testing.TB, endpoints []string, opts etcdstore.Options) *node {
	t.Helper()
	return startNodesAt(t, opts, endpoints)[0]
}

// startNodesAt starts a node over each list of endpoints, all at once: a
// node that finds another already running waits, as in production, until it
// sees that node renew its lease (a second or two), and the nodes a test
// starts together need not wait for each other.
func startNodesAt(t testing.TB, opts etcdstore.Options, endpoints ...[]string) []*node {
	t.Helper()
	if opts.Prefix == "" {
		opts.Prefix = registryPrefix(t)
	}
	switch opts.PeerListen {
	case "":
		opts.PeerListen = "127.0.0.1:0" // copies on, as svcreg server has them
	case "off":
		opts.PeerListen = ""
	}
	nodes := make([]*node, len(endpoints))
	lns := make([]net.Listener, len(endpoints))
	for i, eps := range endpoints {
		// A port reserved below the ephemeral range: a restart binds it
		// again, which another test's connection could otherwise take
		// meanwhile.
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(freeport.Port(t)))
		if err != nil {
			for _, ln := range lns[:i] {
				ln.Close()
			}
			t.Fatal(err)
		}
		lns[i] = ln
		nodes[i] = &node{t: t, endpoints: eps, opts: opts, addr: ln.Addr().String(), URL: "http://" + ln.Addr().String()}
	}
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { errs[i] = n.startRetrying(lns[i]) })
	}
	wg.Wait()
	for i, n := range nodes {
		if errs[i] == nil {
			t.Cleanup(n.stop)
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return nodes
}

func (n *node) start(ln net.Listener) error {
	cli, err := etcdstore.NewClient(etcdstore.ClientConfig{Endpoints: n.endpoints, DialTimeout: 10 * time.Second})
	if err != nil {
		ln.Close()
		return fmt.Errorf("etcd client: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg := prometheus.NewRegistry()
	opts := n.opts
	opts.Registerer = reg
	opts.Logger = n.logger()
	st, err := etcdstore.Open(ctx, cli, opts)
	if err != nil {
		ln.Close()
		cli.Close()
		return fmt.Errorf("open store: %w", err)
	}
	auth := server.NewAuth(server.AuthConfig{Store: st, Dev: true})
	api := server.New(server.Config{Store: st, Auth: auth, Registerer: reg})
	hs := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second}
	rctx, rcancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		wg.Go(func() { st.Run(rctx) })
		if err := hs.Serve(api.Listener(ln)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.t.Errorf("serve: %v", err)
		}
		wg.Wait()
	}()
	n.mu.Lock()
	n.cli, n.st, n.api, n.hs, n.cancel, n.done, n.running, n.reg = cli, st, api, hs, rcancel, done, true, reg
	n.mu.Unlock()
	return nil
}

// waitSeeing waits until none of nodes leaves the due services it does
// not hold to the others: of nodes started together, one may find another
// registered and join a running registry, and until it sees that node's
// key written again (milliseconds, longer on a loaded machine) its reads
// show a due service as present (docs/etcd.md, After an outage).
func waitSeeing(t testing.TB, nodes ...*node) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range nodes {
		for etcdstore.Blind(n.st) {
			if time.Now().After(deadline) {
				t.Fatalf("node %s still leaves due services to the others", n.addr)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// stop stops the node gracefully, as SIGTERM does.
func (n *node) stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.running {
		return
	}
	n.running = false
	// A connection the client dialled but never used holds up the
	// graceful stop for seconds.
	clientFor(n.URL).CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n.api.Drain(ctx)
	if err := n.hs.Shutdown(ctx); err != nil {
		n.hs.Close()
	}
	n.cancel()
	<-n.done
	if err := n.st.Close(); err != nil {
		n.t.Errorf("close store: %v", err)
	}
	n.cli.Close()
}

// crash stops the node as kill -9 would: connections drop, nothing is
// written on the way out, its node key stays until its lease expires.
func (n *node) crash() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.running {
		return
	}
	n.running = false
	n.hs.Close()
	n.cancel()
	etcdstore.Crash(n.st)
	<-n.done
	n.cli.Close()
}

// restart starts a stopped or crashed node again on its address.
func (n *node) restart() {
	n.t.Helper()
	var ln net.Listener
	var err error
	for range 100 {
		if ln, err = net.Listen("tcp", n.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		n.t.Fatalf("listen again on %s: %v", n.addr, err)
	}
	if err := n.startRetrying(ln); err != nil {
		n.t.Fatal(err)
	}
}

// startRetrying starts the node on ln; a start that fails (its store's
// first etcd requests can time out on a loaded machine) is tried again on
// the same address, as a supervisor would, for up to 30 s.
func (n *node) startRetrying(ln net.Listener) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := n.start(ln) // closes ln if it fails
		if err == nil {
			return nil
		}
		n.t.Logf("start node %s: %v", n.addr, err)
		fmt.Fprintf(n.logBuffer(), "start failed: %v\n", err) // for tests that count on a first start
		for {
			if time.Now().After(deadline) {
				return fmt.Errorf("start node %s: %w", n.addr, err)
			}
			time.Sleep(20 * time.Millisecond)
			var lerr error
			if ln, lerr = net.Listen("tcp", n.addr); lerr == nil {
				break
			}
		}
	}
}

// clientFor is the tests' client for requests to the node at url
// (testserver.Client: a client for each node, so that a node that stops
// closes no other node's idle connections), with a 90 s timeout.
func clientFor(url string) *http.Client {
	c := *testserver.Client(url)
	c.Timeout = 90 * time.Second
	return &c
}

// user is a --dev user; its requests go to whichever node is asked.
type user struct {
	t      testing.TB
	token  string
	tenant string
}

// login authenticates a --dev user at n.
func login(t testing.TB, n *node, name string) *user {
	t.Helper()
	body := fmt.Sprintf(`{"auth":{"RAX-KSKEY:apiKeyCredentials":{"username":%q,"apiKey":"dev"}}}`, name)
	resp, err := clientFor(n.URL).Post(n.URL+"/v2.0/tokens", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("login %s: status %d", name, resp.StatusCode)
	}
	var out struct {
		Access struct {
			Token struct {
				ID     string              `json:"id"`
				Tenant struct{ ID string } `json:"tenant"`
			} `json:"token"`
		} `json:"access"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return &user{t: t, token: out.Access.Token.ID, tenant: out.Access.Token.Tenant.ID}
}

// reply is an answer.
type reply struct {
	code   int
	body   []byte
	header http.Header
}

func (r reply) json(v any) {
	if err := json.Unmarshal(r.body, v); err != nil {
		panic(fmt.Sprintf("decode %s: %v", r.body, err))
	}
}

// faultType is the type of a fault body, "" if none.
func (r reply) faultType() string {
	var f struct{ Type string }
	json.Unmarshal(r.body, &f)
	return f.Type
}

// try sends method to /v1.0/{tenant}{path} at n.
func (u *user) try(n *node, method, path string, body any) (reply, error) {
	return u.tryCtx(context.Background(), n, method, path, body)
}

func (u *user) tryCtx(ctx context.Context, n *node, method, path string, body any) (reply, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, n.URL+"/v1.0/"+u.tenant+path, rd)
	if err != nil {
		return reply{}, err
	}
	req.Header.Set("X-Auth-Token", u.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := clientFor(n.URL).Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return reply{code: resp.StatusCode, body: data, header: resp.Header}, err
}

// do is try that fails the test on a transport error or a status other
// than want.
func (u *user) do(n *node, method, path string, body any, want int) reply {
	u.t.Helper()
	r, err := u.try(n, method, path, body)
	if err != nil {
		u.t.Fatalf("%s %s at %s: %v", method, path, n.URL, err)
	}
	if r.code != want {
		u.t.Fatalf("%s %s at %s: status %d %s, want %d", method, path, n.URL, r.code, r.body, want)
	}
	return r
}

// create creates a service at n and returns its first token.
func (u *user) create(n *node, id string, timeout int, tags ...string) string {
	u.t.Helper()
	if tags == nil {
		tags = []string{}
	}
	var out struct{ Token string }
	u.do(n, "POST", "/services", map[string]any{"id": id, "heartbeat_timeout": timeout, "tags": tags}, 201).json(&out)
	return out.Token
}

// heartbeat sends token for id at n and returns the next token.
func (u *user) heartbeat(n *node, id, token string) string {
	u.t.Helper()
	var out struct{ Token string }
	u.do(n, "POST", "/services/"+id+"/heartbeat", map[string]string{"token": token}, 200).json(&out)
	return out.Token
}

// event is an event as the API answers it.
type event struct {
	ID        string          `json:"id"`
	Timestamp int64           `json:"timestamp"`
	Type      string          `json:"type"`
	Payload   json.RawMessage `json:"payload"`
}

// subject is the service or configuration id an event is about.
func (e event) subject() string {
	var p struct {
		ID  string `json:"id"`
		CID string `json:"configuration_value_id"`
	}
	json.Unmarshal(e.Payload, &p)
	if p.CID != "" {
		return p.CID
	}
	return p.ID
}

// page is a list answer.
type page[T any] struct {
	Values   []T `json:"values"`
	Metadata struct {
		NextMarker *string `json:"next_marker"`
	} `json:"metadata"`
}

// events reads the whole feed from marker at n, following pages, with the
// opt-in service.update events.
func (u *user) events(n *node, marker string) []event {
	u.t.Helper()
	var all []event
	for {
		path := "/events?limit=1000&include=service.update"
		if marker != "" {
			path += "&marker=" + marker
		}
		var p page[event]
		u.do(n, "GET", path, nil, 200).json(&p)
		all = append(all, p.Values...)
		if p.Metadata.NextMarker == nil {
			return all
		}
		marker = *p.Metadata.NextMarker
	}
}

// summary is "type subject" per event.
func summary(evs []event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Type + " " + e.subject()
	}
	return out
}

// listMarker lists the services at n and returns the X-Registry-Marker.
func (u *user) listMarker(n *node) string {
	u.t.Helper()
	return u.do(n, "GET", "/services", nil, 200).header.Get("X-Registry-Marker")
}

// metric returns the value of a gauge or counter the node's server or
// store exports.
func (n *node) metric(name string) float64 {
	return testserver.Metric(n.t, n.gatherer(), name)
}

// histogram returns the count and sum of a histogram the node exports.
func (n *node) histogram(name string) (count, sum float64) {
	return histogram(n.t, n.gatherer(), name)
}

// gatherer gathers the metrics of the node's current run.
func (n *node) gatherer() prometheus.Gatherer {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.reg
}

// histogram returns the count and sum of the histogram name that g
// gathers (its first series); 0, 0 if there is none.
func histogram(t testing.TB, g prometheus.Gatherer, name string) (count, sum float64) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.Metric) > 0 {
			h := mf.Metric[0].GetHistogram()
			return float64(h.GetSampleCount()), h.GetSampleSum()
		}
	}
	return 0, 0
}

// longPoll starts GET /events?wait=…&marker=from at n and returns once n
// has parked it (its first read done), so a test changes the cluster only
// under a parked poll. The channel gets the summary of the answer's events,
// or a fault that says why there were none to read.
func (u *user) longPoll(ctx context.Context, n *node, from string, wait int) <-chan longPollResult {
	u.t.Helper()
	before := n.metric("svcreg_connections_parked")
	got := make(chan longPollResult, 1)
	go func() {
		r, err := u.tryCtx(ctx, n, "GET", fmt.Sprintf("/events?wait=%d&marker=%s", wait, from), nil)
		switch {
		case err != nil:
			got <- longPollResult{err: err}
		case r.code != http.StatusOK:
			got <- longPollResult{err: fmt.Errorf("status %d: %s", r.code, r.body)}
		default:
			var p page[event]
			r.json(&p)
			got <- longPollResult{events: summary(p.Values)}
		}
	}()
	for deadline := time.Now().Add(10 * time.Second); n.metric("svcreg_connections_parked") <= before; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			u.t.Fatalf("the long-poll at %s never parked", n.addr)
		}
	}
	return got
}

type longPollResult struct {
	events []string
	err    error
}

// testClient is a client of the members at endpoints, closed when the
// test ends.
func testClient(t testing.TB, endpoints []string) *clientv3.Client {
	t.Helper()
	cli, err := etcdstore.NewClient(etcdstore.ClientConfig{Endpoints: endpoints, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// openStore opens a store on cli with opts, closed when the test ends.
func openStore(t *testing.T, cli *clientv3.Client, opts etcdstore.Options) *etcdstore.Store {
	t.Helper()
	s, err := etcdstore.Open(t.Context(), cli, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// cutOffPair starts two nodes on the shared cluster, on clock, with
// nodeTTL, a 1 s request timeout, a 100 ms reap interval and a minute's
// heartbeat slack, the first reaching etcd through a partition the test
// cuts and heals.
func cutOffPair(t *testing.T, clock *testserver.Clock, nodeTTL time.Duration) (*partition, []*node) {
	t.Helper()
	opts := etcdstore.Options{Prefix: registryPrefix(t), Clock: clock.Now, ReapInterval: 100 * time.Millisecond, NodeTTL: nodeTTL, RequestTimeout: time.Second, HeartbeatSlack: time.Minute}
	c := sharedCluster(t)
	part := newPartition(t, c.Endpoints())
	return part, []*node{startNode(t, part.Endpoints, opts), startNode(t, c.Endpoints(), opts)}
}

// loseHeartbeatAnswer sends token for id at n, whose store loses the
// answer of the commit: the heartbeat gets 503, and may have landed.
func (u *user) loseHeartbeatAnswer(n *node, id, token string) {
	u.t.Helper()
	n.mu.Lock()
	etcdstore.LoseNextHeartbeatAnswer(n.st)
	n.mu.Unlock()
	if r, err := u.try(n, "POST", "/services/"+id+"/heartbeat", map[string]string{"token": token}); err != nil || r.code != 503 {
		u.t.Fatalf("heartbeat whose answer was lost: %v %d %s; want 503", err, r.code, r.body)
	}
}

// deleteEventually deletes id at n, trying again for up to 30 s (while
// the cluster settles after a cut), until n answers one of codes, which
// it returns.
func (u *user) deleteEventually(n *node, id string, codes ...int) int {
	u.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		r, err := u.try(n, "DELETE", "/services/"+id, nil)
		if err == nil && slices.Contains(codes, r.code) {
			return r.code
		}
		if time.Now().After(deadline) {
			u.t.Fatalf("delete: %v %d %s", err, r.code, r.body)
		}
	}
}
