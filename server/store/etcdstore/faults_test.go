package etcdstore_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svcreg/svcreg/internal/etcdtest"
	"github.com/svcreg/svcreg/server/store"
	"github.com/svcreg/svcreg/server/store/etcdstore"
)

// leader returns the index of the cluster's leader.
func leader(t *testing.T, c *etcdtest.Cluster) int {
	t.Helper()
	cli := etcdtest.Client(t, c.Endpoints()...)
	for i, m := range c.Members {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := cli.Status(ctx, m.ClientURL)
		cancel()
		if err == nil && st.Leader == st.Header.MemberId {
			return i
		}
	}
	t.Fatal("no leader")
	return -1
}

// Losing one etcd member of three — the leader, at that — keeps the API
// working at every node: writes, heartbeats, reads, long-polls.
func TestEtcdMemberLoss(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	n := startNodes(t, c, 2, etcdstore.Options{RequestTimeout: 10 * time.Second})
	u := login(t, n[0], "member-loss")
	tok := u.create(n[0], "svc-1", 30)
	marker := u.listMarker(n[1])

	c.Members[leader(t, c)].Stop()

	tok = u.heartbeat(n[1], "svc-1", tok)
	tok = u.heartbeat(n[0], "svc-1", tok)
	u.create(n[1], "svc-2", 30)
	u.do(n[0], "PUT", "/configuration/key-1", map[string]string{"value": "v"}, 204)
	u.do(n[1], "DELETE", "/services/svc-2", nil, 204)
	// A long-poll at one node wakes on the other's write.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	from := u.listMarker(n[0])
	got := u.longPoll(ctx, n[0], from, 60)
	u.do(n[1], "PUT", "/configuration/key-2", map[string]string{"value": "v"}, 204)
	if r := <-got; r.err != nil || !slices.Equal(r.events, []string{"configuration_value.update key-2"}) {
		t.Errorf("long-poll with a member down: %q, %v", r.events, r.err)
	}
	want := []string{"service.join svc-2", "configuration_value.update key-1", "service.remove svc-2", "configuration_value.update key-2"}
	for i, x := range n {
		if evs := summary(u.events(x, marker)); !slices.Equal(evs, want) {
			t.Errorf("events at node %d with a member down: %q, want %q", i, evs, want)
		}
	}
	u.heartbeat(n[1], "svc-1", tok)
}

// With etcd out of reach, requests fail fast with 503 systemFailureError
// (never hang, never corrupt), /healthz says so, and everything works again
// when etcd is back, with nothing acknowledged lost.
func TestEtcdUnavailable(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	n := startNodes(t, c, 2, etcdstore.Options{RequestTimeout: time.Second})
	u := login(t, n[0], "outage")
	tok := u.create(n[0], "svc-1", 120)
	u.do(n[0], "PUT", "/configuration/key-1", map[string]string{"value": "v"}, 204)
	marker := u.listMarker(n[1])

	c.Stop()
	var wg sync.WaitGroup
	for _, req := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/services", nil},
		{"GET", "/services/svc-1", nil},
		{"POST", "/services", map[string]any{"id": "svc-2", "heartbeat_timeout": 30}},
		{"POST", "/services/svc-1/heartbeat", map[string]string{"token": tok}},
		{"PUT", "/configuration/key-2", map[string]string{"value": "v"}},
		{"GET", "/configuration/key-1", nil},
		{"GET", "/events?wait=5", nil},
	} {
		for i, x := range n {
			wg.Go(func() {
				r, err := u.try(x, req.method, req.path, req.body)
				if err != nil {
					t.Errorf("%s %s at node %d with etcd down: %v", req.method, req.path, i, err)
					return
				}
				if r.code != 503 || r.faultType() != "systemFailureError" {
					t.Errorf("%s %s at node %d with etcd down: %d %s, want 503 systemFailureError", req.method, req.path, i, r.code, r.body)
				}
			})
		}
	}
	wg.Wait()
	if resp, err := clientFor(n[0].URL).Get(n[0].URL + "/healthz"); err != nil || resp.StatusCode != 503 {
		t.Errorf("/healthz with etcd down: %v %v, want 503", resp, err)
	} else {
		resp.Body.Close()
	}

	c.Restart()
	// The client reconnects by itself; the first requests may still fail.
	// A heartbeat client retries with the same token until it gets an
	// answer, as the official clients do.
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := u.try(n[1], "POST", "/services/svc-1/heartbeat", map[string]string{"token": tok})
		if err == nil && r.code == 200 {
			var out struct{ Token string }
			r.json(&out)
			tok = out.Token
			break
		}
		if time.Now().After(deadline) || err == nil && r.code != 503 {
			t.Fatalf("no recovery after etcd came back: %v %d %s", err, r.code, r.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	u.do(n[1], "GET", "/services", nil, 200)
	// Node 1 now holds svc-1; a heartbeat at node 0 asks it to hand the
	// service back, which waits for node 1's watch, itself reconnecting
	// after the outage: the first tries may get a 503 (docs/etcd.md), and
	// a heartbeat client retries with the same token.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		r, err := u.try(n[0], "POST", "/services/svc-1/heartbeat", map[string]string{"token": tok})
		if err == nil && r.code == 200 {
			break
		}
		if err != nil && time.Now().After(deadline) {
			t.Fatalf("heartbeat at the other node after the outage: %v", err)
		}
		if err == nil && (r.code != 503 || time.Now().After(deadline)) {
			t.Fatalf("heartbeat at the other node after the outage: %d %s", r.code, r.body)
		}
	}
	u.create(n[0], "svc-2", 30)
	// The heartbeat sent while etcd was down was not committed, or the
	// retry above would have got the same token as before: no harm either
	// way. The feed has what was acknowledged, once.
	want := []string{"service.join svc-2"}
	for i, x := range n {
		if evs := summary(u.events(x, marker)); !slices.Equal(evs, want) {
			t.Errorf("events at node %d after the outage: %q, want %q", i, evs, want)
		}
	}
}

// Compaction of etcd's history never loses an event: the feed is keys,
// not history, and a node whose watch fell behind a compaction (it was cut
// off from etcd meanwhile) wakes every long-poll when it is back, which
// then read the feed again.
func TestCompaction(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	// Node 0 talks only to member 0; node 1 to the others.
	n0 := startNode(t, c.Endpoints()[:1], etcdstore.Options{RequestTimeout: 2 * time.Second})
	n1 := startNode(t, c.Endpoints()[1:], etcdstore.Options{})
	u := login(t, n1, "compaction")
	u.create(n1, "svc-1", 60)
	from := u.listMarker(n0)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got := u.longPoll(ctx, n0, from, 120)

	c.Members[0].Stop()
	u.do(n1, "PUT", "/configuration/key-1", map[string]string{"value": "v"}, 204)
	for i := range 20 {
		u.do(n1, "PUT", "/configuration/key-2", map[string]string{"value": string(rune('a' + i))}, 204)
	}
	cli := etcdtest.Client(t, c.Endpoints()[1:]...)
	resp, err := cli.Get(ctx, "compaction-probe")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	if err := c.Members[0].Start(); err != nil {
		t.Fatal(err)
	}
	if r := <-got; r.err != nil || len(r.events) == 0 || r.events[0] != "configuration_value.update key-1" {
		t.Errorf("long-poll across a compaction: %q, %v; want it to start with the first write", r.events, r.err)
	}
	if evs := summary(u.events(n0, from)); len(evs) != 21 {
		t.Errorf("events after compaction: %d, want 21", len(evs))
	}
	// The long-poll may be answered by the dispatcher's retried read before
	// the watch's own reconnection to member 0 gets its answer.
	for deadline := time.Now().Add(30 * time.Second); n0.metric("svcreg_store_watch_restarts_total") == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("node 0 never watched again")
		}
	}
}

// An etcd member that stops answering without closing its connections (a
// host powered off, a partition that drops packets; paused here), a
// follower or the leader (the others then elect another), for longer than
// the etcd client takes to give up on it: the
// nodes keep their leases (the renewal loop that waited a third of the
// TTL after a failed renewal lost them), and every client that goes on
// heartbeating on the Go client's schedule (every 0.6 of the timeout,
// each attempt given a quarter of it, the retry at the other node) keeps
// its service. With the least slack, each service's heartbeat is written
// every few seconds, and about one write in three is sent to the silent
// member: it is answered by another (hedged), well within the timeout.
// A write that waited for the request timeout failed, its client's
// attempt with it, and some services timed out. In "moving", each client's
// heartbeats go to the two nodes in turn (a balancer that picks a node per
// request), so every heartbeat takes its service over from the other node:
// a hand-over request, the holder's hand-over and the new holder's write,
// each of which may be sent to the silent member.
func TestSilentEtcdMember(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                 string
		leaderSilent, moving bool
	}{{"follower", false, false}, {"leader", true, false}, {"moving", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			silentEtcdMember(t, tc.leaderSilent, tc.moving)
		})
	}
}

func silentEtcdMember(t *testing.T, leaderSilent, moving bool) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	opts := etcdstore.Options{NodeTTL: 5 * time.Second, RequestTimeout: 2 * time.Second}
	opts.HeartbeatSlack = etcdstore.MinHeartbeatSlack(opts)
	n := startNodes(t, c, 2, opts)
	u := login(t, n[0], "silent-member")
	const timeout = 3 * time.Second
	services := 30
	if moving {
		services = 12 // every heartbeat a hand-over: fewer, on CI's shared cores
	}
	toks := make([]string, services)
	for i := range toks {
		toks[i] = u.create(n[0], fmt.Sprintf("svc-%d", i), int(timeout/time.Second))
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var gone []string
	var failed, heartbeats atomic.Int64
	for i := range services {
		wg.Go(func() {
			id, tok, at := fmt.Sprintf("svc-%d", i), toks[i], 0
			// Spread over the heartbeat interval, the services' writes
			// go in batches of their own, each sent to any member.
			time.Sleep(time.Duration(i) * timeout * 6 / 10 / time.Duration(services))
			for ctx.Err() == nil {
				actx, acancel := context.WithTimeout(ctx, timeout/4)
				r, err := u.tryCtx(actx, n[at], "POST", "/services/"+id+"/heartbeat", map[string]string{"token": tok})
				acancel()
				switch {
				case ctx.Err() != nil:
					return
				case err == nil && r.code == http.StatusOK:
					var out struct{ Token string }
					r.json(&out)
					tok = out.Token
					heartbeats.Add(1)
					if moving {
						at = 1 - at
					}
					time.Sleep(timeout * 6 / 10)
					continue
				case err == nil && r.code == http.StatusNotFound:
					mu.Lock()
					gone = append(gone, fmt.Sprintf("%s at node %d: %s", id, at, r.body))
					mu.Unlock()
					return
				}
				failed.Add(1)
				t.Logf("%s: heartbeat of %s at node %d failed: %v %d %s", time.Now().Format("15:04:05.000"), id, at, err, r.code, r.body)
				at = 1 - at // a balancer sends the retry to the other node
			}
		})
	}
	// A configuration writer, one node after the other: a write the
	// silent member holds would fail with 503 at the request timeout,
	// were it not sent again to another member.
	var writes, failedWrites atomic.Int64
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			actx, acancel := context.WithTimeout(ctx, 3*opts.RequestTimeout)
			r, err := u.tryCtx(actx, n[i%2], "PUT", fmt.Sprintf("/configuration/key-%d", i%5), map[string]string{"value": strconv.Itoa(i)})
			acancel()
			if ctx.Err() != nil {
				return
			}
			writes.Add(1)
			if err != nil || r.code != http.StatusNoContent {
				failedWrites.Add(1)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	time.Sleep(2 * time.Second)
	silent := (leader(t, c) + 1) % len(c.Members)
	if leaderSilent { // the others elect a new leader meanwhile
		silent = leader(t, c)
	}
	m := c.Members[silent]
	m.Pause()
	t.Logf("%s: etcd member %d falls silent", time.Now().Format("15:04:05.000"), silent)
	t.Cleanup(m.Resume)
	time.Sleep(20 * time.Second) // past the client's 13 s to give up on it
	lostPaused := make([]float64, len(n))
	for i, x := range n {
		lostPaused[i] = x.metric("svcreg_store_node_lease_lost_total")
	}
	m.Resume()
	time.Sleep(3 * time.Second)
	cancel()
	wg.Wait()
	for _, g := range gone {
		t.Errorf("timed out, its client heartbeating all along: %s", g)
	}
	for i, x := range n {
		switch v := x.metric("svcreg_store_node_lease_lost_total"); {
		case lostPaused[i] > 0 || v > 0 && !leaderSilent:
			t.Errorf("node %d lost its lease %v times (%v while the member was silent), with two etcd members of three answering", i, v, lostPaused[i])
		case v > 0:
			// etcd's old leader, woken, may revoke the leases that
			// expired in its view before it learns it lost the lead
			// (etcd-io/etcd#15247: its check of its leadership is
			// skipped when its raft has just ticked, as on waking).
			// The nodes register again at their next renewal; no
			// service may time out for it.
			t.Logf("node %d lost its lease %v times, after the old leader woke", i, v)
		}
	}
	hedges := n[0].metric("svcreg_store_etcd_hedges_total") + n[1].metric("svcreg_store_etcd_hedges_total")
	// Each attempt is given a quarter of the timeout (750 ms); a hedged
	// write is answered within a few hundred.
	if f := failed.Load(); f > int64(max(3, services/10)) {
		t.Errorf("%d heartbeat attempts failed or took more than %v (a write waiting on the silent member until the request timeout)", f, timeout/4)
	}
	if f := failedWrites.Load(); f > 0 {
		t.Errorf("%d configuration writes of %d failed", f, writes.Load())
	}
	// Once a hedge or a watch found the member silent, requests go to
	// the others first: few are hedged.
	stalls := n[0].metric("svcreg_store_etcd_watch_stalls_total") + n[1].metric("svcreg_store_etcd_watch_stalls_total")
	if hedges+stalls == 0 {
		t.Error("no request was sent again to another member, and no watch left the silent one: none waited on it?")
	}
	t.Logf("heartbeats: %d; attempts that failed (then tried at the other node): %d; configuration writes that failed: %d of %d; hedged requests: %v; watches that left a member: %v",
		heartbeats.Load(), failed.Load(), failedWrites.Load(), writes.Load(), hedges, stalls)
}

// TestTokensWhileAMemberIsSilent: identity tokens are stored (each on a
// lease granted for its ten minutes of expiry) and revoked while an etcd
// member holds what it is sent without answering: a grant, put or revoke
// sent to it goes to another member too, and each token is stored and
// revoked within half the request timeout. Sent only to the member the
// client's balancer picks, one in three waited for the timeout.
func TestTokensWhileAMemberIsSilent(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	cli := clientOfAll(t, c)
	const timeout = 2 * time.Second
	s, err := etcdstore.Open(t.Context(), cli, etcdstore.Options{Prefix: registryPrefix(t), RequestTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	silenceFollower(t, c)
	now := time.Now()
	for i := range 12 {
		hash := [32]byte{byte(i + 1)}
		// Each in a ten-minute bucket of its own: a lease for each.
		info := store.TokenInfo{User: "u", Tenant: "123", Expires: now.Add(time.Duration(i)*10*time.Minute + 5*time.Minute)}
		ctx, cancel := context.WithTimeout(t.Context(), timeout/2)
		err := s.PutToken(ctx, hash, info)
		if err == nil {
			err = s.DeleteToken(ctx, hash)
		}
		cancel()
		if err != nil {
			t.Errorf("token %d, a member silent: %v", i, err)
		}
	}
}

// clientOfAll is a store's etcd client of every member of c, connected to
// each.
func clientOfAll(t *testing.T, c *etcdtest.Cluster) *clientv3.Client {
	t.Helper()
	cli, err := etcdstore.NewClient(etcdstore.ClientConfig{Endpoints: c.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	for range 9 {
		if _, err := cli.Get(t.Context(), "k"); err != nil {
			t.Fatal(err)
		}
	}
	return cli
}

// silenceFollower makes a follower of c stop answering, without closing
// its connections, until the test ends.
func silenceFollower(t *testing.T, c *etcdtest.Cluster) {
	t.Helper()
	m := c.Members[(leader(t, c)+1)%len(c.Members)]
	m.Pause()
	t.Cleanup(m.Resume)
}

// The etcd client gives up on a member that stopped answering without
// closing its connections, and sends its requests to the others: one it
// went on using would hold every request it sends it, about one in three,
// for as long as the member is silent (a host powered off: until TCP gives
// up, many minutes).
func TestClientLeavesASilentMember(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	cli := clientOfAll(t, c)
	silenceFollower(t, c)
	paused := time.Now()
	// Each request given 2 s; nine in a row that all answer went to the
	// two members that answer, three times round.
	inRow := 0
	for inRow < 9 {
		if time.Since(paused) > time.Minute {
			t.Fatalf("a minute after a member fell silent, the client still sends it requests")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := cli.Get(ctx, "k")
		cancel()
		if err != nil {
			inRow = 0
			continue
		}
		inRow++
	}
	t.Logf("the client left the silent member %v after it fell silent", time.Since(paused).Round(time.Second))
}

// A long-poll at one node wakes on another node's write while an etcd
// member holds the node's watch without answering: each member is made
// silent in turn (as a follower), so one of the rounds silences the member the node's
// watch of the accounts is on. The etcd client gives up on a silent
// connection only after 13 s, longer than the long-polls' clients wait
// here (8 s); the
// node asks an idle watch's member for a key and watches at another
// member when it does not answer.
func TestWatchLeavesSilentMember(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	n := startNodes(t, c, 2, etcdstore.Options{RequestTimeout: 2 * time.Second})
	u := login(t, n[0], "silent-watch")
	// Each member silent in turn, and again until one held node 1's
	// watch: an election on a loaded machine (etcd cancels watches that
	// require a leader) can move the watch off a member before its turn.
	stalled := func() bool { return n[1].metric("svcreg_store_etcd_watch_stalls_total") > 0 }
	for round := 0; round < len(c.Members) || !stalled() && round < 3*len(c.Members); round++ {
		i, m := round%len(c.Members), c.Members[round%len(c.Members)]
		// A follower: a silent leader delays the write by an election.
		if leader(t, c) == i {
			if err := moveLeader(etcdtest.Client(t, m.ClientURL), m.ClientURL); err != nil {
				t.Fatalf("move etcd's leadership off member %d: %v", i, err)
			}
		}
		from := u.listMarker(n[1])
		// The poll would wait a minute; ending it at 8 s, as its client
		// gives up, fails the round.
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
		got := u.longPoll(ctx, n[1], from, 60)
		m.Pause()
		key := fmt.Sprintf("key-%d", round)
		u.do(n[0], "PUT", "/configuration/"+key, map[string]string{"value": "v"}, 204)
		written := time.Now()
		if r := <-got; r.err != nil || !slices.Equal(r.events, []string{"configuration_value.update " + key}) {
			t.Errorf("long-poll with member %d silent: %q, %v; want the write at the other node", i, r.events, r.err)
		}
		t.Logf("member %d silent: the long-poll answered %v after the write", i, time.Since(written).Round(time.Millisecond))
		cancel()
		m.Resume()
		// The member answers again before the next is silenced.
		if _, err := etcdtest.Client(t, m.ClientURL).Get(context.Background(), "catch-up"); err != nil {
			t.Fatalf("member %d after it was silent: %v", i, err)
		}
	}
	if !stalled() {
		t.Error("no watch of node 1 left a silent member")
	}
}

// An etcd outage longer than a service's timeout is, to its client, a
// registry that is down. When etcd is back, the deadlines that passed
// meanwhile time out no live service whose client retries (here once a
// second, as a client that backs off does): as after a restart of every
// node, each gets its full timeout again. A service whose client died
// during the outage, held by a node or not, times out once, after that.
func TestEtcdOutageTimesOutNoLiveService(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	n := startNodes(t, c, 2, etcdstore.Options{NodeTTL: 2 * time.Second, RequestTimeout: time.Second})
	u := login(t, n[0], "etcd-outage")
	marker := u.listMarker(n[0])
	const timeout = 6
	live := []string{"live-0", "live-1", "live-2", "live-3"}
	toks := map[string]string{}
	for i, id := range live {
		toks[id] = u.create(n[i%2], id, timeout)
	}
	// Its client dies with the outage: held by the node it heartbeated
	// at, and never heartbeated (its stored deadline the one).
	u.heartbeat(n[0], "dead-held", u.create(n[0], "dead-held", 3))
	u.create(n[1], "dead-unheld", 3)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var refused []string
	beats := make([]atomic.Int64, len(live))
	for i, id := range live {
		wg.Go(func() {
			tok := toks[id]
			for ctx.Err() == nil {
				r, err := u.tryCtx(ctx, n[i%2], "POST", "/services/"+id+"/heartbeat", map[string]string{"token": tok})
				switch {
				case err == nil && r.code == http.StatusOK:
					var out struct{ Token string }
					r.json(&out)
					tok = out.Token
					beats[i].Add(1)
				case err == nil && r.code == http.StatusNotFound:
					mu.Lock()
					refused = append(refused, fmt.Sprintf("%s: %s", id, r.body))
					mu.Unlock()
					return
				}
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
		})
	}

	c.Stop()
	time.Sleep((timeout + 1) * time.Second) // every deadline passes
	c.Restart()
	// Every live service heartbeats again after the outage.
	after := make([]int64, len(live))
	for i := range live {
		after[i] = beats[i].Load()
	}
	gone := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(refused)
	}
	for i := range live {
		for deadline := time.Now().Add(30 * time.Second); beats[i].Load() < after[i]+3; time.Sleep(100 * time.Millisecond) {
			if g := gone(); len(g) > 0 {
				t.Fatalf("live services refused after the outage: %q", g)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no heartbeat got through for 30 s after etcd came back", live[i])
			}
		}
	}
	// The dead ones time out, once each.
	want := map[string]bool{"service.timeout dead-held": true, "service.timeout dead-unheld": true}
	var got []string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		got = got[:0]
		for _, s := range summary(u.events(n[1], marker)) {
			if strings.HasPrefix(s, "service.timeout") {
				got = append(got, s)
			}
		}
		if len(got) >= len(want) || time.Now().After(deadline) {
			break
		}
	}
	cancel()
	wg.Wait()
	if g := gone(); len(g) > 0 {
		t.Errorf("live services refused after the outage: %q", g)
	}
	seen := map[string]bool{}
	for _, s := range got {
		if !want[s] || seen[s] {
			t.Errorf("timeout %q: want each of the dead services timed out once, and no live one", s)
		}
		seen[s] = true
	}
	if len(seen) != len(want) {
		t.Errorf("timeouts after the outage: %q, want the dead services'", got)
	}
	for i, x := range n {
		if v := x.metric("svcreg_store_etcd_outages_total"); v < 1 {
			t.Errorf("node %d counted %v outages", i, v)
		}
	}
}

// After an outage of etcd as a whole, a service held by a live node whose
// stored deadline passed meanwhile is left to its grace: a rectifying read
// at either node lists it at once, where it used to wait, read after
// read, until the holder timed it out.
func TestRectifyingReadShowsAGracedHeldService(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	n := startNodes(t, c, 2, etcdstore.Options{NodeTTL: 2 * time.Second, RequestTimeout: time.Second, HeartbeatSlack: 4 * time.Second})
	u := login(t, n[0], "graced-held")
	const timeout = 12
	u.heartbeat(n[0], "held", u.create(n[0], "held", timeout)) // node 0 holds it
	c.Stop()
	time.Sleep((timeout + 4 + 2) * time.Second) // its stored deadline passes
	c.Restart()
	for deadline := time.Now().Add(20 * time.Second); n[0].metric("svcreg_store_etcd_outages_total") < 1 || n[1].metric("svcreg_store_etcd_outages_total") < 1; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the nodes counted no outage")
		}
	}
	for _, i := range []int{1, 0} {
		var p page[struct{ ID string }]
		u.do(n[i], "GET", "/services", nil, 200).json(&p)
		if len(p.Values) != 1 || p.Values[0].ID != "held" {
			t.Errorf("services at node %d within the grace: %+v; want the held service", i, p.Values)
		}
	}
}

// A node that joins after an outage of etcd as a whole, while a node that
// saw it runs, could not see it: it adopts the outage from that node's
// key, and leaves the services whose deadline passed in it to their grace
// as that node does, until their clients get through. It used to time
// them out at once (a read there did).
func TestNodeJoiningAfterAnOutageAdoptsIt(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	opts := etcdstore.Options{NodeTTL: 2 * time.Second, RequestTimeout: time.Second}
	a := startNodes(t, c, 1, opts)[0]
	u := login(t, a, "outage-joiner")
	marker := u.listMarker(a)
	const timeout = 12
	toks := map[string]string{"unheld": u.create(a, "unheld", timeout)}
	toks["held"] = u.heartbeat(a, "held", u.create(a, "held", timeout)) // a holds it
	c.Stop()
	time.Sleep((timeout + 1) * time.Second) // both deadlines pass
	c.Restart()
	for deadline := time.Now().Add(20 * time.Second); a.metric("svcreg_store_etcd_outages_total") < 1; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the running node counted no outage")
		}
	}
	j := startNode(t, c.Endpoints(), opts)
	listed := func(when string) {
		t.Helper()
		var p page[struct{ ID string }]
		u.do(j, "GET", "/services", nil, 200).json(&p)
		if len(p.Values) != 2 {
			t.Fatalf("services at the joining node %s: %+v; want both, left to their grace", when, p.Values)
		}
	}
	listed("at once")
	// Past the first seconds in which it leaves the services it does not
	// hold to the running node, by the outage it adopted.
	time.Sleep(opts.NodeTTL + opts.RequestTimeout + time.Second)
	listed("after its first seconds")
	// The clients get through, at the joining node.
	for _, id := range []string{"held", "unheld"} {
		u.heartbeat(j, id, toks[id])
	}
	for _, s := range summary(u.events(j, marker)) {
		if strings.HasPrefix(s, "service.timeout") {
			t.Errorf("timed out after the outage: %s", s)
		}
	}
	if log := j.logBuffer().String(); !strings.Contains(log, "another node was without etcd before this node joined") {
		t.Errorf("the joining node did not log the outage it adopted:\n%s", log)
	}
}

// A node that joins a running registry, where no outage was, times out the
// due services it does not hold once every node that was running has
// written its key again (each does when it sees another register), not
// only after its first seconds: a read there rectifies them.
func TestJoiningNodeRectifiesOnceTheRunningNodesAnswered(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	// The longest node TTL: the joining node's first seconds last 35 s.
	// The running node does not reap within the test.
	opts := etcdstore.Options{NodeTTL: etcdstore.MaxNodeTTL, ReapInterval: time.Hour}
	a := startNodes(t, c, 1, opts)[0]
	u := login(t, a, "joiner-rectifies")
	u.create(a, "due", 3)
	time.Sleep(4 * time.Second) // its deadline passes
	j := startNode(t, c.Endpoints(), opts)
	const answered = "every node running when this one joined has written its key since"
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(j.logBuffer().String(), answered); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the running node did not write its key for the joining one")
		}
	}
	u.do(j, "GET", "/services/due", nil, http.StatusNotFound)
	var timedOut int
	for _, s := range summary(u.events(j, "")) {
		if s == "service.timeout due" {
			timedOut++
		}
	}
	if timedOut != 1 {
		t.Errorf("%d timeouts of the due service, want 1", timedOut)
	}
}
