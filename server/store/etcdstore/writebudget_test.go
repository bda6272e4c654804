package etcdstore_test

import (
	"fmt"
	"strings"
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
	if w := clientWrites(t, c, before); w != "" {
		t.Errorf("two refused writes wrote to etcd:\n%s", w)
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
// from their own clocks' (a second of skew is waited for). A node that
// finds the stamp more than a second ahead of its clock says so: a
// metric, and a line in its log (at most once a minute). Until the clocks
// agree, writes alternating between the two refill the budget at the
// fast node (each node's own write limit still holds); the operator has
// to fix the clocks.
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
	if got := n[0].metric("svcreg_store_clock_behind_total"); got != 0 {
		t.Fatalf("svcreg_store_clock_behind_total = %v before any write at the slow node", got)
	}
	for i := range 10 {
		time.Sleep(50 * time.Millisecond) // five writes' worth earned each time
		u.do(n[0], "PUT", "/configuration/key-1", map[string]string{"value": fmt.Sprint(i)}, 204)
	}
	if got := n[0].metric("svcreg_store_clock_behind_total"); got < 1 {
		t.Errorf("svcreg_store_clock_behind_total = %v at the node an hour behind; want it counted", got)
	}
	const said = "another node's clock is ahead (or this one stepped back)"
	if logs := n[0].logBuffer().String(); strings.Count(logs, said) != 1 {
		t.Errorf("the slow node's log says the clocks disagree %d times; want once (at most once a minute):\n%s", strings.Count(logs, said), logs)
	}
	if got := fast[0].metric("svcreg_store_clock_behind_total"); got != 0 {
		t.Errorf("svcreg_store_clock_behind_total = %v at the node ahead", got)
	}
}

// An update or a delete at another node than the service's holder asks
// the holder to hand it back, which writes to etcd: with the account's
// budget spent, neither asks. A delete (or a new heartbeat timeout) is
// refused first; an update that changes no timeout writes nothing and
// needs no hand-over. Before, 200 such requests alternating with
// heartbeats at the holder moved etcd by 600 revisions with the budget
// spent: the account's writes grew with the nodes, past --write-rate.
func TestSpentBudgetAsksNoHandOver(t *testing.T) {
	t.Parallel()
	const burst = 3
	c := etcdtest.Start(t, etcdtest.Options{})
	n := startNodes(t, c, 2, etcdstore.Options{WriteRate: 0.001, WriteBurst: burst})
	u := login(t, n[0], "mover")
	tok := u.create(n[0], "svc-1", 30)
	u.do(n[0], "PUT", "/configuration/key", map[string]string{"value": "a"}, 204)
	u.do(n[0], "PUT", "/configuration/key", map[string]string{"value": "b"}, 204)
	refused := func(r reply, err error) bool {
		return err == nil && r.code == 400 && r.faultType() == "rateLimitReached"
	}
	if !refused(u.try(n[1], "PUT", "/configuration/key", map[string]string{"value": "c"})) {
		t.Fatal("the budget is not spent")
	}
	tok = u.heartbeat(n[0], "svc-1", tok) // n0 holds svc-1
	tok = u.heartbeat(n[0], "svc-1", tok)
	before := etcdRevision(t, c)
	for range 10 {
		u.do(n[1], "PUT", "/services/svc-1", map[string]any{"heartbeat_timeout": 30}, 204)
		if !refused(u.try(n[1], "DELETE", "/services/svc-1", nil)) {
			t.Fatal("a delete past the budget was not refused")
		}
		// At the holder too: its release would write.
		if !refused(u.try(n[0], "DELETE", "/services/svc-1", nil)) {
			t.Fatal("a delete past the budget at the holder was not refused")
		}
		if !refused(u.try(n[1], "PUT", "/services/svc-1", map[string]any{"heartbeat_timeout": 40})) {
			t.Fatal("a new heartbeat timeout past the budget was not refused")
		}
		tok = u.heartbeat(n[0], "svc-1", tok)
	}
	if w := clientWrites(t, c, before); w != "" {
		t.Errorf("40 requests refused or changing nothing, with heartbeats at the holder, wrote to etcd:\n%s", w)
	}
	// What is not there is not found, budget or not.
	u.do(n[1], "DELETE", "/services/svc-none", nil, 404)
	u.do(n[1], "PUT", "/services/svc-none", map[string]any{"heartbeat_timeout": 40}, 404)
}
