package etcdstore_test

import (
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/etcdtest"
	"github.com/svcreg/svcreg/server/store"
	"github.com/svcreg/svcreg/server/store/etcdstore"
)

// peered starts two nodes with opts over an etcd cluster of their own,
// each the other's peer for copies, and logs name in.
func peered(t *testing.T, opts etcdstore.Options, name string) (*etcdtest.Cluster, []*node, *user) {
	t.Helper()
	c := etcdtest.Start(t, etcdtest.Options{})
	n := startNodes(t, c, 2, opts)
	peerOf(t, n[0], n)
	peerOf(t, n[1], n)
	return c, n, login(t, n[0], name)
}

// A heartbeat that reaches a node other than its service's live holder
// moves the service, which writes etcd (about three writes: the request,
// the holder's hand-over, the new holder's commit). Heartbeats are outside
// the write limit, so the moves are paid for from a budget of their own,
// which each node keeps: one account alternating its heartbeats between
// two nodes gets rateLimitReached, with Retry-After, once it has moved as
// many services as its bursts allow, and etcd's writes stay bounded by
// that, while heartbeats at the holder stay answered from memory. The
// refused heartbeat's token still works.
func TestMovesSpendTheTenantsBudget(t *testing.T) {
	t.Parallel()
	const burst = 5
	// The rate is the account's one live service over MoveEvery, a move
	// every 5 s: a slow run may earn one or two more.
	c, n, u := peered(t, etcdstore.Options{MoveRate: 0.001, MoveBurst: burst}, "mover")
	tok := u.create(n[0], "svc-1", 30)
	tok = u.heartbeat(n[0], "svc-1", tok)

	start, before := time.Now(), etcdRevision(t, c)
	at, moves := 0, 0 // the node holding svc-1, and the moves made
	var refused reply
	for refused.code == 0 && moves < 100 {
		r, err := u.try(n[1-at], "POST", "/services/svc-1/heartbeat", map[string]string{"token": tok})
		switch {
		case err != nil:
			t.Fatal(err)
		case r.code == 200:
			var out struct{ Token string }
			r.json(&out)
			tok, at = out.Token, 1-at
			moves++
		default:
			refused = r
		}
	}
	earned := int(2*time.Since(start).Seconds()/etcdstore.MoveEvery) + 2
	if refused.code != 400 || refused.faultType() != "rateLimitReached" || refused.header.Get("Retry-After") == "" {
		t.Fatalf("after %d moves: %d %s (Retry-After %q); want 400 rateLimitReached with Retry-After",
			moves, refused.code, refused.body, refused.header.Get("Retry-After"))
	}
	if moves < 2*burst || moves > 2*burst+earned {
		t.Errorf("%d moves before the first refusal, want %d (a burst of %d at each of 2 nodes) to %d", moves, 2*burst, burst, 2*burst+earned)
	}
	t.Logf("%d moves: %d etcd writes", moves, etcdRevision(t, c)-before)
	if got := n[1-at].metric("svcreg_store_heartbeat_moves_refused_total"); got != 1 {
		t.Errorf("svcreg_store_heartbeat_moves_refused_total = %v, want 1", got)
	}
	// The holder answers the same token, and many more, from memory.
	moved := etcdRevision(t, c)
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

// The tokens a holder hands out from memory move the service to another
// node, and a retry of the token just used, at the node the service left,
// gets the same next token.
func TestMovesTakeTokensFromMemory(t *testing.T) {
	t.Parallel()
	_, n, u := peered(t, etcdstore.Options{}, "memory-mover")
	tok := u.heartbeat(n[0], "svc-1", u.create(n[0], "svc-1", 30))
	for range 3 {
		tok = u.heartbeat(n[0], "svc-1", tok) // from memory
	}
	used := tok
	next := u.heartbeat(n[1], "svc-1", used)
	if again := u.heartbeat(n[0], "svc-1", used); again != next {
		t.Errorf("the retry of %s at the node the service left got %s, want %s", used, again, next)
	}
	u.heartbeat(n[1], "svc-1", next)
}

// A heartbeat at a node other than the holder, with a token the holder
// cannot have handed out, is answered 404 without asking the holder for
// the service: nothing is written to etcd, and the service stays where it
// is.
func TestForgedTokenMovesNothing(t *testing.T) {
	t.Parallel()
	c, n, u := peered(t, etcdstore.Options{}, "forger")
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
	if w := clientWrites(t, c, before); w != "" {
		t.Errorf("refused heartbeats at the other node wrote to etcd:\n%s", w)
	}
	if got := n[0].metric("svcreg_store_heartbeat_handovers_total"); got != handovers {
		t.Errorf("the holder handed the service over %v times", got-handovers)
	}
	// The service never moved: its holder answers its token from memory.
	u.heartbeat(n[0], "svc-1", tok)
	if w := clientWrites(t, c, before); w != "" {
		t.Errorf("a heartbeat at the holder after them wrote to etcd:\n%s", w)
	}
}

// A holder writes a heartbeat, rather than answer it from memory, once the
// token it would hand out is half the window of sequence numbers past the
// stored one: should it die, another node takes a token as newer than the
// stored one only within that window (services heartbeating tens of times
// a second for a long slack come that far).
func TestHolderWritesBeforeItsTokensLeaveTheWindow(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	n := startNodes(t, c, 2, etcdstore.Options{PeerListen: "off"})
	u := login(t, n[0], "window")
	tok := u.heartbeat(n[0], "svc-1", u.create(n[0], "svc-1", 30))
	tok = u.heartbeat(n[0], "svc-1", tok) // from memory: the stored one's + 1
	// The next token 2 + the advance past the stored one.
	etcdstore.AdvanceSeq(n[0].st, u.tenant, "svc-1", store.SeqWindow/2-3)
	before := etcdRevision(t, c)
	tok = u.heartbeat(n[0], "svc-1", tok)
	if w := clientWrites(t, c, before); w != "" {
		t.Errorf("a heartbeat %d sequence numbers past the stored one was written:\n%s", store.SeqWindow/2-1, w)
	}
	tok = u.heartbeat(n[0], "svc-1", tok)
	if clientWrites(t, c, before) == "" {
		t.Errorf("a heartbeat %d sequence numbers past the stored one was answered from memory", store.SeqWindow/2)
	}
	// After the holder's death, another node takes the token it answered
	// from memory last, one past the stored one.
	tok = u.heartbeat(n[0], "svc-1", tok)
	n[0].crash()
	u.heartbeat(n[1], "svc-1", tok)
}
