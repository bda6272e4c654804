package etcdstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svcreg/svcreg/internal/etcdtest"
	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/server/store"
	"github.com/svcreg/svcreg/server/store/etcdstore"
)

// etcdRevision is the cluster's current revision: it moves with every
// write to etcd.
func etcdRevision(t *testing.T, c *etcdtest.Cluster) int64 {
	t.Helper()
	return etcdGet(t, c, "/nothing").Header.Revision
}

// etcdChanges is what moved etcd from revision from to revision to: each
// put and delete, as its revision and key, but those of nodes' own keys
// (their registration, and the outages a node whose lease renewal came
// late shows there), which no client's request writes.
func etcdChanges(t *testing.T, c *etcdtest.Cluster, from, to int64) []string {
	t.Helper()
	cli := etcdtest.Client(t, c.Endpoints()...)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var changes []string
	for resp := range cli.Watch(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithRev(from+1)) {
		if err := resp.Err(); err != nil {
			t.Fatalf("watch etcd from revision %d: %v", from+1, err)
		}
		for _, ev := range resp.Events {
			if !strings.Contains(string(ev.Kv.Key), "/node/") {
				changes = append(changes, fmt.Sprintf("revision %d: %s %q", ev.Kv.ModRevision, ev.Type, ev.Kv.Key))
			}
		}
		if resp.Header.Revision >= to {
			break
		}
	}
	return changes
}

// clientWrites is what was written to etcd since revision before
// (etcdChanges), one line each.
func clientWrites(t *testing.T, c *etcdtest.Cluster, before int64) string {
	t.Helper()
	after := etcdRevision(t, c)
	if after == before {
		return ""
	}
	return strings.Join(etcdChanges(t, c, before, after), "\n")
}

// etcdGet reads key (with opts) from c, as a client of its own.
func etcdGet(t *testing.T, c *etcdtest.Cluster, key string, opts ...clientv3.OpOption) *clientv3.GetResponse {
	t.Helper()
	cli := etcdtest.Client(t, c.Endpoints()...)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// A node's heartbeats of a service it holds cost no etcd write: after the
// first, etcd's revision does not move, and reads at that node show the
// last heartbeat's time.
func TestHeartbeatsWithoutEtcdWrites(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	n := startNodes(t, c, 2, etcdstore.Options{})
	// Until a node has its peer for copies, its heartbeats may write.
	peerOf(t, n[0], n)
	u := login(t, n[0], "in-memory")
	tok := u.create(n[0], "svc-1", 30)
	tok = u.heartbeat(n[0], "svc-1", tok)
	before := etcdRevision(t, c)
	var sent time.Time
	for range 50 {
		sent = time.Now()
		tok = u.heartbeat(n[0], "svc-1", tok)
	}
	if w := clientWrites(t, c, before); w != "" {
		t.Errorf("50 heartbeats at the holding node wrote to etcd:\n%s", w)
	}
	if got := n[0].metric("svcreg_store_heartbeats_in_memory_total"); got != 50 {
		t.Errorf("%v heartbeats answered from memory, want 50", got)
	}
	var svc struct {
		LastSeen int64 `json:"last_seen"`
	}
	u.do(n[0], "GET", "/services/svc-1", nil, 200).json(&svc)
	if svc.LastSeen < sent.UnixMilli() {
		t.Errorf("last_seen %d is before the last heartbeat was sent (%d)", svc.LastSeen, sent.UnixMilli())
	}
	if deadline := tokenDeadline(tok); deadline < sent.Add(30*time.Second).UnixMilli() {
		t.Errorf("token deadline %d is not the heartbeat's time plus the timeout", deadline)
	}
}

// A service held by one node moves to another when a heartbeat goes
// there, exactly: the holder hands its state over, so a retry of the token
// just used answers the same next token at either node, and a token used
// before is refused at both. A delete or a timeout change at another node
// also takes the service from its holder first, so the holder never
// answers a heartbeat of a deleted service, and applies the new timeout.
func TestHeartbeatsMoveBetweenNodes(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	n := startNodes(t, c, 2, etcdstore.Options{})
	u := login(t, n[0], "move")
	t0 := u.create(n[0], "svc-1", 30)
	t1 := u.heartbeat(n[0], "svc-1", t0)
	t2 := u.heartbeat(n[0], "svc-1", t1) // from memory
	t3 := u.heartbeat(n[1], "svc-1", t2) // handed over
	if got := u.heartbeat(n[0], "svc-1", t2); got != t3 {
		t.Errorf("retry of the token used at the other node answered %s, want %s", got, t3)
	}
	if got := u.heartbeat(n[1], "svc-1", t2); got != t3 {
		t.Errorf("retry at the new holder answered %s, want %s", got, t3)
	}
	for i, x := range n {
		r := u.do(x, "POST", "/services/svc-1/heartbeat", map[string]string{"token": t1}, 404)
		if r.faultType() != "notFoundError" {
			t.Errorf("used token at node %d: %s", i, r.body)
		}
	}
	t4 := u.heartbeat(n[1], "svc-1", t3)
	// Node 0 hands it over, or node 1 from its copy if node 0 was slow.
	if n[0].metric("svcreg_store_heartbeat_handovers_total")+n[1].metric("svcreg_store_heartbeat_handovers_total") < 1 {
		t.Error("nothing was handed over")
	}

	// A timeout change at node 0 reaches the holder, node 1.
	u.do(n[0], "PUT", "/services/svc-1", map[string]any{"heartbeat_timeout": 120}, 204)
	sent := time.Now()
	t5 := u.heartbeat(n[1], "svc-1", t4)
	if d := tokenDeadline(t5); d < sent.Add(100*time.Second).UnixMilli() {
		t.Errorf("after the timeout became 120 s the holder's token deadline is %v after the heartbeat", time.Duration(d-sent.UnixMilli())*time.Millisecond)
	}
	t6 := u.heartbeat(n[1], "svc-1", t5)

	// Deleted at node 0, while node 1 holds it.
	u.do(n[0], "DELETE", "/services/svc-1", nil, 204)
	u.do(n[1], "POST", "/services/svc-1/heartbeat", map[string]string{"token": t6}, 404)
	want := []string{"service.join svc-1", "service.update svc-1", "service.remove svc-1"}
	if got := summary(u.events(n[1], "")); !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
}

// Killing the node that took the last heartbeats loses none of them: the
// newest token it handed out works at another node, a service kept
// heartbeating there never times out, and one abandoned at the crash times
// out exactly once, no earlier than the deadline the dead node handed out
// and at most the slack later.
func TestHoldingNodeCrash(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	clock := new(testserver.Clock)
	opts := etcdstore.Options{Clock: clock.Now, NodeTTL: 2 * time.Second, ReapInterval: 100 * time.Millisecond}
	// The least slack that is safe: the heartbeat at node 1 right after
	// the crash waits for node 0's lease.
	slack := etcdstore.MinHeartbeatSlack(opts)
	opts.HeartbeatSlack = slack
	n := startNodes(t, c, 2, opts)
	// At the least slack a node answers from memory only once its peer
	// takes the copies.
	peerOf(t, n[0], n)
	u := login(t, n[0], "holder-crash")
	steady := u.create(n[0], "steady", 3)
	quiet := u.create(n[0], "quiet", 3)
	for range 3 {
		steady = u.heartbeat(n[0], "steady", steady)
		quiet = u.heartbeat(n[0], "quiet", quiet)
	}
	if n[0].metric("svcreg_store_heartbeats_in_memory_total") < 4 {
		t.Fatal("node 0 answered no heartbeats from memory")
	}
	quietDeadline := tokenDeadline(quiet)
	n[0].crash()

	steady = u.heartbeat(n[1], "steady", steady)
	steady = beatThrough(u, n[1], clock, 3*time.Second+slack+time.Second, "steady", steady)
	u.do(n[1], "GET", "/services/quiet", nil, 404)
	evs := u.events(n[1], "")
	want := []string{"service.join steady", "service.join quiet", "service.timeout quiet"}
	if got := summary(evs); !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	if ts := evs[2].Timestamp; ts < quietDeadline || ts > quietDeadline+slack.Milliseconds()+1 {
		t.Errorf("quiet timed out at %d; its last token's deadline was %d, the slack %v", ts, quietDeadline, slack)
	}
	// The client keeps heartbeating while node 0 starts again. That, and
	// the hand-over to node 0 after it, take real time: seconds on a
	// loaded machine, past a 3 s deadline. A longer timeout from here on
	// keeps that from timing steady out, which is not what is tested.
	u.do(n[1], "PUT", "/services/steady", map[string]any{"heartbeat_timeout": 60}, 204)
	steady = u.heartbeat(n[1], "steady", steady)
	hb := keepHeartbeating(u, n[1], "steady", steady)
	n[0].restart()
	u.heartbeat(n[0], "steady", hb())
}

// A node cut off from etcd stops answering heartbeats from memory before
// its lease can expire, and the services it held move to another node
// with the newest token it handed out: no false timeout. Let back, it
// serves again.
func TestHoldingNodePartitioned(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	clock := new(testserver.Clock)
	opts := etcdstore.Options{Clock: clock.Now, NodeTTL: 2 * time.Second, ReapInterval: 100 * time.Millisecond, RequestTimeout: time.Second}
	slack := etcdstore.MinHeartbeatSlack(opts)
	opts.HeartbeatSlack = slack
	part := newPartition(t, c.Endpoints())
	cut, other := startNode(t, part.Endpoints, opts), startNode(t, c.Endpoints(), opts)
	u := login(t, other, "partition")
	steady := u.create(other, "steady", 3)
	for range 3 {
		steady = u.heartbeat(cut, "steady", steady)
	}
	part.Cut()
	// Until its lease is surely gone the cut-off node may still answer
	// from memory; the client keeps heartbeating there until it fails,
	// then moves on with its newest token.
	for {
		r, err := u.try(cut, "POST", "/services/steady/heartbeat", map[string]string{"token": steady})
		if err != nil || r.code != 200 {
			break
		}
		var out struct{ Token string }
		r.json(&out)
		steady = out.Token
		time.Sleep(100 * time.Millisecond)
	}
	for attempt := 0; ; attempt++ {
		r, err := u.try(other, "POST", "/services/steady/heartbeat", map[string]string{"token": steady})
		if err == nil && r.code == 200 {
			var out struct{ Token string }
			r.json(&out)
			steady = out.Token
			break
		}
		if err == nil && r.code < 500 || attempt == 50 {
			t.Fatalf("heartbeat at the other node: %v %d %s", err, r.code, r.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	steady = beatThrough(u, other, clock, 3*time.Second+slack, "steady", steady)
	// The node let back may answer 503s for seconds before it serves
	// again, on a loaded machine, with no heartbeat taken meanwhile: a
	// longer timeout keeps that real time from timing steady out.
	u.do(other, "PUT", "/services/steady", map[string]any{"heartbeat_timeout": 60}, 204)
	steady = u.heartbeat(other, "steady", steady)
	part.Heal()
	heartbeatWhenBack(t, u, cut, "steady", steady)
	if got, want := summary(u.events(other, "")), []string{"service.join steady", "service.update steady"}; !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
}

// TestHeartbeatWhoseAnswerWasLost: a heartbeat whose commit made the node
// the service's holder, but whose answer the node lost (it answered 503),
// is taken back: when the client retries the token at the same node, which
// holds the service again with the exact deadline, or at another, to which
// the node hands the exact state; and, with no retry, when the node reads
// the record back by itself. Either way the service times out at its
// exact deadline, not the heartbeat slack later.
func TestHeartbeatWhoseAnswerWasLost(t *testing.T) {
	t.Parallel()
	for _, retryAt := range []int{0, 1, -1} { // -1: no retry
		t.Run(fmt.Sprintf("retry at node %d", retryAt), func(t *testing.T) {
			t.Parallel()
			clock := new(testserver.Clock)
			nodes := startNodes(t, sharedCluster(t), 2, etcdstore.Options{Clock: clock.Now, ReapInterval: 100 * time.Millisecond, HeartbeatSlack: time.Minute})
			u := login(t, nodes[0], "lost-answer")
			marker := u.listMarker(nodes[0])
			tok := u.create(nodes[0], "svc", 3)
			u.loseHeartbeatAnswer(nodes[0], "svc", tok)
			// The lost token's deadline is in [from, to].
			from, to := tokenDeadline(tok), clock.Now().Add(3*time.Second).UnixMilli()
			if retryAt >= 0 {
				next := u.heartbeat(nodes[retryAt], "svc", tok)
				from, to = tokenDeadline(next), tokenDeadline(next)
			}
			// Past the deadline, and a minute before the stored one.
			clock.Advance(3500 * time.Millisecond)
			other := nodes[1]
			if retryAt == 1 {
				other = nodes[0]
			}
			for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				r, err := u.try(other, "GET", "/services/svc", nil)
				if err == nil && r.code == 404 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the service is still there past its deadline: %v %d %s", err, r.code, r.body)
				}
			}
			var timeouts []event
			for _, e := range u.events(nodes[0], marker) {
				if e.Type == "service.timeout" {
					timeouts = append(timeouts, e)
				}
			}
			if len(timeouts) != 1 || timeouts[0].Timestamp < from || timeouts[0].Timestamp > to {
				t.Errorf("timeouts %+v; want one at %d..%d, the deadline of the token the heartbeat made", timeouts, from, to)
			}
		})
	}
}

// TestLateLandingHandOver: a hand-over write that failed as far as the
// holder knew (a timeout) may be committed by etcd later. Its condition is
// the heartbeat key's revision, which heartbeats answered from memory do
// not move; so until the holder has written the key itself, it answers no
// heartbeat from memory, even after a read showed the key unchanged (here,
// the read for a retry with the token before the current one). Otherwise
// the late write would land with the older deadline and no holder, and the
// service would time out before the deadline of the token its owner holds.
func TestLateLandingHandOver(t *testing.T) {
	t.Parallel()
	clock := new(testserver.Clock)
	nodes := startNodes(t, sharedCluster(t), 2, etcdstore.Options{Clock: clock.Now, ReapInterval: 100 * time.Millisecond, HeartbeatSlack: time.Minute})
	u := login(t, nodes[0], "late-hand-over")
	marker := u.listMarker(nodes[0])
	prev := u.heartbeat(nodes[0], "svc", u.create(nodes[0], "svc", 10))
	clock.Advance(time.Second)
	tok := u.heartbeat(nodes[0], "svc", prev)

	nodes[0].mu.Lock()
	late := etcdstore.LandNextLate(nodes[0].st, "hand over a service")
	err := etcdstore.Release(nodes[0].st, u.tenant, "svc")
	nodes[0].mu.Unlock()
	if err == nil {
		t.Fatal("the hand-over held back succeeded")
	}
	land := <-late
	// A retry of the heartbeat before: answered with the current token.
	if got := u.heartbeat(nodes[0], "svc", prev); got != tok {
		t.Fatalf("a retry with the token before the current one got %s; want the current one, %s", got, tok)
	}
	clock.Advance(5 * time.Second)
	tok = u.heartbeat(nodes[0], "svc", tok)
	if landed, err := land(); err != nil || landed {
		t.Errorf("the failed hand-over landed after a heartbeat was answered (%v, %v); it must not", landed, err)
	}

	// Past the deadline the hand-over carried, before the last token's.
	clock.Advance(7 * time.Second)
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		u.do(nodes[1], "GET", "/services/svc", nil, 200)
	}
	u.heartbeat(nodes[1], "svc", tok)
	for _, e := range u.events(nodes[0], marker) {
		if e.Type == "service.timeout" {
			t.Errorf("timed out at %d, before the deadline %d of its last token", e.Timestamp, tokenDeadline(tok))
		}
	}
}

// heartbeatWhenBack heartbeats id at a node let back to etcd, through the
// 503s it may answer for seconds on a loaded machine before it serves.
func heartbeatWhenBack(t *testing.T, u *user, n *node, id, tok string) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		r, err := u.try(n, "POST", "/services/"+id+"/heartbeat", map[string]string{"token": tok})
		if err == nil && r.code == 200 {
			return
		}
		if err == nil && r.code < 500 || attempt == 100 {
			t.Fatalf("heartbeat at the node let back: %v %d %s", err, r.code, r.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A node stopping gracefully hands every service it holds back to etcd,
// many at once; one that runs out of time for it still leaves the cluster
// (its node key revoked on a timeout of its own), and the services it
// kept move on at once, as from a node that died.
func TestGracefulStopHandsBack(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	n := startNodes(t, c, 2, etcdstore.Options{})
	u := login(t, n[0], "graceful-stop")
	const held = 200 // an account's default limit
	tokens := make([]string, held)
	var wg sync.WaitGroup
	for w := range 10 {
		wg.Go(func() {
			for i := w; i < held; i += 10 {
				id := fmt.Sprint("svc-", i)
				tokens[i] = u.heartbeat(n[0], id, u.create(n[0], id, 120))
			}
		})
	}
	wg.Wait()
	before := n[0].metric("svcreg_store_heartbeat_handovers_total")
	n[0].stop()
	if got := n[0].metric("svcreg_store_heartbeat_handovers_total") - before; got != held {
		t.Errorf("%v of %d held services handed back at a graceful stop", got, held)
	}
	if strings.Contains(n[0].log.String(), "hand back held services") {
		t.Errorf("the stop did not hand everything back:\n%s", n[0].log.String())
	}

	// Node 1 takes the services over (each heartbeat a write, as the
	// stored state has no holder), then stops with no time to hand back.
	for i := range held {
		id := fmt.Sprint("svc-", i)
		tokens[i] = u.heartbeat(n[1], id, tokens[i])
	}
	n[1].mu.Lock()
	etcdstore.SetHandBackTime(n[1].st, time.Nanosecond)
	nodeKeys := etcdstore.NodeKeys(n[1].st)
	n[1].mu.Unlock()
	n[1].stop() // fails the test if the node cannot leave the cluster
	if !strings.Contains(n[1].log.String(), "hand back held services") {
		t.Error("a stop without time to hand back logged nothing")
	}
	// Its node key is gone, so another node takes its services on without
	// waiting out its lease; and they do move on.
	if resp := etcdGet(t, c, nodeKeys, clientv3.WithPrefix(), clientv3.WithKeysOnly()); len(resp.Kvs) != 0 {
		t.Errorf("node keys left after both nodes stopped: %s", resp.Kvs)
	}
	n[0].restart()
	for i := range held {
		u.heartbeat(n[0], fmt.Sprint("svc-", i), tokens[i])
	}
}

// Heartbeats that write share an etcd commit at a rate where none would be
// in flight together: a batch waits HeartbeatLinger after its first for
// more, unless it fills first; a store that closes commits what waits.
func TestHeartbeatWritesLinger(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	// The linger is at most half the request timeout (a minute here),
	// which bounds a write from its queueing: longer than this test waits
	// for any answer.
	n := startNodes(t, c, 1, etcdstore.Options{HeartbeatLinger: time.Hour, RequestTimeout: 2 * time.Minute, HeartbeatBatch: 3})
	u := login(t, n[0], "linger")
	toks := make([]string, 4)
	for i := range toks {
		toks[i] = u.create(n[0], fmt.Sprint("svc-", i), 30)
	}
	type answer struct {
		i    int
		code int
		err  error
	}
	answers := make(chan answer, len(toks))
	beat := func(i int) { // the service's first heartbeat at the node: a write
		r, err := u.try(n[0], "POST", fmt.Sprint("/services/svc-", i, "/heartbeat"), map[string]string{"token": toks[i]})
		answers <- answer{i, r.code, err}
	}
	expect := func(k int, what string) {
		t.Helper()
		for range k {
			select {
			case a := <-answers:
				if a.err != nil || a.code != 200 {
					t.Fatalf("%s: svc-%d's heartbeat: %d %v", what, a.i, a.code, a.err)
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("%s: a heartbeat was not answered", what)
			}
		}
	}
	go beat(0)
	go beat(1)
	select {
	case a := <-answers:
		t.Fatalf("svc-%d's heartbeat was committed in a batch of less than 3 within the linger: %+v", a.i, a)
	case <-time.After(200 * time.Millisecond):
	}
	go beat(2)
	expect(3, "a full batch")
	if count, sum := n[0].histogram("svcreg_store_heartbeat_batch_size"); count != 1 || sum != 3 {
		t.Errorf("%v heartbeat batches carrying %v, want 1 carrying 3", count, sum)
	}
	if w := n[0].metric("svcreg_store_heartbeat_writes_waiting"); w != 0 {
		t.Errorf("%v heartbeat writes waiting after their answers", w)
	}

	go beat(3)
	for deadline := time.Now().Add(20 * time.Second); n[0].metric("svcreg_store_heartbeat_writes_waiting") != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("svc-3's heartbeat did not reach the commit queue")
		}
	}
	n[0].st.Close()
	expect(1, "a store closing while a batch lingered")
	if count, sum := n[0].histogram("svcreg_store_heartbeat_batch_size"); count != 2 || sum != 4 {
		t.Errorf("%v heartbeat batches carrying %v, want 2 carrying 4", count, sum)
	}

	// A linger longer than half the request timeout is cut to it, so the
	// commit has the other half: a lone write is committed.
	short := startNodes(t, c, 1, etcdstore.Options{HeartbeatLinger: time.Hour, RequestTimeout: 4 * time.Second})
	v := login(t, short[0], "linger-cut")
	v.heartbeat(short[0], "alone", v.create(short[0], "alone", 30))
	if count, sum := short[0].histogram("svcreg_store_heartbeat_batch_size"); count != 1 || sum != 1 {
		t.Errorf("%v heartbeat batches carrying %v, want 1 carrying 1", count, sum)
	}
}

// A heartbeat at a node whose TTL is shorter than the dead holder's waits
// for the holder's lease, not its own TTL, and is answered in one request.
func TestHandOverWaitsForALongerLease(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	opts := etcdstore.Options{RequestTimeout: time.Second, PeerListen: "off"}
	opts.NodeTTL = 8 * time.Second
	long := startNode(t, c.Endpoints(), opts)
	opts.NodeTTL = 2 * time.Second
	short := startNode(t, c.Endpoints(), opts)
	u := login(t, long, "longer-lease")
	tok := u.create(long, "svc", 60)
	tok = u.heartbeat(long, "svc", tok) // long holds it
	long.crash()
	r, err := u.try(short, "POST", "/services/svc/heartbeat", map[string]string{"token": tok})
	if err != nil || r.code != 200 {
		t.Fatalf("heartbeat at the other node after the holder died: %v %d %s, want 200", err, r.code, r.body)
	}
}

// Heartbeats for services that do not exist leave nothing in the node's
// cache: they count against no rate limit, and each would otherwise stay
// for ten minutes (ids up to the header limit, at any rate).
func TestHeartbeatsOfUnknownServicesLeaveNoEntry(t *testing.T) {
	t.Parallel()
	n := startNode(t, sharedCluster(t).Endpoints(), etcdstore.Options{})
	u := login(t, n, "unknown-heartbeats")
	tok := u.create(n, "real", 30)
	u.heartbeat(n, "real", tok)
	for i := range 50 {
		u.do(n, "POST", fmt.Sprintf("/services/ghost-%d/heartbeat", i), map[string]string{"token": tok}, 404)
	}
	// A deleted service's entry goes too, at its next heartbeat.
	gone := u.create(n, "gone", 30)
	gone = u.heartbeat(n, "gone", gone)
	u.do(n, "DELETE", "/services/gone", nil, 204)
	u.do(n, "POST", "/services/gone/heartbeat", map[string]string{"token": gone}, 404)
	if got := etcdstore.HeartbeatEntries(n.st); got != 1 {
		t.Errorf("the heartbeat cache has %d entries after 51 heartbeats of unknown services, want 1 (the live one)", got)
	}
}

// A heartbeat with a made-up token costs a read of the small heartbeat key,
// not of the service's record: at the node that holds the service and at
// another one. Otherwise one account sending such heartbeats for a service
// with large metadata makes every node fetch and decode that record for
// each, and every account's requests wait behind those reads.
func TestMadeUpTokensReadNoRecord(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	pa, pb := newPartition(t, c.Endpoints()), newPartition(t, c.Endpoints())
	n := startNodesAt(t, etcdstore.Options{}, pa.Endpoints, pb.Endpoints)
	a, b := n[0], n[1]
	u := login(t, a, "made-up-tokens")
	meta := map[string]string{}
	for i := range 18 {
		meta[fmt.Sprintf("k%02d", i)] = strings.Repeat("m", 255) // near the body limit
	}
	var out struct{ Token string }
	u.do(a, "POST", "/services", map[string]any{"id": "big", "heartbeat_timeout": 60, "tags": []string{}, "metadata": meta}, 201).json(&out)
	tok := u.heartbeat(a, "big", out.Token) // a holds it now
	record := len(etcdGet(t, c, etcdstore.ServiceKey(a.st, u.tenant, "big")).Kvs[0].Value)

	const tries = 100
	for _, at := range []struct {
		name string
		n    *node
		p    *partition
	}{{"the holder", a, pa}, {"another node", b, pb}} {
		// One heartbeat first: a node that never read the service reads
		// its record once. Then each costs about a tenth of the record
		// (half of it at most, for background traffic and reads sent
		// twice to a slow member); each read the record before.
		u.do(at.n, "POST", "/services/big/heartbeat", map[string]string{"token": madeUpToken(tok)}, 404)
		before := at.p.fromEtcd()
		for range tries {
			r := u.do(at.n, "POST", "/services/big/heartbeat", map[string]string{"token": madeUpToken(tok)}, 404)
			if !strings.Contains(string(r.body), store.KindHeartbeatMarker) {
				t.Fatalf("made-up token at %s: %s, want the heartbeat marker not found", at.name, r.body)
			}
		}
		if got := at.p.fromEtcd() - before; got > tries*int64(record)/2 {
			t.Errorf("%d heartbeats with made-up tokens at %s got %d bytes from etcd, %d each; the record is %d bytes", tries, at.name, got, got/tries, record)
		}
	}
	// The real token still works, at either node.
	tok = u.heartbeat(b, "big", tok)
	u.heartbeat(a, "big", tok)
}

// madeUpToken is tok with its last 12 hex digits random: well formed, and
// minted for nothing.
func madeUpToken(tok string) string {
	return tok[:24] + fmt.Sprintf("%012x", rand.Uint64()&(1<<48-1))
}

// A holder dies with tokens it handed out from memory (no peer took
// copies): another node takes any of them, as it cannot tell which is
// the newest. One sent again late (a duplicate, a proxy's retry) is taken
// first; the client's newest is still taken after it, at that node or
// another, and goes on; the late one's successor is then refused. A late
// duplicate cannot make the registry refuse the client, which would tell
// it its service is gone.
func TestHolderCrashLetsTheNewestTokenGoOnAfterALateOne(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		at   int
		late int // which token comes late: 0 the one stored in etcd
	}{{1, 1}, {2, 1}, {1, 0}, {2, 0}} {
		at := tc.at
		t.Run(fmt.Sprintf("newest at node %d, late token %d", at, tc.late), func(t *testing.T) {
			t.Parallel()
			n := startNodes(t, sharedCluster(t), 3, etcdstore.Options{NodeTTL: 2 * time.Second, ReapInterval: 100 * time.Millisecond,
				HeartbeatSlack: time.Minute, PeerListen: "off"})
			u := login(t, n[0], "late-token")
			tok := u.heartbeat(n[0], "svc", u.create(n[0], "svc", 60))
			before := n[0].metric("svcreg_store_heartbeats_in_memory_total")
			t2 := u.heartbeat(n[0], "svc", tok)
			t3 := u.heartbeat(n[0], "svc", t2)
			newest := u.heartbeat(n[0], "svc", t3)
			if n[0].metric("svcreg_store_heartbeats_in_memory_total") < before+3 {
				t.Fatal("node 0 did not answer the heartbeats from memory")
			}
			n[0].crash()

			// Taken: node 1 cannot tell it was used.
			late := u.heartbeat(n[1], "svc", []string{tok, t2}[tc.late])
			next := u.heartbeat(n[at], "svc", newest)
			for _, old := range []string{late, t3} {
				if r, err := u.try(n[1], "POST", "/services/svc/heartbeat", map[string]string{"token": old}); err != nil || r.code != 404 {
					t.Errorf("a token older than the newest's successor: %v %d %s, want 404", err, r.code, r.body)
				}
			}
			u.heartbeat(n[at], "svc", next)
		})
	}
}

// Without a holder's death, the holder's tokens are exact: one minted for
// the service with a number past the current one's (which only a wrap of
// the numbers, millions of heartbeats on, could bring back) is refused.
func TestTokensAheadAreRefusedWhileTheHolderLives(t *testing.T) {
	t.Parallel()
	n := startNodes(t, sharedCluster(t), 1, etcdstore.Options{HeartbeatSlack: time.Minute, PeerListen: "off"})
	u := login(t, n[0], "ahead-token")
	tok := u.heartbeat(n[0], "svc", u.heartbeat(n[0], "svc", u.create(n[0], "svc", 60)))
	n[0].mu.Lock()
	ahead := etcdstore.MintAhead(n[0].st, u.tenant, "svc", 2)
	n[0].mu.Unlock()
	if r, err := u.try(n[0], "POST", "/services/svc/heartbeat", map[string]string{"token": ahead}); err != nil || r.code != 404 {
		t.Errorf("a token ahead of the current one: %v %d %s, want 404", err, r.code, r.body)
	}
	u.heartbeat(n[0], "svc", tok)
}
