package etcdstore

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/etcdtest"
	"github.com/svcreg/svcreg/server/store"
)

// TestReapCopiesLeavesACopyTakenMeanwhile: the peer's reaper finds a copy
// due, then works on others (here the retry of a hand-over, an etcd write,
// held up) before it fences it; a late heartbeat the live holder answers
// meanwhile sends a copy at the same revision with a new deadline, which
// the peer takes. The reaper must not time the service out at that
// deadline, still to come: the holder answered the heartbeat.
func TestReapCopiesLeavesACopyTakenMeanwhile(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := etcdtest.Client(t, c.Endpoints()...)
	ctx := t.Context()
	gate := holdFirstWrite(cli.KV, false)
	gated := swapped(cli, gate, nil)
	// No reaper of its own: the test runs the pass.
	s, err := Open(ctx, gated, Options{Prefix: "/reap-copies/", PeerListen: "127.0.0.1:0", ReapInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for _, id := range []string{"late", "handed-over"} {
		if _, err := s.CreateService(ctx, "t", store.NewService{ID: id, HeartbeatTimeout: 3}); err != nil {
			t.Fatal(err)
		}
	}
	stored := func(id string) (rev int64, hb hbRecord) {
		resp, err := cli.Get(ctx, s.k.heartbeat("t", id))
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("read the heartbeat state of %s: %v", id, err)
		}
		if err := json.Unmarshal(resp.Kvs[0].Value, &hb); err != nil {
			t.Fatal(err)
		}
		return resp.Kvs[0].ModRevision, hb
	}
	rev, hb := stored("late")
	relRev, relHB := stored("handed-over")
	lease, _ := s.lease.get()

	// A live holder whose own reaper is late: its copy's deadline passed
	// a while ago. And a hand-over of another of its
	// services, whose outcome is unknown: the reaper tries it again first.
	const holder, holderLease = "holder", 77
	s.peers.mu.Lock()
	s.peers.nodes[holder] = peerInfo{id: holder, lease: holderLease}
	s.peers.mu.Unlock()
	relKey := s.k.release(holder, "t", "handed-over")
	due := hb
	due.Seq, due.Deadline = 5, time.Now().Add(-time.Second).UnixNano()
	s.copies.mu.Lock()
	s.copies.m[hbKey{"t", "late"}] = &copyEntry{from: holder, fromLease: holderLease, lease: int64(lease), hbRev: rev, stored: hb.Deadline, state: due}
	s.copies.m[hbKey{"t", "handed-over"}] = &copyEntry{from: holder, fromLease: holderLease, lease: int64(lease), hbRev: relRev, stored: relHB.Deadline, state: relHB, fenced: true, pendingRel: relKey}
	s.copies.mu.Unlock()

	gate.key.Store(&relKey)
	done := make(chan error, 1)
	go func() { done <- s.reapCopies(ctx, "") }()
	<-gate.arrived // the reaper has found "late" due

	next := hb
	next.Seq, next.Deadline = 6, time.Now().Add(3*time.Second).UnixNano()
	s.copies.mu.Lock()
	took := s.copies.take(holder, holderLease, int64(lease), copyItem{Tenant: "t", ID: "late", HBRev: rev, Stored: hb.Deadline, State: next})
	s.copies.mu.Unlock()
	if !took {
		t.Fatal("the peer refused the holder's copy")
	}
	close(gate.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := s.Service(ctx, "t", "late"); err != nil {
		t.Errorf("the peer timed the service out although its copy's deadline is %v away: %v",
			time.Until(time.Unix(0, next.Deadline)).Round(time.Millisecond), err)
	}
}
