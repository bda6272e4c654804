package etcdstore

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svcreg/svcreg/internal/etcdtest"
	"github.com/svcreg/svcreg/server/store"
)

// TestHedgedHeartbeatFindsItsOwnWrite: a heartbeat batch's first send
// commits, but its answer is slow to come back; the hedge, sent to another
// member meanwhile, finds the keys changed (by the batch itself) and is
// answered first. The node must take the write for its own: it holds the
// service and times it out at its deadline, not at the stored one, a
// slack later, as it would a service it does not hold.
func TestHedgedHeartbeatFindsItsOwnWrite(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := etcdtest.Client(t, c.Endpoints()...)
	ctx := t.Context()
	// The first send commits at once and answers only when it is no
	// longer waited for: once the hedge's answer was taken.
	slow := &gatedKV{KV: cli.KV, nested: true, gate: func(_ int32, ctx context.Context, send sendTxn) (*clientv3.TxnResponse, error) {
		resp, err := send(ctx)
		<-ctx.Done()
		return resp, err
	}}
	hedge := &gatedKV{KV: cli.KV, nested: true, gate: func(_ int32, ctx context.Context, send sendTxn) (*clientv3.TxnResponse, error) {
		return send(ctx)
	}}
	opts := Options{Prefix: "/hedged-own-write/", ReapInterval: 100 * time.Millisecond, NodeTTL: 2 * time.Second, RequestTimeout: 2 * time.Second}
	opts.HeartbeatSlack = MinHeartbeatSlack(opts)
	s, err := Open(ctx, swapped(cli, slow, nil), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.hedgeTo.Store(&[]clientv3.KV{hedge})
	go s.Run(ctx)
	const timeout = 3 * time.Second
	tok, err := s.CreateService(ctx, "t", store.NewService{ID: "s", HeartbeatTimeout: int(timeout / time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	// The first heartbeat makes the node the holder; with the least
	// slack, the next must be written too.
	if tok, err = s.Heartbeat(ctx, "t", "s", tok); err != nil {
		t.Fatal(err)
	}
	key := s.k.heartbeat("t", "s")
	slow.key.Store(&key)
	hedge.key.Store(&key)
	sent := time.Now()
	if _, err := s.Heartbeat(ctx, "t", "s", tok); err != nil {
		t.Fatal(err)
	}
	if slow.n.Load() != 1 || hedge.n.Load() != 1 {
		t.Fatalf("sends of the heartbeat write: %d through the client, %d hedged; want 1 and 1", slow.n.Load(), hedge.n.Load())
	}
	// Not heartbeated again, the service times out at its deadline,
	// within the reaper's interval.
	deadline := sent.Add(timeout)
	for {
		_, err := s.Service(ctx, "t", "s")
		var nf *store.NotFoundError
		if errors.As(err, &nf) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline.Add(time.Second)) {
			t.Fatalf("the service is still there %v past its deadline: the node does not hold it", time.Since(deadline).Round(time.Millisecond))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
