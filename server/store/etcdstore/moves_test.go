package etcdstore_test

import (
	"testing"

	"github.com/svcreg/svcreg/internal/etcdtest"
	"github.com/svcreg/svcreg/server"
	"github.com/svcreg/svcreg/server/store"
	"github.com/svcreg/svcreg/server/store/etcdstore"
)

// A heartbeat that reaches a node other than its service's live holder
// moves the service, which writes etcd (about three writes: the request,
// the holder's hand-over, the new holder's commit). Heartbeats are outside
// the write limit, so the moves are paid for from a budget of their own:
// one account alternating its heartbeats between two nodes gets
// rateLimitReached, with Retry-After, once it has moved as many services
// as its burst allows at each node (each node counts its own), and etcd's
// writes stay bounded by that, while
// heartbeats at the holder stay answered from memory. The refused
// heartbeat's token still works.
func TestMovesSpendTheTenantsBudget(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	const burst = 5
	endpoints := [][]string{c.Endpoints(), c.Endpoints()}
	// The burst is the account's service limit, more than the write
	// burst: every service of a node that stopped may move at once. A
	// rate of one move in 1000 s: none comes back meanwhile.
	n := startServersAt(t, etcdstore.Options{DefaultLimits: store.Limits{Services: burst, ConfigValues: 10}},
		server.Config{WriteRate: 0.001, WriteBurst: 2}, endpoints...)
	peerOf(t, n[0], n)
	peerOf(t, n[1], n)
	u := login(t, n[0], "mover")
	tok := u.create(n[0], "svc-1", 30)
	tok = u.heartbeat(n[0], "svc-1", tok)

	before := etcdRevision(t, c)
	at := 0 // the node holding svc-1
	for i := range 2 * burst {
		at = 1 - at
		tok = u.heartbeat(n[at], "svc-1", tok)
		if i == 0 {
			// The first move asks n[0] to hand over; etcd's revision
			// tells what one move writes.
			t.Logf("one move: %d etcd writes", etcdRevision(t, c)-before)
		}
	}
	moved := etcdRevision(t, c)
	r, err := u.try(n[1-at], "POST", "/services/svc-1/heartbeat", map[string]string{"token": tok})
	if err != nil {
		t.Fatal(err)
	}
	if r.code != 400 || r.faultType() != "rateLimitReached" || r.header.Get("Retry-After") == "" {
		t.Fatalf("move past the budget of %d at each node: %d %s (Retry-After %q); want 400 rateLimitReached with Retry-After",
			burst, r.code, r.body, r.header.Get("Retry-After"))
	}
	if got := n[1-at].metric("svcreg_heartbeat_moves_refused_total"); got != 1 {
		t.Errorf("svcreg_heartbeat_moves_refused_total = %v, want 1", got)
	}
	// The holder answers the same token, and many more, from memory.
	for range 20 {
		tok = u.heartbeat(n[at], "svc-1", tok)
	}
	if after := etcdRevision(t, c); after != moved {
		t.Errorf("a refused move and 20 heartbeats at the holder moved etcd from revision %d to %d", moved, after)
	}
	// The other account's budget is its own.
	v := login(t, n[0], "bystander")
	vtok := v.create(n[0], "svc-1", 30)
	vtok = v.heartbeat(n[0], "svc-1", vtok)
	v.heartbeat(n[1], "svc-1", vtok)
}

// A heartbeat at a node other than the holder, with a token the holder
// cannot have handed out, is answered 404 without asking the holder for
// the service: nothing is written to etcd, and the service stays where it
// is.
func TestForgedTokenMovesNothing(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	n := startNodes(t, c, 2, etcdstore.Options{})
	peerOf(t, n[0], n)
	peerOf(t, n[1], n)
	u := login(t, n[0], "forger")
	// A token of the service's earlier incarnation, and one of another
	// service.
	earlier := u.heartbeat(n[0], "svc-1", u.create(n[0], "svc-1", 30))
	u.do(n[0], "DELETE", "/services/svc-1", nil, 204)
	other := u.create(n[0], "svc-2", 30)
	tok := u.heartbeat(n[0], "svc-1", u.create(n[0], "svc-1", 30))
	for range 3 {
		tok = u.heartbeat(n[0], "svc-1", tok) // from memory
	}
	before, handovers := etcdRevision(t, c), n[0].metric("svcreg_store_heartbeat_handovers_total")
	forged := []string{
		"00000000-0000-1000-8000-000000000000", // a version-1 UUID no node minted
		earlier,
		other,
	}
	for _, f := range forged {
		r, err := u.try(n[1], "POST", "/services/svc-1/heartbeat", map[string]string{"token": f})
		if err != nil {
			t.Fatal(err)
		}
		if r.code != 404 {
			t.Errorf("heartbeat at the other node with token %s: %d %s, want 404", f, r.code, r.body)
		}
	}
	if after := etcdRevision(t, c); after != before {
		t.Errorf("refused heartbeats at the other node moved etcd from revision %d to %d", before, after)
	}
	if got := n[0].metric("svcreg_store_heartbeat_handovers_total"); got != handovers {
		t.Errorf("the holder handed the service over %v times", got-handovers)
	}
	// The service never moved: its holder answers its token from memory.
	u.heartbeat(n[0], "svc-1", tok)
	if after := etcdRevision(t, c); after != before {
		t.Errorf("a heartbeat at the holder after them moved etcd from revision %d to %d", before, after)
	}
}
