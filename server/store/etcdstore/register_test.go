package etcdstore

import (
	"context"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svcreg/svcreg/internal/etcdtest"
)

// TestLateRegistrationCannotTakeTheNodeKey: a node that lost its lease
// registers again; the first attempt's write of its node key times out
// here, the next attempt registers on another lease, and then the first
// write lands (etcd commits requests whose callers gave up). The node key
// must stay on the lease the node renews: on the first attempt's, which
// nobody renews, it would vanish a TTL later while the node went on
// answering heartbeats from memory, dead to every other node. And the
// first attempt's lease, which nobody uses, is revoked.
func TestLateRegistrationCannotTakeTheNodeKey(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := etcdtest.Client(t, c.Endpoints()...)
	ctx := t.Context()
	s, err := Open(ctx, cli, Options{Prefix: "/late-registration/", NodeTTL: 2 * time.Second, RequestTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	nodeKey := s.k.node(s.nodeID)
	late := LandNextLate(s, "register node")
	first, _ := s.lease.get()
	if _, err := cli.Revoke(ctx, first); err != nil { // the lease is lost
		t.Fatal(err)
	}
	var land func() (bool, error)
	select {
	case land = <-late:
	case <-time.After(20 * time.Second):
		t.Fatal("the node did not write its key again through a transaction")
	}
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
	landed, landErr := land()
	cur, alive := s.lease.get()
	leases, err := cli.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leases.Leases {
		if l.ID != cur {
			t.Errorf("lease %x is left in etcd besides the node's %x: a failed registration's lease is revoked", l.ID, cur)
		}
	}
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
	if landed {
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
