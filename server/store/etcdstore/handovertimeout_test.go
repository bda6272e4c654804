package etcdstore

import (
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
	h.gates = func(then []clientv3.Op) bool {
		for _, op := range then {
			if op.IsGet() && len(op.RangeBytes()) > 0 && strings.HasPrefix(string(op.KeyBytes()), prefix+"rel/") {
				return true
			}
		}
		return false
	}
	var ahead atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
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
	grant, err := cli.Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, s.k.node("asker"), "", clientv3.WithLease(grant.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, s.k.release(s.nodeID, "t", "svc"), "asker", clientv3.WithLease(grant.ID)); err != nil {
		t.Fatal(err)
	}
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
	if hb.Holder != "asker" || hb.HolderLease != int64(grant.ID) || hb.Deadline != deadline {
		t.Fatalf("handed over as holder %q on lease %d, deadline %d; want the node that asked, on lease %d, deadline %d",
			hb.Holder, hb.HolderLease, hb.Deadline, grant.ID, deadline)
	}
	if err := s.reap(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := stored(); !ok {
		t.Fatal("a reaper timed the service out while the node it was handed to lives")
	}
	// That node dies before its heartbeat commits: the service times out
	// at its exact deadline.
	if _, err := cli.Revoke(ctx, grant.ID); err != nil {
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
