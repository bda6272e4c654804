package etcdstore_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/freeport"
	"github.com/svcreg/svcreg/internal/testnet"
	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/server/store/etcdstore"
)

// peerOf returns the node among ns that n copies held heartbeat state to,
// once n has chosen one.
func peerOf(t *testing.T, n *node, ns []*node) *node {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if id, _ := etcdstore.PeerOf(n.st); id != "" {
			for _, p := range ns {
				if p.running && etcdstore.NodeID(p.st) == id {
					return p
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("node %s chose no live peer", n.addr)
	return nil
}

// waitGone waits, without moving the clock, until id is gone at n.
func waitGone(t *testing.T, u *user, n *node, id string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		r, err := u.try(n, "GET", "/services/"+id, nil)
		if err == nil && r.code == 404 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s is still there at %s", id, n.addr)
}

// A service whose holder dies with its client times out at its precise
// deadline, within the reap interval, not at the stored one (the slack
// later): the holder's peer has a copy of every deadline the holder
// answered from memory.
func TestCopiesTimeOutADeadHoldersServices(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	clock := new(testserver.Clock)
	opts := etcdstore.Options{Clock: clock.Now, ReapInterval: 100 * time.Millisecond, HeartbeatSlack: time.Hour}
	n := startNodes(t, c, 3, opts)
	peer := peerOf(t, n[0], n)
	u := login(t, n[0], "copies-dead-holder")
	quiet := u.create(n[0], "quiet", 10)
	// Heartbeats answered from memory (the first takes hold of the
	// service, a write; so may those right after a change of peer).
	for i := 0; n[0].metric("svcreg_store_heartbeats_in_memory_total") < 4; i++ {
		if i == 50 {
			t.Fatal("node 0 answers no heartbeats from memory")
		}
		clock.Advance(time.Second)
		quiet = u.heartbeat(n[0], "quiet", quiet)
	}
	if p := peerOf(t, n[0], n); p != peer {
		t.Fatal("node 0 changed its peer")
	}
	// Each request to the peer is timed: as many times as batches, taking
	// some time and less than the copy timeout each.
	batches, _ := n[0].histogram("svcreg_store_heartbeat_copy_batch_size")
	timed, took := n[0].histogram("svcreg_store_heartbeat_copy_seconds")
	if batches < 4 || timed != batches || took <= 0 || took >= timed {
		t.Errorf("%v copy requests timed, %v s in all, for %v batches", timed, took, batches)
	}
	deadline := tokenDeadline(quiet)
	n[0].crash()

	// Before the deadline nothing happens (the clock runs on with real
	// time: a check that ends past the deadline tells nothing); once it
	// has passed, the peer times the service out. The stored deadline is
	// an hour away.
	clock.Advance(time.UnixMilli(deadline - 2000).Sub(clock.Now()))
	time.Sleep(300 * time.Millisecond)
	r, err := u.try(peer, "GET", "/services/quiet", nil)
	if err != nil || r.code != 200 && clock.Now().UnixMilli() < deadline {
		t.Fatalf("before its deadline, quiet: %v %d %s", err, r.code, r.body)
	}
	clock.Advance(time.UnixMilli(deadline + 1).Sub(clock.Now()))
	for _, m := range n[1:] {
		waitGone(t, u, m, "quiet")
	}
	evs := u.events(n[1], "")
	want := []string{"service.join quiet", "service.timeout quiet"}
	if got := summary(evs); !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	if ts := evs[1].Timestamp; ts != deadline {
		t.Errorf("quiet timed out at %d; its last token's deadline was %d", ts, deadline)
	}
	if !strings.Contains(peer.log.String(), `at="copied deadline"`) {
		t.Errorf("the peer did not time quiet out from its copy")
	}
}

// heldWithPeer starts three nodes (a node lease of 20 s) and makes node 0
// hold a service "svc" (60 s timeout) with copies at its peer; other is the
// third node. It returns the service's outstanding token.
func heldWithPeer(t *testing.T, tenant string) (n []*node, peer, other *node, u *user, tok string) {
	t.Helper()
	c := sharedCluster(t)
	opts := etcdstore.Options{ReapInterval: 100 * time.Millisecond, NodeTTL: 20 * time.Second, RequestTimeout: 2 * time.Second}
	n = startNodes(t, c, 3, opts)
	peer = peerOf(t, n[0], n)
	other = n[1]
	if other == peer {
		other = n[2]
	}
	u = login(t, n[0], tenant)
	tok = u.create(n[0], "svc", 60)
	for range 3 {
		tok = u.heartbeat(n[0], "svc", tok)
	}
	return n, peer, other, u, tok
}

// A client whose service's holder died goes on at another node: the
// holder's peer hands the service over from its copy when the dead holder
// does not, so the heartbeat does not wait for the dead node's lease (here
// 20 s) to expire, and the newest token works.
func TestCopiesHandOverADeadHoldersServices(t *testing.T) {
	t.Parallel()
	n, peer, other, u, tok := heldWithPeer(t, "copies-hand-over")
	n[0].crash()
	// At the node that is not the peer: it asks the dead holder, and the
	// peer answers for it.
	tok = u.heartbeat(other, "svc", tok)
	u.heartbeat(other, "svc", tok)
	if !strings.Contains(peer.log.String(), "handed a service back from its copy") {
		t.Errorf("the peer did not hand the service over")
	}
	if got := peer.metric("svcreg_store_heartbeat_handovers_total"); got != 1 {
		t.Errorf("the peer counts %v hand-overs, want 1", got)
	}
}

// When a holder's peer dies, the holder takes the next node as its peer,
// and sends it what it holds: a service whose holder then dies too times
// out at its precise deadline.
func TestCopiesMoveToAnotherPeer(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	clock := new(testserver.Clock)
	opts := etcdstore.Options{Clock: clock.Now, ReapInterval: 100 * time.Millisecond, NodeTTL: 2 * time.Second, HeartbeatSlack: time.Hour}
	n := startNodes(t, c, 3, opts)
	u := login(t, n[0], "copies-peer-dies")
	tok := u.create(n[0], "svc", 10)
	tok = u.heartbeat(n[0], "svc", tok)
	first := peerOf(t, n[0], n)
	first.crash()
	// Heartbeats go on while the dead peer's lease runs out: written to
	// etcd while copies fail, from memory again once the next peer has
	// them.
	var second *node
	for deadline := time.Now().Add(30 * time.Second); ; {
		clock.Advance(100 * time.Millisecond)
		tok = u.heartbeat(n[0], "svc", tok)
		if id, _ := etcdstore.PeerOf(n[0].st); id != "" && id != etcdstore.NodeID(first.st) {
			second = peerOf(t, n[0], n)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("node 0 kept its dead peer")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n[0].metric("svcreg_store_heartbeat_copy_failures_total") == 0 {
		t.Error("no copy to the dead peer failed")
	}
	// Once it has read what it holds from etcd again (the new peer's
	// first heartbeats may go to etcd meanwhile), node 0 answers from
	// memory again.
	inMem := n[0].metric("svcreg_store_heartbeats_in_memory_total")
	for i := 0; n[0].metric("svcreg_store_heartbeats_in_memory_total") < inMem+2; i++ {
		if i == 50 {
			t.Fatal("node 0 does not answer from memory with its new peer")
		}
		tok = u.heartbeat(n[0], "svc", tok)
	}
	deadline := tokenDeadline(tok)
	n[0].crash()
	clock.Advance(time.UnixMilli(deadline + 1).Sub(clock.Now()))
	waitGone(t, u, second, "svc")
	evs := u.events(second, "")
	if got := summary(evs); !slices.Equal(got, []string{"service.join svc", "service.timeout svc"}) || evs[1].Timestamp != deadline {
		t.Fatalf("events %q, the last at %d; want the timeout at %d", got, evs[len(evs)-1].Timestamp, deadline)
	}
}

// The peer endpoint takes only what is sealed with the registry's secret:
// a forged copy could time a live service out.
func TestCopiesNeedTheSecret(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	n := startNodes(t, c, 2, etcdstore.Options{})
	peer := peerOf(t, n[0], n)
	_, addr := etcdstore.PeerOf(n[0].st)
	// A 24-byte nonce and a body that no key sealed: all zeros, and
	// anything else.
	body := "a batch of copies, with no tag that opens"
	for _, mac := range [][]byte{make([]byte, 24), bytes.Repeat([]byte{0xab}, 24)} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		frame := binary.BigEndian.AppendUint32(nil, uint32(len(mac)+len(body)))
		frame = append(append(frame, mac...), body...)
		if _, err := conn.Write(frame); err != nil {
			t.Fatal(err)
		}
		answer, err := io.ReadAll(conn) // the peer answers, then closes
		conn.Close()
		if err != nil || !strings.Contains(string(answer), "not sealed with this registry's secret") {
			t.Errorf("a copy signed %x: answered %q (%v), want a refusal", mac[:2], answer, err)
		}
	}
	if got := testserver.Metric(t, peer.reg, "svcreg_store_heartbeat_copy_refusals_total", "reason", "secret"); got != 2 {
		t.Errorf("the peer counts %v refusals for the secret, want 2", got)
	}
	if got := n[0].metric("svcreg_store_heartbeat_copy_peer"); got != 1 {
		t.Errorf("svcreg_store_heartbeat_copy_peer is %v at a node with a peer, want 1", got)
	}
	// Copies still flow between the nodes.
	u := login(t, n[0], "copies-secret")
	tok := u.create(n[0], "svc", 30)
	tok = u.heartbeat(n[0], "svc", tok)
	before := n[0].metric("svcreg_store_heartbeats_in_memory_total")
	u.heartbeat(n[0], "svc", tok)
	if n[0].metric("svcreg_store_heartbeats_in_memory_total") != before+1 {
		t.Error("node 0 did not answer from memory after the forged copies")
	}
}

// A holder cut off from etcd is overtaken: a heartbeat at its peer gets
// the service handed over from the peer's copy, and the peer goes on with
// it. A heartbeat back at the cut-off node with the token the peer handed
// out is not refused from that node's stale memory (a 404 would tell the
// client its service is gone): the node cannot tell without etcd, and
// answers 503; let back, it serves the newest token.
func TestCopiesOvertakenHolder(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	opts := etcdstore.Options{ReapInterval: 100 * time.Millisecond, NodeTTL: 10 * time.Second, RequestTimeout: time.Second}
	part := newPartition(t, c.Endpoints())
	cut, other := startNode(t, part.Endpoints, opts), startNode(t, c.Endpoints(), opts)
	if peerOf(t, cut, []*node{cut, other}) != other {
		t.Fatal("the cut-off node's peer is not the other node")
	}
	u := login(t, other, "copies-overtaken")
	tok := u.create(other, "svc", 60)
	for range 3 {
		tok = u.heartbeat(cut, "svc", tok)
	}
	part.Cut()
	// The cut-off node's lease outlives this: only the copy hands over.
	tok = u.heartbeat(other, "svc", tok)
	if !strings.Contains(other.log.String(), "handed a service back from its copy") {
		t.Fatal("the peer did not hand the service over")
	}
	r, err := u.try(cut, "POST", "/services/svc/heartbeat", map[string]string{"token": tok})
	if err != nil || r.code != 503 {
		t.Fatalf("the newest token at the cut-off node: %v %d %s, want 503", err, r.code, r.body)
	}
	part.Heal()
	heartbeatWhenBack(t, u, cut, "svc", tok)
	if got, want := summary(u.events(other, "")), []string{"service.join svc"}; !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
}

// A hand-over from a copy whose write fails (and does not land) is tried
// again by the peer's reaper, never replaced by a timeout: the heartbeat
// that asked for it goes on without waiting for the dead holder's lease.
func TestCopiesHandOverRetried(t *testing.T) {
	t.Parallel()
	n, peer, other, u, tok := heldWithPeer(t, "copies-hand-over-retried")
	late := etcdstore.LandNextLate(peer.st, "hand over a copied service")
	n[0].crash()
	tok = u.heartbeat(other, "svc", tok)
	u.heartbeat(other, "svc", tok)
	logged := peer.log.String()
	if !strings.Contains(logged, "hand-over from a copy failed") || !strings.Contains(logged, "handed a service back from its copy") {
		t.Errorf("the peer did not try the hand-over again after its write failed")
	}
	// The failed write, landing now, finds the key moved on.
	if ok, err := (<-late)(); ok || err != nil {
		t.Errorf("the late hand-over: landed %v, err %v; want it refused by its condition", ok, err)
	}
	if got, want := summary(u.events(other, "")), []string{"service.join svc"}; !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
}

// svcreg_store_heartbeat_copy_peer tells an operator whether a node's
// held services are covered by copies: not when it is alone, nor with
// copies off.
func TestCopyPeerGauge(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	alone := startNodes(t, c, 1, etcdstore.Options{})[0]
	if got := alone.metric("svcreg_store_heartbeat_copy_peer"); got != 0 {
		t.Errorf("a node alone: %v, want 0", got)
	}
	n := startNodes(t, c, 2, etcdstore.Options{PeerListen: "off"})
	if got := n[0].metric("svcreg_store_heartbeat_copy_peer"); got != 0 {
		t.Errorf("copies off: %v, want 0", got)
	}
}

// A copy of a service of a tenant that has no account (a peer's bug, or
// one who has the registry's secret) is dropped when it is due: the
// peer's reaper does not create the account, as a request of the tenant's
// would, to find nothing to time out there.
func TestCopiesOfNoTenantCreateNone(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	n := startNodes(t, c, 1, etcdstore.Options{ReapInterval: 50 * time.Millisecond})[0]
	const tenant = "copies-no-such-tenant"
	if !etcdstore.TakeCopy(n.st, tenant, "svc", 1, time.Now().Add(-time.Hour).UnixNano()) {
		t.Fatal("the copy was not taken")
	}
	for i := 0; etcdstore.Copies(n.st) > 0; i++ {
		if i == 100 {
			t.Fatal("the copy is still kept after 100 reap intervals")
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := n.cli.Get(context.Background(), etcdstore.AccountKey(n.st, tenant))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 0 {
		t.Errorf("the peer created the account of tenant %q for a copy: %s", tenant, resp.Kvs[0].Value)
	}
}

// refusingPeer listens where nodes are told their peer is, and answers
// every request with a refusal in the clear, as a node of another
// version, or another secret, does (or anyone who can write into the
// connection).
func refusingPeer(t *testing.T) string { return testnet.Serve(t, etcdstore.RefuseCopies) }

// While the peer refuses copies, a heartbeat is written once, which fences
// off any copy the peer took, and the ones after it are answered from
// memory as at a node without a peer (the stored deadline far enough
// ahead): not each written to etcd, which would let one account's
// heartbeats set etcd's write rate for as long as the peer fails.
func TestRefusingPeerDoesNotMakeEveryHeartbeatAWrite(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	n := startNodes(t, c, 2, etcdstore.Options{PeerAdvertise: refusingPeer(t)})
	peerOf(t, n[0], n) // until then, heartbeats are answered as without a peer, with no copy to refuse
	u := login(t, n[0], "copies-refused")
	tok := u.heartbeat(n[0], "svc", u.create(n[0], "svc", 120))
	const beats = 20
	committed, inMemory := n[0].metric("svcreg_store_heartbeats_committed_total"), n[0].metric("svcreg_store_heartbeats_in_memory_total")
	for range beats {
		tok = u.heartbeat(n[0], "svc", tok)
	}
	committed = n[0].metric("svcreg_store_heartbeats_committed_total") - committed
	inMemory = n[0].metric("svcreg_store_heartbeats_in_memory_total") - inMemory
	t.Logf("%d heartbeats: %v written, %v answered from memory; %v copies failed", beats, committed, inMemory, n[0].metric("svcreg_store_heartbeat_copy_failures_total"))
	// A copy is tried again a second after one failed, and its failure
	// means a write: a few in all, unless the heartbeats take seconds.
	if committed > beats/2 {
		t.Errorf("%d heartbeats with the peer refusing copies: %v written to etcd, want few", beats, committed)
	}
	if got := n[0].metric("svcreg_store_heartbeat_copy_failures_total"); got == 0 || !strings.Contains(n[0].log.String(), "a refusal in the clear") {
		t.Errorf("%v copies failed, log:\n%s\nwant the test's peer's refusals", got, n[0].log.String())
	}
}

// A peer that took copies and then refuses them holds copies older than
// what the holder answers after: the holder writes each service once
// first, which fences them off, also a service whose own copy did not
// fail (another's did). The copies' deadlines pass while the client
// heartbeats on, and the peer does not time the service out from them;
// when the holder dies, the client goes on at the peer with its newest
// token.
func TestRefusingPeersOldCopiesAreFenced(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	clock := new(testserver.Clock)
	opts := etcdstore.Options{Clock: clock.Now, ReapInterval: 100 * time.Millisecond, NodeTTL: 3 * time.Second, RequestTimeout: 2 * time.Second}
	holder := startNode(t, c.Endpoints(), opts)
	// The peer is reached through a relay that forwards, then refuses.
	peerListen := "127.0.0.1:" + strconv.Itoa(freeport.Port(t))
	var refuse atomic.Bool
	var mu sync.Mutex
	var relayed []net.Conn
	popts := opts
	popts.PeerListen, popts.PeerAdvertise = peerListen, testnet.Serve(t, func(conn net.Conn) {
		if refuse.Load() {
			etcdstore.RefuseCopies(conn)
			return
		}
		p, err := net.Dial("tcp", peerListen)
		if err != nil {
			conn.Close()
			return
		}
		mu.Lock()
		relayed = append(relayed, conn, p)
		mu.Unlock()
		go func() { io.Copy(p, conn); p.Close() }()
		io.Copy(conn, p)
		conn.Close()
	})
	popts.Prefix = holder.opts.Prefix
	peer := startNode(t, c.Endpoints(), popts)
	if got := peerOf(t, holder, []*node{holder, peer}); got != peer {
		t.Fatal("the holder's peer is not the other node")
	}
	u := login(t, holder, "copies-fenced")
	toks := map[string]string{"svc-a": u.create(holder, "svc-a", 10), "svc-b": u.create(holder, "svc-b", 10)}
	beat := func(n *node, id string) { toks[id] = u.heartbeat(n, id, toks[id]) }
	for i := 0; holder.metric("svcreg_store_heartbeats_in_memory_total") < 6; i++ {
		if i == 50 {
			t.Fatal("the holder answers no heartbeats from memory")
		}
		clock.Advance(time.Second)
		beat(holder, "svc-a")
		beat(holder, "svc-b")
	}
	// The peer has copies of both; now it refuses. b's copy fails, and
	// a's heartbeat comes while the holder sends none (for a second).
	refuse.Store(true)
	mu.Lock()
	for _, conn := range relayed {
		conn.Close()
	}
	mu.Unlock()
	clock.Advance(time.Second)
	beat(holder, "svc-b")
	beat(holder, "svc-a")
	// Past a's copy's deadline (not its newest token's); the peer's
	// reaper runs meanwhile.
	clock.Advance(9*time.Second + 500*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	for range 3 {
		beat(holder, "svc-a")
		beat(holder, "svc-b")
		clock.Advance(5 * time.Second)
		time.Sleep(300 * time.Millisecond)
	}
	holder.crash()
	for range 3 {
		beat(peer, "svc-a")
		beat(peer, "svc-b")
	}
	if got := summary(u.events(peer, "")); !slices.Equal(got, []string{"service.join svc-a", "service.join svc-b"}) {
		t.Errorf("events %q; want the joins alone", got)
	}
}
