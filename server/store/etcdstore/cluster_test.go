package etcdstore_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svcreg/svcreg/internal/etcdtest"
	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/server/store/etcdstore"
)

// Any node answers any request: state, heartbeat tokens (design item 6
// across nodes), identity tokens and --dev tenants are shared.
func TestNodesShareState(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	n := startNodes(t, c, 3, etcdstore.Options{})
	a, b, cc := n[0], n[1], n[2]
	u := login(t, a, "shared")
	if u2 := login(t, b, "shared"); u2.tenant != u.tenant {
		t.Fatalf("user's tenant is %s at one node and %s at another", u.tenant, u2.tenant)
	}

	t0 := u.create(a, "svc-1", 30, "www")
	u.do(b, "GET", "/services/svc-1", nil, 200)
	t1 := u.heartbeat(b, "svc-1", t0)
	// The answer to the heartbeat at b was "lost": the retry at c with the
	// same token gets the same next token.
	if again := u.heartbeat(cc, "svc-1", t0); again != t1 {
		t.Errorf("retry at another node returned %s, want %s", again, t1)
	}
	t2 := u.heartbeat(a, "svc-1", t1)
	u.do(b, "POST", "/services/svc-1/heartbeat", map[string]string{"token": t0}, 404)

	var svc struct {
		LastSeen *int64 `json:"last_seen"`
	}
	u.do(cc, "GET", "/services/svc-1", nil, 200).json(&svc)
	if svc.LastSeen == nil {
		t.Errorf("last_seen is null at another node after heartbeats")
	}

	// A delete at one node invalidates the token at every node; a
	// re-created service does not take the old one.
	u.do(cc, "DELETE", "/services/svc-1", nil, 204)
	if r := u.do(a, "POST", "/services/svc-1/heartbeat", map[string]string{"token": t2}, 404); r.faultType() != "notFoundError" {
		t.Errorf("heartbeat after delete: %s", r.body)
	}
	fresh := u.create(b, "svc-1", 30)
	r := u.do(a, "POST", "/services/svc-1/heartbeat", map[string]string{"token": t2}, 404)
	if !strings.Contains(string(r.body), "HeartbeatMarker") {
		t.Errorf("old token on a re-created service: %s, want HeartbeatMarker 404", r.body)
	}
	u.heartbeat(a, "svc-1", fresh)

	// An update at one node applies to the next heartbeat at another.
	u.do(b, "PUT", "/services/svc-1", map[string]any{"heartbeat_timeout": 5}, 204)

	u.do(a, "PUT", "/configuration/key-1", map[string]string{"value": "v"}, 204)
	var cv struct{ Value string }
	u.do(cc, "GET", "/configuration/key-1", nil, 200).json(&cv)
	if cv.Value != "v" {
		t.Errorf("value at another node %q", cv.Value)
	}

	want := []string{"service.join svc-1", "service.remove svc-1", "service.join svc-1", "service.update svc-1", "configuration_value.update key-1"}
	for _, x := range n {
		if got := summary(u.events(x, "")); !slices.Equal(got, want) {
			t.Errorf("events at %s: %q, want %q", x.URL, got, want)
		}
	}
}

// Nodes whose clocks are behind the account's head (a node whose clock
// is ahead wrote last) give their events the same next id; the one whose
// write loses the account's condition starts over, and every write
// answered 204 is stored.
func TestWritesOfNodesBehindTheHead(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	ahead := new(testserver.Clock)
	ahead.Advance(5 * time.Second)
	a := startNodes(t, c, 1, etcdstore.Options{Clock: ahead.Now})[0]
	n := startNodes(t, c, 2, etcdstore.Options{})
	u := login(t, a, "behind-the-head")
	u.do(a, "PUT", "/configuration/seed", map[string]string{"value": "v"}, 204)
	const each = 30
	var wg sync.WaitGroup
	for i, x := range n {
		wg.Go(func() {
			for j := range each {
				u.do(x, "PUT", fmt.Sprintf("/configuration/k-%d-%d", i, j), map[string]string{"value": "v"}, 204)
			}
		})
	}
	wg.Wait()
	for i := range n {
		for j := range each {
			if r, err := u.try(a, "GET", fmt.Sprintf("/configuration/k-%d-%d", i, j), nil); err != nil || r.code != http.StatusOK {
				t.Errorf("k-%d-%d, answered 204: %v %v", i, j, r.code, err)
			}
		}
	}
}

// Long-polls on every node wake on every node's writes (design item 2
// across nodes), through each node's one etcd watch.
func TestLongPollsWakeOnEveryNode(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	n := startNodes(t, c, 3, etcdstore.Options{})
	u := login(t, n[0], "longpoll")
	marker := u.listMarker(n[0])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type answer struct {
		node int
		evs  []string
		err  error
	}
	answers := make(chan answer, 6)
	for i, x := range n {
		for range 2 {
			go func() {
				r, err := u.tryCtx(ctx, x, "GET", "/events?wait=60&marker="+marker, nil)
				var p page[event]
				if err == nil {
					p.Values = nil
					r.json(&p)
				}
				answers <- answer{i, summary(p.Values), err}
			}()
		}
	}
	// Let the polls park before the write.
	time.Sleep(500 * time.Millisecond)
	u.do(n[1], "PUT", "/configuration/key-1", map[string]string{"value": "v"}, 204)
	for range 6 {
		a := <-answers
		if a.err != nil {
			t.Fatalf("long-poll at node %d: %v (not woken by another node's write?)", a.node, a.err)
		}
		if want := []string{"configuration_value.update key-1"}; !slices.Equal(a.evs, want) {
			t.Errorf("long-poll at node %d: %q, want %q", a.node, a.evs, want)
		}
	}
}

// Design item 7 and spec §8.3 across nodes: with the reapers of three
// nodes and readers on every node racing, each service times out exactly
// once, and every node's feed is the same.
func TestTimeoutsExactlyOnceAcrossNodes(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	clock := new(testserver.Clock)
	n := startNodes(t, c, 3, etcdstore.Options{Clock: clock.Now, ReapInterval: 100 * time.Millisecond})
	u := login(t, n[0], "reapers")
	const services = 24
	for i := range services {
		u.create(n[i%3], fmt.Sprintf("svc-%02d", i), 3)
	}
	clock.Advance(2500 * time.Millisecond)
	// Readers on every node rectify while the reapers run, from before
	// the deadlines to after.
	var wg sync.WaitGroup
	stop := time.Now().Add(2 * time.Second)
	for _, x := range n {
		for range 4 {
			wg.Go(func() {
				for time.Now().Before(stop) {
					if _, err := u.try(x, "GET", "/services", nil); err != nil {
						t.Errorf("GET /services: %v", err)
						return
					}
					if _, err := u.try(x, "GET", "/events", nil); err != nil {
						t.Errorf("GET /events: %v", err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	var first []string
	for i, x := range n {
		evs := u.events(x, "")
		timeouts := map[string]int{}
		for _, e := range evs {
			if e.Type == "service.timeout" {
				timeouts[e.subject()]++
			}
		}
		for j := range services {
			if got := timeouts[fmt.Sprintf("svc-%02d", j)]; got != 1 {
				t.Errorf("node %d: svc-%02d has %d timeout events, want 1", i, j, got)
			}
		}
		ids := make([]string, len(evs))
		for k, e := range evs {
			ids[k] = e.ID
		}
		if first == nil {
			first = ids
		} else if !slices.Equal(ids, first) {
			t.Errorf("node %d's feed differs from node 0's", i)
		}
	}
}

// Spec §8.3 read-your-rectification across nodes: with no reaper
// anywhere, a due service created at one node is gone for a read at
// another, and its one timeout is in every node's feed.
func TestReadYourRectificationAcrossNodes(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	clock := new(testserver.Clock)
	n := startNodes(t, c, 2, etcdstore.Options{Clock: clock.Now, ReapInterval: -1})
	// A node that joined the other's running registry would leave the due
	// service to it, its reads showing the service until the other times
	// it out.
	waitSeeing(t, n...)
	u := login(t, n[0], "lazy")
	u.create(n[0], "svc-1", 3)
	clock.Advance(3500 * time.Millisecond)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			r, err := u.try(n[i%2], "GET", "/services/svc-1", nil)
			if err != nil || r.code != 404 {
				t.Errorf("GET of a due service at node %d: %v %d %s, want 404", i%2, err, r.code, r.body)
			}
		})
	}
	wg.Wait()
	for i, x := range n {
		if got, want := summary(u.events(x, "")), []string{"service.join svc-1", "service.timeout svc-1"}; !slices.Equal(got, want) {
			t.Errorf("events at node %d: %q, want %q", i, got, want)
		}
	}
}

// Losing a node loses nothing it acknowledged, and the registry keeps
// running: the heartbeat token it handed out works at another node, and a
// node that comes back into a running registry does not extend deadlines
// (design item 10 is for restarts of the whole registry).
func TestNodeCrash(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	clock := new(testserver.Clock)
	n := startNodes(t, c, 2, etcdstore.Options{Clock: clock.Now, NodeTTL: 2 * time.Second, ReapInterval: 100 * time.Millisecond})
	u := login(t, n[0], "crash")
	tok := u.create(n[0], "steady", 3)
	tok = u.heartbeat(n[0], "steady", tok)
	u.create(n[0], "quiet", 3)
	u.do(n[0], "PUT", "/configuration/key-1", map[string]string{"value": "v"}, 204)
	n[0].crash()

	tok = u.heartbeat(n[1], "steady", tok)
	u.do(n[1], "GET", "/configuration/key-1", nil, 200)
	hb := keepHeartbeating(u, n[1], "steady", tok)
	n[0].restart()
	tok = hb()
	// "quiet" gets no heartbeat: it times out on its deadline from before
	// the crash, whichever node's reaper gets there.
	tok = beatThrough(u, n[1], clock, 3500*time.Millisecond, "steady", tok)
	u.do(n[0], "GET", "/services/quiet", nil, 404)
	got := summary(u.events(n[1], ""))
	want := []string{"service.join steady", "service.join quiet", "configuration_value.update key-1", "service.timeout quiet"}
	if !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
	// The hand-overs between the nodes take real time, seconds on a loaded
	// machine: a longer timeout keeps them from timing steady out.
	u.do(n[1], "PUT", "/services/steady", map[string]any{"heartbeat_timeout": 60}, 204)
	tok = u.heartbeat(n[1], "steady", tok)
	tok = u.heartbeat(n[0], "steady", tok)
	u.heartbeat(n[1], "steady", tok)
	// The other node told of the crashed node's end and the new one's
	// start, by the ids their own logs give. The end is seen once the
	// crashed node's lease expires (NodeTTL, in real time), which the
	// steps above need not outlast.
	id, _ := n[0].st.Node()
	told := func() bool {
		log := n[1].logBuffer().String()
		return strings.Contains(log, `msg="registry node gone (stopped, or its lease expired)"`) && strings.Contains(log, `msg="registry node running" node=`+id)
	}
	for deadline := time.Now().Add(30 * time.Second); !told(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("node 1 did not log node 0's crash and restart (as %s):\n%s", id, n[1].logBuffer().String())
		}
	}
}

// A request to hand a service over that its holder never answered (the
// reaper asks a live holder without waiting; the holder, crashed, never
// answers) goes with the service's timeout: nothing else deletes it, and
// it would stay in etcd for as long as the node that asked lives.
func TestTimeoutDeletesADeadHoldersRequest(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	clock := new(testserver.Clock)
	n := startNodes(t, c, 2, etcdstore.Options{Clock: clock.Now, ReapInterval: 100 * time.Millisecond, PeerListen: "off"})
	u := login(t, n[0], "dead-holder-request")
	tok := u.create(n[0], "abandoned", 3)
	u.heartbeat(n[0], "abandoned", tok) // node 0 holds it
	rel := etcdstore.ReleaseKey(n[1].st, etcdstore.NodeID(n[0].st), u.tenant, "abandoned")
	cli := etcdtest.Client(t, c.Endpoints()...)
	asked := func() bool {
		resp, err := cli.Get(t.Context(), rel)
		if err != nil {
			t.Fatal(err)
		}
		return len(resp.Kvs) > 0
	}
	n[0].crash()
	clock.Advance(time.Hour) // past the stored deadline
	// Node 1's reaper asks node 0, whose lease lives on for up to 5 s.
	for deadline := time.Now().Add(5 * time.Second); !asked(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("node 1's reaper did not ask the dead holder to hand the service over")
		}
	}
	// Then, the lease expired, it times the service out at the stored
	// deadline.
	for deadline := time.Now().Add(30 * time.Second); n[1].metric("svcreg_service_timeouts_total") < 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("node 1 did not time the service out")
		}
	}
	if asked() {
		t.Errorf("the hand-over request %s is still there after the service timed out", rel)
	}
}

// Design item 10 for the whole registry: when every node was down, the
// first node to start gives every live service its full timeout again, and
// outstanding tokens stay valid; after a crash of every node it first waits
// for the dead nodes' leases to run out.
func TestWholeRegistryRestart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		down func(*node)
	}{{"stopped", (*node).stop}, {"crashed", (*node).crash}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := etcdtest.Start(t, etcdtest.Options{})
			clock := new(testserver.Clock)
			n := startNodes(t, c, 2, etcdstore.Options{Clock: clock.Now, NodeTTL: 2 * time.Second})
			u := login(t, n[0], "restart")
			// Long enough for a node to start and a hand-over on a
			// loaded machine, in real time, after the restart.
			tok := u.create(n[0], "steady", 20)
			tok = u.heartbeat(n[1], "steady", tok)
			for _, x := range n {
				tc.down(x)
			}
			clock.Advance(21 * time.Second) // past the deadline
			n[1].restart()
			u.do(n[1], "GET", "/services/steady", nil, 200)
			hb := keepHeartbeating(u, n[1], "steady", u.heartbeat(n[1], "steady", tok))
			n[0].restart()
			u.heartbeat(n[0], "steady", hb())
			if got := summary(u.events(n[0], "")); !slices.Equal(got, []string{"service.join steady"}) {
				t.Errorf("events %q, want the join alone", got)
			}
		})
	}
	// A node whose own TTL is shorter than a crashed node's lease waits
	// for that lease before it tells that the registry was down.
	t.Run("crashed with longer leases", func(t *testing.T) {
		t.Parallel()
		restartAfterCrash(t, etcdtest.Options{}, 10*time.Second, nil)
	})
	// etcd restarted while every node was down gives the dead nodes'
	// leases their full TTL again, and more: a node starting then waits
	// for that, and does not take the new leader's refresh for a renewal.
	// (An election timeout of a second, as etcd's default: the new leader
	// adds it to every lease.)
	t.Run("crashed, then etcd restarted", func(t *testing.T) {
		t.Parallel()
		restartAfterCrash(t, etcdtest.Options{Production: true}, 6*time.Second, func(c *etcdtest.Cluster) func() {
			c.Stop()
			c.Restart()
			return func() {}
		})
	})
	// A new etcd leader while the starting node watches the leases
	// refreshes them too: not a renewal.
	t.Run("crashed, etcd's leader moved meanwhile", func(t *testing.T) {
		t.Parallel()
		restartAfterCrash(t, etcdtest.Options{Members: 3}, 8*time.Second, func(c *etcdtest.Cluster) func() {
			from := c.Members[leader(t, c)].ClientURL
			cli := etcdtest.Client(t, from)
			moved := make(chan error, 1)
			go func() {
				time.Sleep(2 * time.Second) // the starting node has looked at the leases
				var err error
				for range 3 {
					if err = moveLeader(cli, from); err == nil {
						break
					}
				}
				moved <- err
			}()
			return func() {
				if err := <-moved; err != nil {
					// Not the case meant, but still a restart to check.
					t.Logf("etcd's leader did not move: %v", err)
				}
			}
		})
	})
}

// moveLeader hands etcd's leadership from the member at leaderURL, which
// cli is a client of, to another member.
func moveLeader(cli *clientv3.Client, leaderURL string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := cli.Status(ctx, leaderURL)
	if err != nil {
		return err
	}
	members, err := cli.MemberList(ctx)
	if err != nil {
		return err
	}
	for _, m := range members.Members {
		if m.ID != st.Header.MemberId {
			_, err := cli.MoveLeader(ctx, m.ID)
			return err
		}
	}
	return fmt.Errorf("no other member")
}

// restartAfterCrash crashes two nodes, one on a lease of longTTL and one
// of 2s, the service they know past its deadline, runs meanwhile (if not
// nil) on the cluster, starts the short-lived one again, and then runs
// what meanwhile returned: the node must find the registry was down, at
// its first start, and give the service its full timeout again.
func restartAfterCrash(t *testing.T, copts etcdtest.Options, longTTL time.Duration, meanwhile func(*etcdtest.Cluster) (after func())) {
	c := etcdtest.Start(t, copts)
	clock := new(testserver.Clock)
	long := startNode(t, c.Endpoints(), etcdstore.Options{Clock: clock.Now, NodeTTL: longTTL})
	short := startNode(t, c.Endpoints(), etcdstore.Options{Clock: clock.Now, NodeTTL: 2 * time.Second})
	u := login(t, long, "restart-crashed")
	tok := u.create(long, "steady", 20)
	long.crash()
	short.crash()
	clock.Advance(21 * time.Second) // past the deadline
	after := func() {}
	if meanwhile != nil {
		after = meanwhile(c)
	}
	short.restart()
	after()
	u.do(short, "GET", "/services/steady", nil, 200)
	u.heartbeat(short, "steady", tok)
	if log := short.log.String(); strings.Contains(log, "neither renewed nor revoked") {
		t.Errorf("the node failed to start once, unsure whether another was running:\n%s", log)
	}
}

// A node extending every deadline because no node was running leaves
// alone what a node that started meanwhile wrote (it extended first, and
// may hold the service now): only state as of when it found no node
// registered is extended.
func TestRestartExtensionLeavesLaterState(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	n := startNodes(t, c, 2, etcdstore.Options{})
	u := login(t, n[0], "restart-later")
	before := etcdRevision(t, c)
	tok := u.create(n[0], "held", 60)
	tok = u.heartbeat(n[0], "held", tok) // n[0] holds it now
	got, err := etcdstore.ExtendDeadlines(n[1].st, before)
	if err != nil || got != 0 {
		t.Fatalf("extension as of before the service was written: %d extended, %v; want 0", got, err)
	}
	u.heartbeat(n[0], "held", tok)
	// As of now, the same call extends it: the revision is what left it.
	if got, err := etcdstore.ExtendDeadlines(n[1].st, etcdRevision(t, c)); err != nil || got != 1 {
		t.Errorf("extension as of now: %d extended, %v; want 1", got, err)
	}
}

// beatThrough moves clock forward by d in steps of half a second, each
// after a heartbeat of id at n and followed by a pause in which the
// reapers run: the service stays alive while the others' deadlines pass.
// It returns the outstanding token.
func beatThrough(u *user, n *node, clock *testserver.Clock, d time.Duration, id, tok string) string {
	u.t.Helper()
	const step = 500 * time.Millisecond
	for passed := time.Duration(0); passed < d; passed += step {
		tok = u.heartbeat(n, id, tok)
		clock.Advance(step)
		time.Sleep(100 * time.Millisecond)
	}
	return u.heartbeat(n, id, tok)
}

// keepHeartbeating heartbeats id at n every 700ms until the returned func
// is called; that returns the outstanding token.
func keepHeartbeating(u *user, n *node, id, tok string) func() string {
	done := make(chan struct{})
	out := make(chan string)
	go func() {
		tick := time.NewTicker(700 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				out <- tok
				return
			case <-tick.C:
			}
			var next struct{ Token string }
			r, err := u.try(n, "POST", "/services/"+id+"/heartbeat", map[string]string{"token": tok})
			if err != nil || r.code != 200 {
				u.t.Errorf("heartbeat %s: %v %d %s", id, err, r.code, r.body)
				continue
			}
			r.json(&next)
			tok = next.Token
		}
	}()
	return func() string {
		close(done)
		return <-out
	}
}

// A node starting with other etcd settings than a running node's says so:
// the heartbeat slack's safety rests on every node's sharing them.
func TestNodeSettingsDiffer(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	const warning = "has other etcd settings"
	first := startNode(t, c.Endpoints(), etcdstore.Options{})
	same := startNode(t, c.Endpoints(), etcdstore.Options{})
	other := startNode(t, c.Endpoints(), etcdstore.Options{NodeTTL: 3 * time.Second})
	for _, n := range []*node{first, same} {
		if strings.Contains(n.log.String(), warning) {
			t.Errorf("node %s, with the first node's settings, warned:\n%s", n.addr, n.log.String())
		}
	}
	if got := other.log.String(); !strings.Contains(got, warning) || !strings.Contains(got, "its_node_ttl=5s") || !strings.Contains(got, "node_ttl=3s") {
		t.Errorf("node %s, with another node TTL, did not warn of it:\n%s", other.addr, got)
	}
}

// A node that registers again on a new lease, under the key a starting
// node found it on, is alive: the starting node extends nothing, though
// the lease it was watching is gone.
func TestRestartSeesANodeRegisteredAgain(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	a := startNode(t, c.Endpoints(), etcdstore.Options{})
	u := login(t, a, "registered-again")
	u.create(a, "steady", 60)
	keys := etcdstore.NodeKeys(a.st)
	a.stop() // its key goes: no node is registered
	cli := etcdtest.Client(t, c.Endpoints()...)
	// A node of the registry, as far as the starting one can tell, on a
	// lease that then goes while the node registers again on another.
	old, err := cli.Grant(t.Context(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(t.Context(), keys+"other", `{"started":"2026-01-01T00:00:00Z"}`, clientv3.WithLease(old.ID)); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(2 * time.Second) // the starting node has looked at the old lease
		ctx := context.Background()
		if again, err := cli.Grant(ctx, 10); err == nil {
			cli.KeepAlive(ctx, again.ID)
			// The key moves to the new lease before the old one goes: it
			// is there throughout.
			cli.Put(ctx, keys+"other", `{"started":"2026-01-01T00:00:00Z"}`, clientv3.WithLease(again.ID))
		}
		cli.Revoke(ctx, old.ID)
	}()
	b := startNode(t, c.Endpoints(), etcdstore.Options{})
	if log := b.log.String(); strings.Contains(log, "full timeout again") {
		t.Errorf("the starting node took the registry for down:\n%s", log)
	}
}
