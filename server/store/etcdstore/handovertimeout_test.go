package etcdstore

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svcreg/svcreg/internal/etcdtest"
	"github.com/svcreg/svcreg/server/store"
)

// A heartbeat that reaches a node other than the holder asks the holder
// to hand the service over; the holder's reaper, finding the service due
// before it handled the request, must not time it out: the heartbeat may
// have come before the deadline. It hands the service over itself (a
// request whose watch was lost must not hold the timeout up), to the node
// that asked, so that no reaper times it out before that node commits the
// heartbeat; if that node dies first, the service times out at its exact
// deadline.
func TestHeldTimeoutWaitsForAHandOverAsked(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := etcdtest.Client(t, c.Endpoints()...)
	ctx := t.Context()
	const prefix = "/handover-timeout/"
	// The node's list of the hand-over requests waits: it does not
	// handle the request until the test lets it.
	h := holdFirstWrite(cli.KV, false)
	h.gates = listsOf(prefix + "rel/")
	ahead, now := aheadClock()
	s, err := Open(ctx, swapped(cli, h, nil), Options{Prefix: prefix, ReapInterval: -1, Clock: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	t.Cleanup(func() { close(h.release) }) // first: Close waits for the list held
	tok, err := s.CreateService(ctx, "t", store.NewService{ID: "svc", HeartbeatTimeout: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Heartbeat(ctx, "t", "svc", tok); err != nil { // the node holds it
		t.Fatal(err)
	}
	e := s.hb.lock("t", "svc", s.now())
	deadline := e.mem.Deadline
	held := e.mine
	e.mu.Unlock()
	if !held {
		t.Fatal("the node does not hold the service after its heartbeat")
	}
	<-h.arrived
	// Another node, alive, asks for the service for a heartbeat it took.
	askerLease := liveNode(t, cli, s, "asker")
	askFor(t, cli, s, s.nodeID, "asker", askerLease)
	ahead.Store(int64(10 * time.Second)) // past the deadline
	if err := s.reapHeld(ctx, ""); err != nil {
		t.Fatal(err)
	}
	stored := func() (hb hbRecord, ok bool) {
		resp, err := cli.Get(ctx, s.k.heartbeat("t", "svc"))
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) == 0 {
			return hb, false
		}
		if err := json.Unmarshal(resp.Kvs[0].Value, &hb); err != nil {
			t.Fatal(err)
		}
		return hb, true
	}
	// The reaper handed it over itself, to the node that asked (the
	// node's watch of its requests has not started), at its exact
	// deadline: no reaper times it out while that node lives.
	hb, ok := stored()
	if !ok {
		t.Fatal("the holder timed the service out while another node asked for it")
	}
	if hb.Holder != "asker" || hb.HolderLease != int64(askerLease) || hb.Deadline != deadline {
		t.Fatalf("handed over as holder %q on lease %d, deadline %d; want the node that asked, on lease %d, deadline %d",
			hb.Holder, hb.HolderLease, hb.Deadline, askerLease, deadline)
	}
	if err := s.reap(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := stored(); !ok {
		t.Fatal("a reaper timed the service out while the node it was handed to lives")
	}
	// That node dies before its heartbeat commits: the service times out
	// at its exact deadline.
	if _, err := cli.Revoke(ctx, askerLease); err != nil {
		t.Fatal(err)
	}
	if err := s.reap(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := stored(); ok {
		t.Fatal("the service outlived the node it was handed to")
	}
	page, err := s.Events(ctx, "t", store.EventQuery{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	last := page.Values[len(page.Values)-1]
	var ev struct {
		Timestamp int64 `json:"timestamp"`
	}
	if err := json.Unmarshal(last.JSON, &ev); err != nil {
		t.Fatal(err)
	}
	if last.Type != "service.timeout" || ev.Timestamp != deadline/1e6 {
		t.Errorf("last event %s at %d; want service.timeout at the deadline %d", last.Type, ev.Timestamp, deadline/1e6)
	}
}

// The holder's peer answers a hand-over request near the deadline at
// once, from its copy: for a heartbeat's request, to the node that asked,
// so that no reaper times the service out before that node commits the
// heartbeat (which came before the deadline).
func TestPeerHandsOverToTheAsker(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := etcdtest.Client(t, c.Endpoints()...)
	ctx := t.Context()
	s, err := Open(ctx, cli, Options{Prefix: "/peer-asker/", PeerListen: "127.0.0.1:0", ReapInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.CreateService(ctx, "t", store.NewService{ID: "svc", HeartbeatTimeout: 3}); err != nil {
		t.Fatal(err)
	}
	holderLease, askerLease := liveNode(t, cli, s, "holder"), liveNode(t, cli, s, "asker")
	key := s.k.heartbeat("t", "svc")
	read := func() (hbRecord, int64) { return readHeartbeat(t, cli, key) }
	// Held by "holder" (alive), the stored deadline an hour away; the
	// peer's copy has the precise one 600 ms away.
	hb0, _ := read()
	held := hb0
	held.Holder, held.HolderLease = "holder", int64(holderLease)
	held.Deadline = time.Now().Add(time.Hour).UnixNano()
	rev := writeHeartbeat(t, cli, s, "t", "svc", hb0.Deadline, held)
	precise := hb0
	precise.Deadline = time.Now().Add(600 * time.Millisecond).UnixNano()
	lease, _ := s.lease.get()
	s.copies.mu.Lock()
	s.copies.m[hbKey{"t", "svc"}] = &copyEntry{from: "holder", fromLease: int64(holderLease), lease: int64(lease), hbRev: rev, stored: held.Deadline, state: precise}
	s.copies.mu.Unlock()
	// A heartbeat at node "asker" asks for the service.
	askFor(t, cli, s, "holder", "asker", askerLease)
	got := movedFrom(t, read, rev, "the peer did not hand the service over")
	if got.Holder != "asker" || got.HolderLease != int64(askerLease) || got.Deadline != precise.Deadline {
		t.Fatalf("handed over as holder %q on lease %d, deadline %d; want the node that asked, on lease %d, deadline %d",
			got.Holder, got.HolderLease, got.Deadline, askerLease, precise.Deadline)
	}
	time.Sleep(time.Until(time.Unix(0, precise.Deadline)) + 50*time.Millisecond)
	if err := s.reap(ctx); err != nil {
		t.Fatal(err)
	}
	if _, r := read(); r == 0 {
		t.Error("a reaper timed the service out while the node it was handed to lives")
	}
}

// A peer timing out its copy of a dead holder's service must not time it
// out while a heartbeat at another node asks the holder for it: the
// heartbeat may have come before the deadline, and the peer's answer to
// the request (through its watch) may come later than its reaper. The
// reaper hands the service over from the copy, to the node that asked.
func TestPeerTimeoutWaitsForAHandOverAsked(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := etcdtest.Client(t, c.Endpoints()...)
	ctx := t.Context()
	const prefix = "/peer-timeout-asked/"
	// The node's lists of hand-over requests (its own, and those to the
	// holders it has copies of) wait until the test ends: no watch of
	// them starts.
	arrived, release := make(chan struct{}, 8), make(chan struct{})
	g := &gatedKV{KV: cli.KV}
	g.gates = listsOf(prefix + "rel/")
	g.gate = func(_ int32, ctx context.Context, send sendTxn) (*clientv3.TxnResponse, error) {
		arrived <- struct{}{}
		<-release
		return send(ctx)
	}
	ahead, now := aheadClock()
	s, err := Open(ctx, swapped(cli, g, nil), Options{Prefix: prefix, PeerListen: "127.0.0.1:0", ReapInterval: -1, Clock: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	t.Cleanup(func() { close(release) }) // first: Close waits for the lists held
	// The node's own requests, and those to its copies' holders.
	for range 2 {
		select {
		case <-arrived:
		case <-time.After(30 * time.Second):
			t.Fatal("the node did not start listing the hand-over requests")
		}
	}
	if _, err := s.CreateService(ctx, "t", store.NewService{ID: "svc", HeartbeatTimeout: 3}); err != nil {
		t.Fatal(err)
	}
	// The holder is dead: its lease has no node key.
	holderLease, askerLease := liveNode(t, cli, s, ""), liveNode(t, cli, s, "asker")
	key := s.k.heartbeat("t", "svc")
	read := func() (hbRecord, int64) { return readHeartbeat(t, cli, key) }
	hb0, _ := read()
	held := hb0
	held.Holder, held.HolderLease = "holder", int64(holderLease)
	held.Deadline = time.Now().Add(time.Hour).UnixNano()
	heldRev := writeHeartbeat(t, cli, s, "t", "svc", hb0.Deadline, held)
	precise := hb0
	precise.Deadline = time.Now().Add(time.Second).UnixNano()
	lease, _ := s.lease.get()
	s.copies.mu.Lock()
	s.copies.m[hbKey{"t", "svc"}] = &copyEntry{from: "holder", fromLease: int64(holderLease), lease: int64(lease), hbRev: heldRev, stored: held.Deadline, state: precise}
	s.copies.mu.Unlock()
	// A heartbeat at node "asker" asks the holder for the service; the
	// copy's deadline passes before the peer handles the request.
	askFor(t, cli, s, "holder", "asker", askerLease)
	ahead.Store(int64(10 * time.Second))
	if err := s.reapCopies(ctx, ""); err != nil {
		t.Fatal(err)
	}
	got, rev := read()
	if rev == 0 {
		t.Fatal("the peer timed the service out while another node asked its holder for it")
	}
	if got.Holder != "asker" || got.HolderLease != int64(askerLease) || got.Deadline != precise.Deadline {
		t.Fatalf("handed over as holder %q on lease %d, deadline %d; want the node that asked, on lease %d, deadline %d",
			got.Holder, got.HolderLease, got.Deadline, askerLease, precise.Deadline)
	}
	// The copy is done with: another pass writes nothing.
	if err := s.reapCopies(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if _, r := read(); r != rev {
		t.Error("the peer wrote the service again after handing it over")
	}
}

// A node that holds a service by the record but has no memory of it (its
// heartbeat commit that made it the holder failed, say) hands it back
// loosely when another node asks; for a heartbeat there, to that node,
// so that no reaper times the service out before that heartbeat commits.
func TestHolderWithoutMemoryHandsOverToTheAsker(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := etcdtest.Client(t, c.Endpoints()...)
	ctx := t.Context()
	ahead, now := aheadClock()
	s, err := Open(ctx, cli, Options{Prefix: "/no-memory-asker/", ReapInterval: -1, Clock: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.CreateService(ctx, "t", store.NewService{ID: "svc", HeartbeatTimeout: 3}); err != nil {
		t.Fatal(err)
	}
	key := s.k.heartbeat("t", "svc")
	read := func() (hbRecord, int64) { return readHeartbeat(t, cli, key) }
	// The record names this node as holder; the node never heard of it.
	hb0, _ := read()
	held := hb0
	lease, _ := s.lease.get()
	held.Holder, held.HolderLease = s.nodeID, int64(lease)
	held.Deadline = time.Now().Add(time.Second).UnixNano()
	rev := writeHeartbeat(t, cli, s, "t", "svc", hb0.Deadline, held)
	askerLease := liveNode(t, cli, s, "asker")
	askFor(t, cli, s, s.nodeID, "asker", askerLease)
	got := movedFrom(t, read, rev, "the node did not hand the service over")
	if got.Holder != "asker" || got.HolderLease != int64(askerLease) || got.Deadline != held.Deadline || !got.Loose {
		t.Fatalf("handed over as holder %q on lease %d, deadline %d, loose %v; want the node that asked, on lease %d, deadline %d, loose",
			got.Holder, got.HolderLease, got.Deadline, got.Loose, askerLease, held.Deadline)
	}
	ahead.Store(int64(10 * time.Second)) // past the deadline
	if err := s.reap(ctx); err != nil {
		t.Fatal(err)
	}
	if _, r := read(); r == 0 {
		t.Error("a reaper timed the service out while the node it was handed to lives")
	}
}

// readHeartbeat reads a service's heartbeat record, and its revision (0:
// none).
func readHeartbeat(t *testing.T, cli *clientv3.Client, key string) (hb hbRecord, rev int64) {
	t.Helper()
	resp, err := cli.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return hb, 0
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &hb); err != nil {
		t.Fatal(err)
	}
	return hb, resp.Kvs[0].ModRevision
}

// writeHeartbeat writes a service's heartbeat record as a holder would,
// its deadline index entry moved from the one at stored, and returns the
// revision it wrote at.
func writeHeartbeat(t *testing.T, cli *clientv3.Client, s *Store, tenant, id string, stored int64, hb hbRecord) int64 {
	t.Helper()
	raw, err := json.Marshal(hb)
	if err != nil {
		t.Fatal(err)
	}
	ops := append([]clientv3.Op{clientv3.OpPut(s.k.heartbeat(tenant, id), string(raw))}, s.k.moveDue(stored, hb.Deadline, tenant, id)...)
	tr, err := cli.Txn(t.Context()).Then(ops...).Commit()
	if err != nil {
		t.Fatal(err)
	}
	return tr.Header.Revision
}

// listsOf chooses, for a gated KV, the list reads of keys under prefix (a
// watch's first list).
func listsOf(prefix string) func(then []clientv3.Op) bool {
	return func(then []clientv3.Op) bool {
		for _, op := range then {
			if op.IsGet() && len(op.RangeBytes()) > 0 && strings.HasPrefix(string(op.KeyBytes()), prefix) {
				return true
			}
		}
		return false
	}
}

// aheadClock is a store's clock that a test moves ahead of the time.
func aheadClock() (*atomic.Int64, func() time.Time) {
	ahead := new(atomic.Int64)
	return ahead, func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
}

// liveNode grants a lease and, unless node is "" (a dead node's lease),
// puts node's key on it, as a live node of s's registry has.
func liveNode(t *testing.T, cli *clientv3.Client, s *Store, node string) clientv3.LeaseID {
	t.Helper()
	grant, err := cli.Grant(t.Context(), 60)
	if err != nil {
		t.Fatal(err)
	}
	if node != "" {
		if _, err := cli.Put(t.Context(), s.k.node(node), "", clientv3.WithLease(grant.ID)); err != nil {
			t.Fatal(err)
		}
	}
	return grant.ID
}

// askFor puts a request of node asker (on its lease) to holder to hand
// service t/svc over, as a heartbeat at asker does.
func askFor(t *testing.T, cli *clientv3.Client, s *Store, holder, asker string, lease clientv3.LeaseID) {
	t.Helper()
	if _, err := cli.Put(t.Context(), s.k.release(holder, "t", "svc"), asker, clientv3.WithLease(lease)); err != nil {
		t.Fatal(err)
	}
}

// movedFrom waits until read gives a revision other than rev, and returns
// the record then; it fails the test with msg after 30 s.
func movedFrom(t *testing.T, read func() (hbRecord, int64), rev int64, msg string) hbRecord {
	t.Helper()
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		if got, r := read(); r != rev {
			return got
		}
		if time.Since(start) > 30*time.Second {
			t.Fatal(msg)
		}
	}
}
