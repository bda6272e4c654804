package etcdstore

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svcreg/svcreg/internal/etcdtest"
	"github.com/svcreg/svcreg/server/store"
)

// TestPeerWaitsForAHeartbeatBeingWritten: a client heartbeats its holder
// half a second before its deadline, and this heartbeat must be written
// to etcd (its deadline would pass the stored one), which takes etcd a
// while (a leader election, a member that stopped answering). The peer
// gives a live holder only a reap interval past the deadline it has a
// copy of before it times the service out, conditional on the revision
// the holder's write is conditional on too: unless it learnt of the
// heartbeat first, it wins, and the heartbeat, which arrived in time,
// fails.
func TestPeerWaitsForAHeartbeatBeingWritten(t *testing.T) {
	t.Parallel()
	const timeout = 3 * time.Second
	h, cli, gate := gatedHolder(t, "/slow-heartbeat-write/", 0)
	// The next heartbeat, half a second before the deadline, must be
	// written: its deadline passes the stored one.
	tok, deadline, next := beatsToTheStoredDeadline(t, h, cli, timeout, timeout-500*time.Millisecond)
	time.Sleep(time.Until(next))
	committedLate(t, h, gate, tok, deadline)
}

// gatedHolder opens a holder and its peer over an etcd cluster of their
// own, under prefix, with a quarter-second reap interval, a 2 s node TTL
// and request timeout, and slack (MinHeartbeatSlack if 0). The holder's
// client is gated: its first write of the key the test names in the gate
// is held back until the gate is released. It returns the holder, a
// client of the cluster of the test's own, and the gate.
func gatedHolder(t *testing.T, prefix string, slack time.Duration) (*Store, *clientv3.Client, *heldKV) {
	t.Helper()
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := etcdtest.Client(t, c.Endpoints()...)
	gate := holdFirstWrite(cli.KV, true)
	opts := Options{Prefix: prefix, PeerListen: "127.0.0.1:0", ReapInterval: 250 * time.Millisecond,
		NodeTTL: 2 * time.Second, RequestTimeout: 2 * time.Second, HeartbeatSlack: slack}
	if slack == 0 {
		opts.HeartbeatSlack = MinHeartbeatSlack(opts)
	}
	return holderAndPeer(t, c, swapped(cli, gate, nil), opts), cli, gate
}

// committedLate sends the heartbeat of service "s" of tenant "t" with tok
// to h, whose write gate holds until a second and a half after it was
// sent (within the request timeout; a second past deadline, its token's
// last, four of the peer's reap intervals), and fails the test if the
// heartbeat fails.
func committedLate(t *testing.T, h *Store, gate *heldKV, tok string, deadline time.Time) {
	t.Helper()
	key := h.k.heartbeat("t", "s")
	gate.key.Store(&key)
	sent := time.Now()
	done := heartbeatHeld(t, h, tok, gate.arrived)
	time.Sleep(time.Until(sent.Add(1500 * time.Millisecond)))
	close(gate.release)
	if err := <-done; err != nil {
		t.Errorf("a heartbeat that reached its holder %v before its deadline failed: %v", deadline.Sub(sent).Round(time.Millisecond), err)
	}
}

// TestPeerWaitsForARetriedHeartbeatBeingWritten: as above, but the
// heartbeat that must be written fails (its write never reaches etcd
// before the request times out), so the holder no longer answers from
// memory (the write may still land); the client's retry, still before its
// deadline, is written too, and etcd takes a while to commit that. The
// peer, which has a copy of the failed heartbeat's deadline, must learn
// of the retry's before it could time the service out.
func TestPeerWaitsForARetriedHeartbeatBeingWritten(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := etcdtest.Client(t, c.Endpoints()...)
	// The first write of the service's heartbeat key never reaches etcd
	// (it fails when its context ends); the second is held back until
	// release is closed.
	second, release := make(chan struct{}), make(chan struct{})
	gate := &gatedKV{KV: cli.KV, nested: true, gate: func(n int32, ctx context.Context, send sendTxn) (*clientv3.TxnResponse, error) {
		switch n {
		case 1:
			<-ctx.Done()
			return nil, ctx.Err()
		case 2:
			close(second)
			<-release
		}
		return send(ctx)
	}}
	const timeout = 8 * time.Second
	opts := Options{Prefix: "/slow-retried-write/", PeerListen: "127.0.0.1:0", ReapInterval: 250 * time.Millisecond,
		NodeTTL: 2 * time.Second, RequestTimeout: 5 * time.Second}
	opts.HeartbeatSlack = MinHeartbeatSlack(opts)
	h := holderAndPeer(t, c, swapped(cli, gate, nil), opts)
	// The next heartbeat, a second and a half after the last, must be
	// written.
	tok, deadline, next := beatsToTheStoredDeadline(t, h, cli, timeout, 1500*time.Millisecond)
	time.Sleep(time.Until(next))
	key := h.k.heartbeat("t", "s")
	gate.key.Store(&key)
	failed := time.Now()
	if _, err := h.Heartbeat(t.Context(), "t", "s", tok); err == nil {
		t.Fatal("the heartbeat whose write never reached etcd was answered")
	}
	retried := time.Now()
	if !retried.Before(deadline) {
		t.Fatalf("the retry comes %v after the deadline: the test's timing is off", retried.Sub(deadline))
	}
	done := heartbeatHeld(t, h, tok, second)
	// etcd commits it a second past the deadline the peer has a copy of
	// (the failed heartbeat's), within the retry's request timeout.
	time.Sleep(time.Until(failed.Add(timeout + time.Second)))
	close(release)
	if err := <-done; err != nil {
		t.Errorf("a retry that reached the holder %v before its deadline failed: %v", deadline.Sub(retried).Round(time.Millisecond), err)
	}
}

// TestPeerWaitsForASequenceWindowWrite: as TestPeerWaitsForAHeartbeatBeingWritten,
// but the heartbeat must be written because its token is half the window
// of sequence numbers past the stored one, not because of its deadline:
// it is copied to the peer first just the same.
func TestPeerWaitsForASequenceWindowWrite(t *testing.T) {
	t.Parallel()
	const timeout = 3 * time.Second
	h, _, gate := gatedHolder(t, "/slow-window-write/", time.Minute)
	ctx := t.Context()
	tok, err := h.CreateService(ctx, "t", store.NewService{ID: "s", HeartbeatTimeout: int(timeout / time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if tok, err = h.Heartbeat(ctx, "t", "s", tok); err != nil { // written: h holds it
		t.Fatal(err)
	}
	last := time.Now()
	if tok, err = h.Heartbeat(ctx, "t", "s", tok); err != nil { // from memory, copied
		t.Fatal(err)
	}
	// The next token would be the stored one's + SeqWindow/2.
	AdvanceSeq(h, "t", "s", store.SeqWindow/2-2)
	time.Sleep(time.Until(last.Add(timeout - 500*time.Millisecond)))
	committedLate(t, h, gate, tok, last.Add(timeout))
}

// beatsToTheStoredDeadline creates service "s" of tenant "t" at h with
// timeout, heartbeats it once (written: h holds it from then on), then
// every second and a half (answered from memory, copied to the peer)
// until the next one, gap after the last, would pass the stored deadline
// (read from etcd with cli). It returns the token, the last heartbeat's
// deadline and when that next heartbeat is due.
func beatsToTheStoredDeadline(t *testing.T, h *Store, cli *clientv3.Client, timeout, gap time.Duration) (tok string, deadline, next time.Time) {
	t.Helper()
	ctx := t.Context()
	tok, err := h.CreateService(ctx, "t", store.NewService{ID: "s", HeartbeatTimeout: int(timeout / time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if tok, err = h.Heartbeat(ctx, "t", "s", tok); err != nil {
		t.Fatal(err)
	}
	for {
		sent := time.Now()
		if tok, err = h.Heartbeat(ctx, "t", "s", tok); err != nil {
			t.Fatal(err)
		}
		resp, err := cli.Get(ctx, h.k.heartbeat("t", "s"))
		if err != nil {
			t.Fatal(err)
		}
		var hb hbRecord
		if err := json.Unmarshal(resp.Kvs[0].Value, &hb); err != nil {
			t.Fatal(err)
		}
		if next = sent.Add(gap); next.Add(timeout).After(time.Unix(0, hb.Deadline).Add(50 * time.Millisecond)) {
			return tok, sent.Add(timeout), next
		}
		time.Sleep(1500 * time.Millisecond)
	}
}

// heartbeatHeld sends a heartbeat of service "s" of tenant "t" with tok
// to h and returns its outcome's channel once held is closed (its write
// is held back); it fails the test if the heartbeat ends first.
func heartbeatHeld(t *testing.T, h *Store, tok string, held <-chan struct{}) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := h.Heartbeat(t.Context(), "t", "s", tok)
		done <- err
	}()
	select {
	case <-held:
	case err := <-done:
		t.Fatalf("the heartbeat was not written to etcd: %v", err)
	}
	return done
}

// holderAndPeer opens two nodes with opts, the holder on cli and its peer
// on a client of its own, runs both until the test ends, and returns the
// holder once the other is its peer.
func holderAndPeer(t *testing.T, c *etcdtest.Cluster, cli *clientv3.Client, opts Options) *Store {
	t.Helper()
	h, err := Open(t.Context(), cli, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	p, err := Open(t.Context(), etcdtest.Client(t, c.Endpoints()...), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	go h.Run(t.Context())
	go p.Run(t.Context())
	for {
		if id, _ := PeerOf(h); id == p.nodeID {
			return h
		}
		time.Sleep(20 * time.Millisecond)
	}
}
