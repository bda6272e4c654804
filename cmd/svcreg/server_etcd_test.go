package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svcreg/svcreg/internal/etcdtest"
)

// TestServerOverEtcd runs two `svcreg server --etcd-endpoints` processes
// over one etcd, kills one with SIGKILL in the middle of a stream of
// writes and heartbeats, and checks at the other that everything the
// killed one acknowledged is there and every heartbeat token it last
// handed out still works.
func TestServerOverEtcd(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	args := []string{"--etcd-endpoints", strings.Join(c.Endpoints(), ","), "--etcd-prefix", "/cmd-test/", "--etcd-node-ttl", "7s", "--etcd-request-timeout", "3s"}
	nodeA := startServerProcess(t, args...)
	nodeB := startServerProcess(t, args...)
	// Each node's key is on a lease of --etcd-node-ttl (5s by default).
	if got, want := nodeLeaseTTLs(t, c.Endpoints(), "/cmd-test/"), []int64{7, 7}; !slices.Equal(got, want) {
		t.Errorf("node leases granted for %v seconds, want %v", got, want)
	}
	// The "listening" line names the node as the other nodes' logs do,
	// and where it takes their copies.
	if !regexp.MustCompile(`msg="svcreg server listening" .* node=[0-9a-f]{16} peer_listen=127\.0\.0\.1:[0-9]+ `).MatchString(nodeA.out.String()) {
		t.Errorf("the listening line names no node and peer address:\n%s", nodeA.out)
	}
	a := login(t, nodeA.url, "etcd-crash")
	// A token issued by one node works at the other.
	b := a.at(nodeB.url)

	var (
		mu     sync.Mutex
		tokens = map[string]string{} // service id -> latest acknowledged token
		config = map[string]string{}
		beats  int // heartbeats acknowledged
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("svc-%d-%d", w, i%5)
				mu.Lock()
				tok, ok := tokens[id]
				mu.Unlock()
				if !ok {
					code, out, err := a.doJSON("POST", "/services", map[string]any{"id": id, "heartbeat_timeout": 60})
					if err != nil {
						return // killed
					}
					if code == 201 {
						mu.Lock()
						tokens[id] = out["token"].(string)
						mu.Unlock()
					}
					continue
				}
				code, out, err := a.doJSON("POST", "/services/"+id+"/heartbeat", map[string]any{"token": tok})
				if err != nil {
					return
				}
				if code == 200 {
					mu.Lock()
					tokens[id], beats = out["token"].(string), beats+1
					mu.Unlock()
				}
				key := fmt.Sprintf("key-%d", w)
				if code, _, err := a.doJSON("PUT", "/configuration/"+key, map[string]any{"value": fmt.Sprint(i)}); err == nil && code == 204 {
					mu.Lock()
					config[key] = fmt.Sprint(i)
					mu.Unlock()
				}
			}
		})
	}
	// Every service created, every key written, heartbeats flowing: then
	// the kill, however long a loaded machine took to get there.
	eventuallyTrue(t, "the stream of writes and heartbeats", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(tokens) == 20 && len(config) == 4 && beats >= 20
	})
	nodeA.kill()
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(tokens) == 0 {
		t.Fatal("nothing was acknowledged before the kill")
	}
	for id, tok := range tokens {
		code, out, err := b.doJSON("POST", "/services/"+id+"/heartbeat", map[string]any{"token": tok})
		if err != nil || code != 200 {
			t.Errorf("heartbeat of %s at the other node with the last token the killed one gave: %v %d %v", id, err, code, out)
		}
	}
	for key, v := range config {
		// A write in flight at the kill may have committed after the last
		// acknowledged one: the value is that one or a later one.
		code, out, err := b.doJSON("GET", "/configuration/"+key, nil)
		got, _ := out["value"].(string)
		if err != nil || code != 200 || configValueNumber(got) < configValueNumber(v) {
			t.Errorf("value %s at the other node: %v %d %v, want %q or later", key, err, code, out, v)
		}
	}
}

// killHolder starts two nodes with args, makes the first hold a service
// with a 3 s timeout (a heartbeat there), and kills it with SIGKILL: the
// client dies with it. It returns the timeout events' timestamps as the
// second node gives them, once it timed the service out, and when the
// heartbeat was sent and answered.
func killHolder(t *testing.T, tenant string, args ...string) (timeouts []float64, before, after time.Time) {
	t.Helper()
	c := etcdtest.Start(t, etcdtest.Options{})
	args = append([]string{"--etcd-endpoints", strings.Join(c.Endpoints(), ","), "--reap-interval", "100ms"}, args...)
	nodeA, nodeB := startServerProcess(t, args...), startServerProcess(t, args...)
	a := login(t, nodeA.url, tenant)
	b := a.at(nodeB.url)
	code, out, err := a.doJSON("POST", "/services", map[string]any{"id": "lost", "heartbeat_timeout": 3})
	if err != nil || code != 201 {
		t.Fatalf("create: %v %d %v", err, code, out)
	}
	// The first heartbeat makes node A the holder (an etcd write); the
	// second is answered from its memory once node B took its copy (or,
	// without copies, written again at the least slack). Then A dies, and
	// so does the client (it sends nothing more).
	code, out, err = a.doJSON("POST", "/services/lost/heartbeat", map[string]any{"token": out["token"]})
	if err != nil || code != 200 {
		t.Fatalf("heartbeat: %v %d %v", err, code, out)
	}
	before = time.Now()
	code, out, err = a.doJSON("POST", "/services/lost/heartbeat", map[string]any{"token": out["token"]})
	after = time.Now()
	if err != nil || code != 200 {
		t.Fatalf("heartbeat: %v %d %v", err, code, out)
	}
	nodeA.kill()

	eventuallyTrue(t, "node B to time the service out", func() bool {
		code, out, err := b.doJSON("GET", "/events?type=service.timeout", nil)
		if err != nil || code != 200 {
			return false
		}
		timeouts = timeouts[:0]
		values, _ := out["values"].([]any)
		for _, v := range values {
			ev, _ := v.(map[string]any)
			if ts, ok := ev["timestamp"].(float64); ok {
				timeouts = append(timeouts, ts)
			}
		}
		return len(timeouts) > 0
	})
	if len(timeouts) != 1 {
		t.Fatalf("%d timeout events, want 1", len(timeouts))
	}
	return timeouts, before, after
}

// A service whose client died with the node holding it times out at the
// deadline of the last token that node handed out: node B has a copy of
// it (--etcd-peer-listen's default).
func TestServerEtcdHolderKilled(t *testing.T) {
	t.Parallel()
	const timeout = 3 * time.Second
	// Lingers other than the defaults: a copy that waits longer for
	// others still reaches the peer before the heartbeat is answered.
	timeouts, before, after := killHolder(t, "etcd-holder-killed", "--etcd-copy-linger", "20ms", "--etcd-heartbeat-linger", "0")
	at := time.UnixMilli(int64(timeouts[0]))
	if early, late := before.Add(timeout).Truncate(time.Millisecond), after.Add(timeout); at.Before(early) || at.After(late) {
		t.Errorf("timed out at %s, want the last token's deadline: from %s to %s", at.Format(time.StampMilli), early.Format(time.StampMilli), late.Format(time.StampMilli))
	}
}

// Without copies (--etcd-peer-listen off), --etcd-heartbeat-slack bounds
// how late such a service is timed out: here 15 s (the least it takes),
// where the default would be a minute. The timeout is stamped with the
// stored deadline: at the least slack a node without a peer writes every
// heartbeat (it answers from memory only while the stored deadline is
// the least slack past the new one), so the last heartbeat's plus the
// slack.
func TestServerEtcdHeartbeatSlack(t *testing.T) {
	t.Parallel()
	const timeout, slack = 3 * time.Second, 15 * time.Second
	timeouts, before, after := killHolder(t, "etcd-slack", "--etcd-heartbeat-slack", slack.String(), "--etcd-peer-listen", "off")
	at := time.UnixMilli(int64(timeouts[0]))
	if early, late := before.Add(timeout+slack).Truncate(time.Millisecond), after.Add(timeout+slack); at.Before(early) || at.After(late) {
		t.Errorf("timed out at %s, want the stored deadline: from %s to %s", at.Format(time.StampMilli), early.Format(time.StampMilli), late.Format(time.StampMilli))
	}
}

func TestServerEtcdFlags(t *testing.T) {
	t.Parallel()
	// Flags of the etcd store without --etcd-endpoints, each in range.
	noEtcd := [][]string{
		{"--etcd-heartbeat-slack", "30s"},
		{"--etcd-cert", "c.pem", "--etcd-key", "k.pem"},
		{"--etcd-peer-listen", "10.0.0.1:7380"},
		{"--etcd-heartbeat-linger", "5ms"},
		{"--etcd-copy-linger", "0"},
		{"--etcd-node-ttl", "10s"},
		{"--etcd-request-timeout", "2s"},
	}
	// Flags out of range, or missing their pair, with --etcd-endpoints.
	withEtcd := [][]string{
		{"--etcd-heartbeat-slack", "-1s"},
		{"--etcd-heartbeat-slack", "14s"},
		{"--etcd-heartbeat-slack", "25h"},
		{"--etcd-cert", "c.pem"},
		{"--etcd-username", "u"},
		{"--etcd-peer-listen", "10.0.0.1"},
		{"--etcd-peer-advertise", "10.0.0.1:0"},
		{"--etcd-peer-advertise", ":7380"},
		{"--etcd-peer-listen", "off", "--etcd-peer-advertise", "10.0.0.1:7380"},
		{"--etcd-heartbeat-linger", "-1ms"},
		{"--etcd-heartbeat-linger", "2s"},
		{"--etcd-copy-linger", "-1ms"},
		{"--etcd-copy-linger", "200ms"},
		{"--etcd-node-ttl", "1s"},
		{"--etcd-node-ttl", "31s"},
		{"--etcd-node-ttl", "2500ms"},
		{"--etcd-request-timeout", "500ms"},
		{"--etcd-request-timeout", "31s"},
		// 30s + 2×16s is more than 61s.
		{"--etcd-node-ttl", "30s", "--etcd-request-timeout", "16s", "--etcd-heartbeat-slack", "61s"},
	}
	var cases [][]string
	for _, args := range noEtcd {
		cases = append(cases, append([]string{"--dev"}, args...))
	}
	for _, args := range withEtcd {
		cases = append(cases, append([]string{"--dev", "--etcd-endpoints", "http://127.0.0.1:1"}, args...))
	}
	for _, args := range cases {
		var stdout, stderr bytes.Buffer
		if code := Main(t.Context(), append([]string{"server"}, args...), strings.NewReader(""), &stdout, &stderr); code != exitUsage {
			t.Errorf("svcreg server %q: exit %d, want %d (usage); stderr %s", args, code, exitUsage, stderr.String())
		}
	}
}

// Credentials in an etcd endpoint's URL, which etcd's client does not
// use and the server's log and ps would show, are a usage error that says
// where they go, without repeating them.
func TestServerRefusesCredentialsInEtcdEndpoints(t *testing.T) {
	t.Parallel()
	for _, eps := range []string{"http://127.0.0.1:1, http://root:s3cret@127.0.0.1:2", "root:s3cret@127.0.0.1:2379"} {
		var stdout, stderr bytes.Buffer
		code := Main(t.Context(), []string{"server", "--dev", "--etcd-endpoints", eps}, strings.NewReader(""), &stdout, &stderr)
		if code != exitUsage || !strings.Contains(stderr.String(), "--etcd-username") || strings.Contains(stderr.String()+stdout.String(), "s3cret") {
			t.Errorf("%s: exit %d, stderr %q; want a usage error naming --etcd-username, without the password", eps, code, stderr.String())
		}
	}
}

// nodeLeaseTTLs returns the TTLs, in seconds and in order, that etcd
// granted the leases of the node keys under prefix.
func nodeLeaseTTLs(t *testing.T, endpoints []string, prefix string) []int64 {
	t.Helper()
	cli := etcdtest.Client(t, endpoints...)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, prefix+"node/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var ttls []int64
	for _, kv := range resp.Kvs {
		lease, err := cli.TimeToLive(ctx, clientv3.LeaseID(kv.Lease))
		if err != nil {
			t.Fatal(err)
		}
		ttls = append(ttls, lease.GrantedTTL)
	}
	slices.Sort(ttls)
	return ttls
}

func configValueNumber(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}

// The etcd user's password may come from SVCREG_ETCD_PASSWORD, which
// other local users cannot read as they can a command line.
func TestServerEtcdPasswordFromEnvironment(t *testing.T) {
	t.Setenv("SVCREG_ETCD_PASSWORD", "from-the-environment")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := Main(ctx, []string{"server", "--dev", "--etcd-endpoints", "http://127.0.0.1:1", "--etcd-username", "u"}, strings.NewReader(""), &stdout, &stderr)
	if code == exitUsage || strings.Contains(stderr.String(), "go together") {
		t.Errorf("--etcd-username with SVCREG_ETCD_PASSWORD: exit %d, %s; want the password taken", code, stderr.String())
	}
}

// An etcd that does not answer at start is reported with what each
// endpoint does with a connection, so that the operator sees whether the
// address is wrong or a member is stopped.
func TestServerEtcdUnreachableAtStart(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String()
	ln.Close()
	var stdout, stderr bytes.Buffer
	code := Main(t.Context(), []string{"server", "--dev", "--etcd-endpoints", refused, "--etcd-request-timeout", "1s"}, strings.NewReader(""), &stdout, &stderr)
	if code == 0 || code == exitUsage {
		t.Fatalf("exit %d, want a failure to open the store; stderr %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "no answer from etcd: "+refused+": ") || !strings.Contains(stderr.String(), "connection refused") {
		t.Errorf("stderr does not say that %s refused the connection:\n%s", refused, stderr.String())
	}
}

// An etcd endpoint on a Unix socket is probed at its socket, not as a TCP
// address.
func TestServerEtcdReachUnixSocket(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sock := filepath.Join(dir, "etcd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	missing := filepath.Join(dir, "missing.sock")
	got := reachEtcd([]string{"unix://" + sock, "unixs://" + missing})
	if !strings.Contains(got, "unix://"+sock+" takes connections") {
		t.Errorf("reachEtcd(unix://%s) = %s; want it to take connections", sock, got)
	}
	if !strings.Contains(got, "unixs://"+missing+": dial unix "+missing+": ") {
		t.Errorf("reachEtcd(unixs://%s) = %s; want the socket's dial error", missing, got)
	}
}

// An etcd that answers, but refuses the node (its user lacks permission on
// the prefix), is reported as such, not as an etcd that did not answer.
func TestServerEtcdPermissionDeniedAtStart(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := etcdtest.Client(t, c.Endpoints()...)
	ctx := t.Context()
	for _, step := range []func() error{
		func() error { _, err := cli.UserAdd(ctx, "root", "root-password"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.UserAdd(ctx, "u", "u-password"); return err },
		func() error { _, err := cli.RoleAdd(ctx, "elsewhere"); return err },
		func() error {
			_, err := cli.RoleGrantPermission(ctx, "elsewhere", "/elsewhere/", clientv3.GetPrefixRangeEnd("/elsewhere/"), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := cli.UserGrantRole(ctx, "u", "elsewhere"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	var stdout, stderr bytes.Buffer
	code := Main(ctx, []string{"server", "--dev", "--listen", "127.0.0.1:0", "--etcd-endpoints", strings.Join(c.Endpoints(), ","),
		"--etcd-username", "u", "--etcd-password", "u-password", "--etcd-request-timeout", "1s"}, strings.NewReader(""), &stdout, &stderr)
	if code == 0 || code == exitUsage {
		t.Fatalf("exit %d, want a failure to open the store; stderr %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "permission denied") || !strings.Contains(stderr.String(), `the etcd user "u" needs read-write on the prefix /svcreg/`) {
		t.Errorf("stderr does not say that etcd refused the user on the prefix:\n%s", stderr.String())
	}
	if strings.Contains(stderr.String(), "no answer from etcd") {
		t.Errorf("stderr says etcd did not answer, though it did:\n%s", stderr.String())
	}
}
