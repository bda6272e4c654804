package etcdstore_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/etcdtest"
	"github.com/svcreg/svcreg/server/store/etcdstore"
)

// An account's writes are paid for from one budget kept with the account
// in etcd, whichever node takes them: alternating its writes between two
// nodes, an account gets rateLimitReached with Retry-After once it has
// made a burst's worth in all (not a burst at each node), so that adding
// nodes does not multiply what it can write, and etcd's history with it.
// A refused write changes nothing; the account's services still time
// out, which the budget does not hold up; other accounts have budgets of
// their own.
func TestWritesSpendOneBudgetAcrossNodes(t *testing.T) {
	t.Parallel()
	const burst = 6
	c := etcdtest.Start(t, etcdtest.Options{})
	// The rate, one write every 1,000 s, earns nothing while the test
	// runs; each node's own limit (the server's default) is far above.
	n := startNodes(t, c, 2, etcdstore.Options{WriteRate: 0.001, WriteBurst: burst, ReapInterval: 100 * time.Millisecond})
	u := login(t, n[0], "writer")

	// Every kind of write spends, at either node: two creates (one
	// service to time out), a configuration set, an update, a
	// configuration delete and a service delete.
	u.create(n[0], "svc-1", 30)
	u.create(n[1], "svc-2", 10) // not due while etcd's revision is watched below
	u.do(n[0], "PUT", "/configuration/key-1", map[string]string{"value": "v"}, 204)
	u.do(n[1], "PUT", "/services/svc-1", map[string]any{"tags": []string{"t"}}, 204)
	u.do(n[0], "DELETE", "/configuration/key-1", nil, 204)
	u.do(n[1], "DELETE", "/services/svc-1", nil, 204)
	before := etcdRevision(t, c)
	for i, x := range n {
		r, err := u.try(x, "PUT", "/configuration/key-2", map[string]string{"value": fmt.Sprint(i)})
		if err != nil {
			t.Fatal(err)
		}
		if r.code != 400 || r.faultType() != "rateLimitReached" || r.header.Get("Retry-After") == "" {
			t.Fatalf("node %d, write %d of the account: %d %s (Retry-After %q); want 400 rateLimitReached with Retry-After",
				i, burst+1+i, r.code, r.body, r.header.Get("Retry-After"))
		}
		if got := x.metric("svcreg_store_writes_refused_total"); got != 1 {
			t.Errorf("node %d: svcreg_store_writes_refused_total = %v, want 1", i, got)
		}
	}
	if after := etcdRevision(t, c); after != before {
		t.Errorf("two refused writes moved etcd from revision %d to %d", before, after)
	}
	u.do(n[0], "GET", "/configuration/key-2", nil, 404)

	// The reaper's timeout is no client's write: svc-2 (10 s) times out.
	deadline := time.Now().Add(40 * time.Second)
	for {
		r, err := u.try(n[0], "GET", "/services/svc-2", nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.code == 404 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("svc-2 (timeout 10 s) still there after 40 s: %d %s", r.code, r.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	evs := summary(u.events(n[1], ""))
	if last := evs[len(evs)-1]; last != "service.timeout svc-2" {
		t.Errorf("the feed ends with %q, want the timeout of svc-2; feed: %q", last, evs)
	}

	// Another account's budget is its own.
	v := login(t, n[1], "bystander")
	for i := range burst {
		v.do(n[i%2], "PUT", "/configuration/key-1", map[string]string{"value": fmt.Sprint(i)}, 204)
	}
}

// A node whose clock is far ahead stamps the account's write budget with
// its time; the other nodes do not wait for that time to come, but go on
// from their own clocks' (a second of skew is waited for).
func TestWriteBudgetOutlivesAClockAhead(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	opts := etcdstore.Options{WriteRate: 100, WriteBurst: 3}
	ahead := opts
	ahead.Clock = func() time.Time { return time.Now().Add(time.Hour) }
	n := startNodesAt(t, opts, c.Endpoints())
	fast := startNodesAt(t, ahead, c.Endpoints())
	u := login(t, n[0], "skewed")
	u.do(fast[0], "PUT", "/configuration/key-1", map[string]string{"value": "ahead"}, 204)
	for i := range 10 {
		time.Sleep(50 * time.Millisecond) // five writes' worth earned each time
		u.do(n[0], "PUT", "/configuration/key-1", map[string]string{"value": fmt.Sprint(i)}, 204)
	}
}
