package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svcreg/svcreg/internal/etcdtest"
	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/server/store"
)

func debugLogger(b *testserver.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Showing an outage in the node key does not hold up the lease's
// renewals: a write of the key that etcd takes 4 s to answer (within the
// request timeout; an election, a slow disk, a silent member) used to
// delay the next renewal past three quarters of the TTL, which recorded a
// second outage, and past the TTL, which lost the lease.
func TestSlowShowOfAnOutageKeepsTheLease(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := etcdtest.Client(t, c.Endpoints()...)
	gate := &gatedKV{KV: cli.KV, gate: func(n int32, ctx context.Context, send sendTxn) (*clientv3.TxnResponse, error) {
		if n == 1 {
			select {
			case <-time.After(4 * time.Second):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return send(ctx)
	}}
	var logs testserver.Buffer
	// The default TTL and request timeout, 5 s each.
	s, err := Open(t.Context(), swapped(cli, gate, nil), Options{Prefix: "/" + t.Name() + "/", Logger: debugLogger(&logs), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	key := s.k.node(s.nodeID)
	gate.key.Store(&key)
	// An outage of this node's: it no longer counts on its lease, and its
	// next renewal records the outage, which it then shows.
	s.lease.mu.Lock()
	s.lease.until = time.Now().Add(-time.Second)
	s.lease.mu.Unlock()
	deadline := time.Now().Add(15 * time.Second)
	for strings.Count(logs.String(), "etcd answers again after an outage") == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	// Three TTLs after the outage: a renewal held up behind the slow write
	// shows within two.
	time.Sleep(3 * DefaultNodeTTL)
	out := logs.String()
	if n, lost := strings.Count(out, "etcd answers again after an outage"), strings.Count(out, "node lease lost"); n != 1 || lost != 0 {
		t.Errorf("%d outages recorded (want 1), lease lost %d times (want 0)\n%s", n, lost, out)
	}
	resp, err := cli.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || !strings.Contains(string(resp.Kvs[0].Value), `"outages":[{`) {
		t.Errorf("the node key does not show the outage: %q", resp.Kvs)
	}
}

// openNode opens a store over cli with opts, logging at debug level to
// logs, and runs it until the test ends.
func openNode(t *testing.T, cli *clientv3.Client, opts Options, logs *testserver.Buffer) *Store {
	t.Helper()
	opts.Logger = debugLogger(logs)
	opts.Registerer = prometheus.NewRegistry()
	s, err := Open(t.Context(), cli, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	go s.Run(t.Context())
	return s
}

func blindNow(s *Store) bool {
	s.outages.mu.Lock()
	defer s.outages.mu.Unlock()
	return s.outages.blind != 0 && time.Now().UnixNano() < s.outages.blind
}

func listedNode(s *Store, id string) bool {
	s.peers.mu.Lock()
	defer s.peers.mu.Unlock()
	_, ok := s.peers.nodes[id]
	return ok
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// Two nodes that start at about the same time: k registers after j did,
// but before j's node watch made its first list. k waits for j (j's key
// was written before k joined); j, finding k in its first list, writes
// its key for it, so k's wait ends then. It used to end only at its cap
// (node TTL and request timeout).
func TestNodeRegisteredBeforeAnothersFirstListIsAnswered(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	opts := Options{Prefix: "/" + t.Name() + "/", NodeTTL: 6 * time.Second, RequestTimeout: 3 * time.Second}
	cliJ := etcdtest.Client(t, c.Endpoints()...)
	hold := holdFirstList(cliJ.KV, keys{p: opts.Prefix}.nodes())
	var logsJ, logsK testserver.Buffer
	j := openNode(t, swapped(cliJ, hold, nil), opts, &logsJ)
	<-hold.arrived // j registered; its node watch's first list waits
	k := openNode(t, etcdtest.Client(t, c.Endpoints()...), opts, &logsK)
	if !blindNow(k) {
		t.Fatal("k did not join a running registry")
	}
	close(hold.release)
	// k's cap is 9 s away.
	waitFor(t, "k's wait to end", 5*time.Second, func() bool {
		return strings.Contains(logsK.String(), "every node running when this one joined has written its key since")
	})
	if !listedNode(j, k.nodeID) {
		t.Error("k's wait ended before j listed it")
	}
}

func nodeKeyOutages(t *testing.T, cli *clientv3.Client, key string) (n int, rev int64) {
	t.Helper()
	resp, err := cli.Get(t.Context(), key)
	if err != nil || len(resp.Kvs) == 0 {
		return -1, 0
	}
	var v nodeValue
	if err := json.Unmarshal(resp.Kvs[0].Value, &v); err != nil {
		t.Fatal(err)
	}
	return len(v.Outages), resp.Kvs[0].ModRevision
}

func lapse(s *Store) {
	s.lease.mu.Lock()
	s.lease.until = time.Now().Add(-time.Second)
	s.lease.mu.Unlock()
}

// A write of the node key that etcd commits after its caller gave up (a
// hedge's other send, a send to a member that stopped answering and came
// back) does not land over a newer write of the key: a joining node does
// not take it for the running node's answer and end its wait without the
// outage it lacks, and the key goes on showing every outage. It used to be
// conditioned on the key's lease alone.
func TestLateShowDoesNotOverwriteANewerOne(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	opts := Options{Prefix: "/" + t.Name() + "/", NodeTTL: 3 * time.Second, RequestTimeout: time.Second}
	cli := etcdtest.Client(t, c.Endpoints()...)
	var logsA, logsJ testserver.Buffer
	a := openNode(t, etcdtest.Client(t, c.Endpoints()...), opts, &logsA)
	keyA := a.k.node(a.nodeID)
	late := &lateWrite{what: "show outages in the node key", commit: make(chan func() (bool, error), 1)}
	a.late.Store(late)
	// A renewal first, so that its first outage does not begin at its
	// registration.
	time.Sleep(opts.NodeTTL/3 + 300*time.Millisecond)

	lapse(a) // outage 1: its first show is the late one; the retry shows it
	waitFor(t, "a to show its first outage", 10*time.Second, func() bool { n, _ := nodeKeyOutages(t, cli, keyA); return n == 1 })
	lapse(a) // outage 2
	waitFor(t, "a to show its second outage", 10*time.Second, func() bool { n, _ := nodeKeyOutages(t, cli, keyA); return n == 2 })

	cliJ := etcdtest.Client(t, c.Endpoints()...)
	hold := holdFirstList(cliJ.KV, keys{p: opts.Prefix}.nodes())
	j := openNode(t, swapped(cliJ, hold, nil), opts, &logsJ)
	<-hold.arrived
	j.outages.mu.Lock()
	joinRev := j.outages.joinRev
	j.outages.mu.Unlock()
	// a acknowledges j: its key, with both outages, written after j joined.
	waitFor(t, "a's ack", 5*time.Second, func() bool { n, rev := nodeKeyOutages(t, cli, keyA); return n == 2 && rev > joinRev })
	// The first show lands now.
	landed, err := (<-late.commit)()
	t.Logf("the late show landed: %v (%v)", landed, err)
	close(hold.release)
	waitFor(t, "j to list a", 5*time.Second, func() bool { return listedNode(j, a.nodeID) })
	time.Sleep(200 * time.Millisecond)
	j.outages.mu.Lock()
	adopted, blind := len(j.outages.spans), j.outages.blind
	j.outages.mu.Unlock()
	if adopted != 2 && blind == 0 {
		t.Errorf("j ended its wait having adopted %d of a's 2 outages\nj:\n%s", adopted, logsJ.String())
	}
	time.Sleep(2 * opts.NodeTTL) // a's renewals
	a.outages.mu.Lock()
	has := len(a.outages.spans)
	a.outages.mu.Unlock()
	if n, _ := nodeKeyOutages(t, cli, keyA); n != has {
		t.Errorf("a's key shows %d outages two TTLs later; a has %d\na:\n%s\nj:\n%s", n, has, logsA.String(), logsJ.String())
	}
}

// A joining node that adopted an outage, and whose reaper ran while it
// waited for the running node, times out a due service that only the wait
// left to the others (its deadline is before the outage) once the wait
// ends, not at its cap: the services it passed over meanwhile are looked
// at again. They used to be passed over until the cap.
func TestEndedWaitTimesOutWhatItLeft(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := etcdtest.Client(t, c.Endpoints()...)
	held := make(chan struct{})
	gateA := &gatedKV{KV: cli.KV, gate: func(n int32, ctx context.Context, send sendTxn) (*clientv3.TxnResponse, error) {
		select {
		case <-held:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return send(ctx)
	}}
	optsA := Options{Prefix: "/" + t.Name() + "/", NodeTTL: 3 * time.Second, RequestTimeout: time.Second, ReapInterval: time.Hour}
	var logsA, logsJ testserver.Buffer
	a := openNode(t, swapped(etcdtest.Client(t, c.Endpoints()...), gateA, nil), optsA, &logsA)
	keyA := a.k.node(a.nodeID)
	if _, err := a.CreateService(t.Context(), "t", store.NewService{ID: "s", HeartbeatTimeout: 3}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(6 * time.Second) // the deadline passes, well before the outage
	lapse(a)
	waitFor(t, "a to show its outage", 10*time.Second, func() bool { n, _ := nodeKeyOutages(t, cli, keyA); return n == 1 })
	gateA.key.Store(&keyA) // a's ack waits

	optsJ := optsA
	optsJ.ReapInterval = 200 * time.Millisecond
	optsJ.RequestTimeout = 5 * time.Second // cap: 8 s
	joined := time.Now()
	j := openNode(t, etcdtest.Client(t, c.Endpoints()...), optsJ, &logsJ)
	waitFor(t, "j to adopt a's outage", 5*time.Second, func() bool {
		j.outages.mu.Lock()
		defer j.outages.mu.Unlock()
		return len(j.outages.spans) == 1
	})
	time.Sleep(time.Second) // j's reaper passes over s: blind
	svc := a.k.service("t", "s")
	if resp, _ := cli.Get(t.Context(), svc); len(resp.Kvs) == 0 {
		t.Fatal("j timed s out while it waited")
	}
	close(held) // a answers
	waitFor(t, "j's wait to end", 5*time.Second, func() bool { return strings.Contains(logsJ.String(), "has written its key since") })
	capEnd := joined.Add(optsJ.NodeTTL + optsJ.RequestTimeout)
	waitFor(t, "j to time s out", 15*time.Second, func() bool { resp, _ := cli.Get(t.Context(), svc); return len(resp.Kvs) == 0 })
	if time.Now().After(capEnd) {
		t.Errorf("j timed s out only once its cap had passed, %v after it joined, not once its wait ended", time.Since(joined).Round(time.Millisecond))
	}
}

// A write of the node key that etcd committed but whose answer was lost
// (a member that applied it, then went silent) leaves the node's idea of
// its key's revision behind. The answer to a node that registers
// meanwhile finds the key written since, with the same value (an answer
// changes no outage), and writes it again: the joining node's wait ends
// then. It used to take that write for the answer and write nothing, and
// the joining node waited its whole cap.
func TestAnswerAfterALostOneIsWritten(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := etcdtest.Client(t, c.Endpoints()...)
	committed := make(chan int64, 1)
	answer := make(chan struct{})
	gate := &gatedKV{KV: cli.KV, gate: func(n int32, ctx context.Context, send sendTxn) (*clientv3.TxnResponse, error) {
		if n != 1 {
			return send(ctx)
		}
		resp, err := send(context.Background()) // commits
		if err == nil && resp.Succeeded {
			committed <- resp.Header.Revision
		}
		<-answer // its answer never comes
		return nil, errors.New("answer lost")
	}}
	opts := Options{Prefix: "/" + t.Name() + "/", NodeTTL: 6 * time.Second, RequestTimeout: 5 * time.Second}
	var logsA, logsJ testserver.Buffer
	a := openNode(t, swapped(etcdtest.Client(t, c.Endpoints()...), gate, nil), opts, &logsA)
	keyA := a.k.node(a.nodeID)
	gate.key.Store(&keyA)
	time.Sleep(opts.NodeTTL/3 + 300*time.Millisecond)
	lapse(a) // an outage: its show commits, its answer is lost
	var r1 int64
	select {
	case r1 = <-committed:
	case <-time.After(10 * time.Second):
		t.Fatal("no show")
	}
	j := openNode(t, etcdtest.Client(t, c.Endpoints()...), opts, &logsJ) // registers after r1
	if !blindNow(j) {
		t.Fatal("j did not join a running registry")
	}
	// a sees j (ack) while the lost show still waits for its answer.
	waitFor(t, "a to list j", 5*time.Second, func() bool { return listedNode(a, j.nodeID) })
	close(answer)
	// j's cap: 11 s. a's ack, once written, ends j's wait within ms.
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(logsJ.String(), "has written its key since") {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, rev := nodeKeyOutages(t, cli, keyA)
	j.outages.mu.Lock()
	joinRev := j.outages.joinRev
	j.outages.mu.Unlock()
	t.Errorf("j still waits for a 4 s after a answered it (its cap is 11 s): a's key at rev %d (the lost show's %d), j joined at %d\na:\n%s", rev, r1, joinRev, logsA.String())
}

// slowGrant grants leases d late.
type slowGrant struct {
	clientv3.Lease
	d time.Duration
}

func (l *slowGrant) Grant(ctx context.Context, ttl int64) (*clientv3.LeaseGrantResponse, error) {
	time.Sleep(l.d)
	return l.Lease.Grant(ctx, ttl)
}

// The cap on a joining node's wait (node TTL and request timeout) bounds
// how long a running node may take to write its key after the
// registration it answers, so it counts from the registration: a slow
// registration (here a lease grant that takes 3 s) does not eat into it.
func TestWaitCapCountsFromTheRegistration(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	opts := Options{Prefix: "/" + t.Name() + "/", NodeTTL: 6 * time.Second, RequestTimeout: 5 * time.Second}
	var logsA, logsJ testserver.Buffer
	openNode(t, etcdtest.Client(t, c.Endpoints()...), opts, &logsA)
	cliJ := etcdtest.Client(t, c.Endpoints()...)
	j := openNode(t, swapped(cliJ, nil, &slowGrant{Lease: cliJ.Lease, d: 3 * time.Second}), opts, &logsJ)
	registered := time.Now() // after the registration committed
	j.outages.mu.Lock()
	blind := time.Unix(0, j.outages.blind)
	j.outages.mu.Unlock()
	if got, want := blind.Sub(registered), opts.NodeTTL+opts.RequestTimeout; got < want-500*time.Millisecond {
		t.Errorf("j's cap ends %v after its registration committed, want about %v", got.Round(time.Millisecond), want)
	}
}
