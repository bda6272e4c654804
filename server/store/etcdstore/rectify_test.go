package etcdstore

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svcreg/svcreg/internal/etcdtest"
	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/server/store"
)

// A read finds a service due and times it out; before the write reads
// its clock, the node's wall clock steps back (an NTP step) to before the
// deadline. The service's own deadline index entry is then not due by the
// write's clock: it is left for later, not deleted as a stale one, which
// would leave the service with no entry, and no node would ever time it
// out.
func TestClockSteppedBackKeepsTheDeadlineIndexEntry(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := etcdtest.Client(t, c.Endpoints()...)
	ctx := t.Context()
	clock := new(testserver.Clock)
	const prefix = "/clock-step/"
	var stepped atomic.Bool
	gate := &gatedKV{KV: cli.KV}
	// The timeout's transaction reads the service's index key itself
	// (dueEntries reads a range).
	gate.gates = func(then []clientv3.Op) bool {
		for _, op := range then {
			if op.IsGet() && len(op.RangeBytes()) == 0 && strings.HasPrefix(string(op.KeyBytes()), prefix+"due/") {
				return true
			}
		}
		return false
	}
	gate.gate = func(_ int32, ctx context.Context, send sendTxn) (*clientv3.TxnResponse, error) {
		if stepped.CompareAndSwap(false, true) {
			clock.Advance(-time.Second)
		}
		return send(ctx)
	}
	s, err := Open(ctx, swapped(cli, gate, nil), Options{Prefix: prefix, ReapInterval: -1, Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.CreateService(ctx, "t", store.NewService{ID: "svc", HeartbeatTimeout: 3}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(3500 * time.Millisecond) // half a second past the deadline
	if _, err := s.Service(ctx, "t", "svc"); err != nil {
		t.Fatalf("read while the clock steps back to before the deadline: %v", err)
	}
	if !stepped.Load() {
		t.Fatal("no timeout was tried")
	}
	clock.Advance(time.Minute)
	_, err = s.Service(ctx, "t", "svc")
	if !errors.As(err, new(*store.NotFoundError)) {
		resp, _ := cli.Get(ctx, prefix+"due/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		t.Errorf("a minute after its deadline the service is still there (read: %v); deadline index entries: %d", err, resp.Count)
	}
}
