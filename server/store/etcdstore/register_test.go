package etcdstore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svcreg/svcreg/internal/etcdtest"
)

// swapped returns a client that is cli but for its KV and Lease, replaced
// by kv and lease unless nil: a test's way to hold or fail etcd calls.
func swapped(cli *clientv3.Client, kv clientv3.KV, lease clientv3.Lease) *clientv3.Client {
	c := &clientv3.Client{KV: cli.KV, Lease: cli.Lease, Watcher: cli.Watcher, Cluster: cli.Cluster, Maintenance: cli.Maintenance, Auth: cli.Auth}
	if kv != nil {
		c.KV = kv
	}
	if lease != nil {
		c.Lease = lease
	}
	return c
}

// lateWrites makes the first write of key (a Put, or a transaction that
// puts it) once armed fail when its context ends without reaching etcd, as
// a request to a member that stopped answering does, and hands the test
// the write, to land later, as that member would when it is back.
type lateWrites struct {
	clientv3.KV
	key   atomic.Pointer[string]
	taken atomic.Bool
	held  chan func() error
}

// hold reports whether a write of k is the one to hold back.
func (l *lateWrites) hold(k string) bool {
	key := l.key.Load()
	return key != nil && *key == k && l.taken.CompareAndSwap(false, true)
}

// fail hands land to the test and fails once ctx ends.
func (l *lateWrites) fail(ctx context.Context, land func() error) error {
	l.held <- land
	<-ctx.Done()
	return ctx.Err()
}

func (l *lateWrites) Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	if l.hold(key) {
		return nil, l.fail(ctx, func() error {
			_, err := l.KV.Put(context.Background(), key, val, opts...)
			return err
		})
	}
	return l.KV.Put(ctx, key, val, opts...)
}

func (l *lateWrites) Txn(ctx context.Context) clientv3.Txn {
	return &lateTxn{l: l, ctx: ctx}
}

// lateTxn gathers a transaction, to commit it now or later.
type lateTxn struct {
	l          *lateWrites
	ctx        context.Context
	cmps       []clientv3.Cmp
	then, els  []clientv3.Op
	writesHeld bool
}

func (t *lateTxn) If(cs ...clientv3.Cmp) clientv3.Txn { t.cmps = append(t.cmps, cs...); return t }
func (t *lateTxn) Else(ops ...clientv3.Op) clientv3.Txn {
	t.els = append(t.els, ops...)
	return t
}

func (t *lateTxn) Then(ops ...clientv3.Op) clientv3.Txn {
	for _, op := range ops {
		if op.IsPut() && t.l.hold(string(op.KeyBytes())) {
			t.writesHeld = true
		}
	}
	t.then = append(t.then, ops...)
	return t
}

func (t *lateTxn) commit(ctx context.Context) (*clientv3.TxnResponse, error) {
	return t.l.KV.Txn(ctx).If(t.cmps...).Then(t.then...).Else(t.els...).Commit()
}

func (t *lateTxn) Commit() (*clientv3.TxnResponse, error) {
	if t.writesHeld {
		return nil, t.l.fail(t.ctx, func() error {
			resp, err := t.commit(context.Background())
			if err == nil && resp.Succeeded {
				return errLandedLate
			}
			return err
		})
	}
	return t.commit(t.ctx)
}

// errLandedLate says a held-back conditional write succeeded when it
// landed.
var errLandedLate = errors.New("the held-back registration succeeded when it landed")

// TestLateRegistrationCannotTakeTheNodeKey: a node that lost its lease
// registers again; the first attempt's write of its node key times out
// here, the next attempt registers on another lease, and then the first
// write lands (etcd commits requests whose callers gave up). The node key
// must stay on the lease the node renews: on the first attempt's, which
// nobody renews, it would vanish a TTL later while the node went on
// answering heartbeats from memory, dead to every other node.
func TestLateRegistrationCannotTakeTheNodeKey(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := etcdtest.Client(t, c.Endpoints()...)
	ctx := t.Context()
	late := &lateWrites{KV: cli.KV, held: make(chan func() error, 1)}
	gated := swapped(cli, late, nil)
	s, err := Open(ctx, gated, Options{Prefix: "/late-registration/", NodeTTL: 2 * time.Second, RequestTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	nodeKey := s.k.node(s.nodeID)
	late.key.Store(&nodeKey)
	first, _ := s.lease.get()
	if _, err := cli.Revoke(ctx, first); err != nil { // the lease is lost
		t.Fatal(err)
	}
	land := <-late.held
	deadline := time.Now().Add(20 * time.Second)
	for {
		if cur, alive := s.lease.get(); cur != first && alive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the node did not register again")
		}
		time.Sleep(20 * time.Millisecond)
	}
	landErr := land()
	cur, alive := s.lease.get()
	resp, err := cli.Get(ctx, nodeKey)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case len(resp.Kvs) == 0:
		t.Fatalf("the node key is gone; the node counts on lease %x (alive: %v)", cur, alive)
	case resp.Kvs[0].Lease != int64(cur):
		t.Errorf("the late registration put the node key on lease %x; the node renews %x (landing: %v)", resp.Kvs[0].Lease, cur, landErr)
	}
	if errors.Is(landErr, errLandedLate) {
		t.Errorf("the late registration succeeded when it landed")
	}
}

// TestRenewalGetsPastASilentMember: the etcd client sends each request to
// the next member in turn, and one that stopped answering without closing
// its connections holds every request it gets until it times out. Here
// every renewal request sent apart from others goes to it, as the node's
// other requests in between can arrange; only requests sent together
// reach different members.
func TestRenewalGetsPastASilentMember(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := etcdtest.Client(t, c.Endpoints()...)
	silent := &silentFirsts{Lease: cli.Lease}
	gated := swapped(cli, nil, silent)
	s, err := Open(t.Context(), gated, Options{Prefix: "/silent-member/", NodeTTL: 2 * time.Second, RequestTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	first, _ := s.lease.get()
	time.Sleep(3 * s.opts.NodeTTL)
	ttl, err := cli.TimeToLive(t.Context(), first)
	if err != nil {
		t.Fatal(err)
	}
	if cur, _ := s.lease.get(); cur != first || ttl.TTL <= 0 {
		t.Errorf("the node lost its lease %x (etcd: TTL %d); it counts on %x", first, ttl.TTL, cur)
	}
	silent.mu.Lock()
	defer silent.mu.Unlock()
	if silent.held < 3 {
		t.Fatalf("only %d renewals were held up", silent.held)
	}
}

// silentFirsts holds every KeepAliveOnce that starts more than 20 ms
// after the one before it until its context ends.
type silentFirsts struct {
	clientv3.Lease
	mu   sync.Mutex
	last time.Time
	held int
}

func (l *silentFirsts) KeepAliveOnce(ctx context.Context, id clientv3.LeaseID) (*clientv3.LeaseKeepAliveResponse, error) {
	l.mu.Lock()
	now := time.Now()
	first := now.Sub(l.last) > 20*time.Millisecond
	l.last = now
	l.mu.Unlock()
	if first {
		<-ctx.Done()
		l.mu.Lock()
		l.held++
		l.mu.Unlock()
		return nil, ctx.Err()
	}
	return l.Lease.KeepAliveOnce(ctx, id)
}

// TestNodeLeaseGoesByBothClocks: the node counts on its lease only while
// both clocks say so. A machine suspended past the lease (the monotonic
// clock stood still, the wall clock went on) no longer does; nor one whose
// wall clock was stepped back.
func TestNodeLeaseGoesByBothClocks(t *testing.T) {
	var l nodeLease
	l.set(1, time.Now(), 60)
	if _, alive := l.get(); !alive {
		t.Fatal("a lease renewed now with a TTL of a minute is not alive")
	}
	suspended := nodeLease{id: 1, until: time.Now().Add(time.Minute), untilWall: time.Now().Add(-time.Second).UnixNano()}
	if _, alive := suspended.get(); alive {
		t.Error("alive by the monotonic clock, expired by the wall clock: counted alive")
	}
	steppedBack := nodeLease{id: 1, until: time.Now().Add(-time.Second), untilWall: time.Now().Add(time.Minute).UnixNano()}
	if _, alive := steppedBack.get(); alive {
		t.Error("expired by the monotonic clock, alive by the wall clock: counted alive")
	}
}
