package etcdstore

import (
	"context"
	"encoding/json"
	"testing"
	"time"

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
	h, err := Open(ctx, gated, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	p, err := Open(ctx, etcdtest.Client(t, c.Endpoints()...), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	go h.Run(rctx)
	go p.Run(rctx)
	for {
		if id, _ := PeerOf(h); id == p.nodeID {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
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
	type result struct {
		tok string
		err error
	}
	done := make(chan result, 1)
	go func() {
		tok, err := h.Heartbeat(ctx, "t", "s", tok)
		done <- result{tok, err}
	}()
	select {
	case <-gate.arrived:
	case r := <-done:
		t.Fatalf("the heartbeat was not written to etcd: %q, %v", r.tok, r.err)
	}
	// etcd commits it a second and a half later, within the request
	// timeout: a second past the deadline, four of p's reap intervals.
	time.Sleep(time.Until(sent.Add(1500 * time.Millisecond)))
	close(gate.release)
	if r := <-done; r.err != nil {
		t.Errorf("a heartbeat that reached its holder %v before its deadline failed: %v", deadline.Sub(sent).Round(time.Millisecond), r.err)
	}
}
