package etcdstore

import (
	"context"
	"encoding/json"
	"sync/atomic"
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
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := etcdtest.Client(t, c.Endpoints()...)
	ctx := t.Context()
	gate := &heldTxns{KV: cli.KV, nested: true, arrived: make(chan struct{}), release: make(chan struct{})}
	gated := swapped(cli, gate, nil)
	const timeout = 3 * time.Second
	opts := Options{Prefix: "/slow-heartbeat-write/", PeerListen: "127.0.0.1:0", ReapInterval: 250 * time.Millisecond,
		NodeTTL: 2 * time.Second, RequestTimeout: 2 * time.Second}
	opts.HeartbeatSlack = MinHeartbeatSlack(opts)
	h := holderAndPeer(t, c, gated, opts)
	tok, err := h.CreateService(ctx, "t", store.NewService{ID: "s", HeartbeatTimeout: int(timeout / time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	// The first heartbeat is written: h holds the service from now on.
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
	stored := time.Unix(0, hb.Deadline)
	// Heartbeats a second and a half apart, answered from memory (copied
	// to p), until the next one, half a second before the deadline, would
	// pass the stored deadline.
	var deadline time.Time
	for {
		sent := time.Now()
		if tok, err = h.Heartbeat(ctx, "t", "s", tok); err != nil {
			t.Fatal(err)
		}
		deadline = sent.Add(timeout)
		if deadline.Add(-500 * time.Millisecond).Add(timeout).After(stored.Add(50 * time.Millisecond)) {
			break
		}
		time.Sleep(1500 * time.Millisecond)
	}
	time.Sleep(time.Until(deadline.Add(-500 * time.Millisecond)))
	key := h.k.heartbeat("t", "s")
	gate.key.Store(&key)
	sent := time.Now()
	done := heartbeatHeld(t, h, tok, gate.arrived)
	// etcd commits it a second and a half later, within the request
	// timeout: a second past the deadline, four of p's reap intervals.
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
	ctx := t.Context()
	gate := &scriptedWrites{KV: cli.KV, second: make(chan struct{}), release: make(chan struct{})}
	const timeout = 8 * time.Second
	opts := Options{Prefix: "/slow-retried-write/", PeerListen: "127.0.0.1:0", ReapInterval: 250 * time.Millisecond,
		NodeTTL: 2 * time.Second, RequestTimeout: 5 * time.Second}
	opts.HeartbeatSlack = MinHeartbeatSlack(opts)
	h := holderAndPeer(t, c, swapped(cli, gate, nil), opts)
	tok, err := h.CreateService(ctx, "t", store.NewService{ID: "s", HeartbeatTimeout: int(timeout / time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if tok, err = h.Heartbeat(ctx, "t", "s", tok); err != nil { // written: h holds it
		t.Fatal(err)
	}
	key := h.k.heartbeat("t", "s")
	stored := func() time.Time {
		resp, err := cli.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		var hb hbRecord
		if err := json.Unmarshal(resp.Kvs[0].Value, &hb); err != nil {
			t.Fatal(err)
		}
		return time.Unix(0, hb.Deadline)
	}
	// Heartbeats a second and a half apart, until the next would pass the
	// stored deadline.
	var deadline time.Time
	for {
		sent := time.Now()
		if tok, err = h.Heartbeat(ctx, "t", "s", tok); err != nil {
			t.Fatal(err)
		}
		deadline = sent.Add(timeout)
		if sent.Add(1500 * time.Millisecond).Add(timeout).After(stored().Add(50 * time.Millisecond)) {
			break
		}
		time.Sleep(1500 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond)
	gate.key.Store(&key)
	failed := time.Now()
	if _, err := h.Heartbeat(ctx, "t", "s", tok); err == nil {
		t.Fatal("the heartbeat whose write never reached etcd was answered")
	}
	retried := time.Now()
	if !retried.Before(deadline) {
		t.Fatalf("the retry comes %v after the deadline: the test's timing is off", retried.Sub(deadline))
	}
	done := heartbeatHeld(t, h, tok, gate.second)
	// etcd commits it a second past the deadline the peer has a copy of
	// (the failed heartbeat's), within the retry's request timeout.
	time.Sleep(time.Until(failed.Add(timeout + time.Second)))
	close(gate.release)
	if err := <-done; err != nil {
		t.Errorf("a retry that reached the holder %v before its deadline failed: %v", deadline.Sub(retried).Round(time.Millisecond), err)
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

// scriptedWrites fails the first transaction that writes key (nested
// ones looked into) once key is set, when its context ends, without
// sending it; and holds back the second until release is closed (second
// is closed when it is held).
type scriptedWrites struct {
	clientv3.KV
	key     atomic.Pointer[string]
	n       atomic.Int32
	second  chan struct{}
	release chan struct{}
}

func (w *scriptedWrites) Txn(ctx context.Context) clientv3.Txn {
	return &scriptedTxn{Txn: w.KV.Txn(ctx), w: w, ctx: ctx}
}

type scriptedTxn struct {
	clientv3.Txn
	w      *scriptedWrites
	ctx    context.Context
	writes bool
}

func (t *scriptedTxn) If(cs ...clientv3.Cmp) clientv3.Txn { t.Txn = t.Txn.If(cs...); return t }
func (t *scriptedTxn) Else(ops ...clientv3.Op) clientv3.Txn {
	t.Txn = t.Txn.Else(ops...)
	return t
}

func (t *scriptedTxn) Then(ops ...clientv3.Op) clientv3.Txn {
	if key := t.w.key.Load(); key != nil && writesKey(ops, *key, true) {
		t.writes = true
	}
	t.Txn = t.Txn.Then(ops...)
	return t
}

func (t *scriptedTxn) Commit() (*clientv3.TxnResponse, error) {
	if t.writes {
		switch t.w.n.Add(1) {
		case 1:
			<-t.ctx.Done()
			return nil, t.ctx.Err()
		case 2:
			close(t.w.second)
			<-t.w.release
		}
	}
	return t.Txn.Commit()
}
