package etcdstore_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svcreg/svcreg/internal/etcdtest"
	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/server/store/etcdstore"
)

// TestRetryOfThePreviousTokenInAnOutagesGrace: a client sends again the
// token before the one its holder last answered from memory (that answer
// was lost), and etcd is out for every node while the deadline passes.
// During the outage the retry is refused with a 5xx; within the grace
// after it, the holder answers it from its memory with the token it handed
// out, and every other node answers it consistently (the same token, or,
// once the holder's lease is gone, one taken over from it that every node
// then answers the same way); the client goes on with the last answer at
// each node in turn, past the end of the grace, without a timeout, while
// a service whose client died in the outage times out once its grace is
// over.
func TestRetryOfThePreviousTokenInAnOutagesGrace(t *testing.T) {
	t.Parallel()
	// etcd stopped: the nodes' leases outlive the outage (etcd renews
	// them as it starts), and the holder hands the service over. Every
	// node cut off: the leases expire, the nodes register again, and the
	// service is taken over from a holder that is gone to the others.
	for _, cut := range []bool{false, true} {
		name := "etcd stopped"
		if cut {
			name = "every node cut off"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			retryPreviousInGrace(t, cut)
		})
	}
}

func retryPreviousInGrace(t *testing.T, cut bool) {
	c := etcdtest.Start(t, etcdtest.Options{}) // stopped below: not the shared cluster
	clock := new(testserver.Clock)
	const timeout = 10
	opts := etcdstore.Options{Clock: clock.Now, NodeTTL: 2 * time.Second, RequestTimeout: time.Second, ReapInterval: 100 * time.Millisecond}
	part := newPartition(t, c.Endpoints())
	n := startNodesAt(t, opts, part.Endpoints, part.Endpoints, part.Endpoints)
	waitSeeing(t, n...)
	holder := n[0]
	peer := peerOf(t, holder, n)
	other := n[1]
	if other == peer {
		other = n[2]
	}
	u := login(t, holder, "previous-in-grace")
	marker := u.listMarker(holder)
	tok := u.create(holder, "svc", timeout)
	u.create(holder, "dead", timeout) // its client dies in the outage
	for range 2 {
		tok = u.heartbeat(holder, "svc", tok) // held, answered from memory
	}
	prev := tok
	last := u.heartbeat(holder, "svc", prev) // its answer is lost

	if cut {
		part.Cut()
	} else {
		c.Stop()
	}
	for _, x := range n {
		for deadline := time.Now().Add(30 * time.Second); etcdstore.CountsOnLease(x.st); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("node %s still counts on its lease without etcd", x.addr)
			}
		}
	}
	if r, err := u.try(holder, "POST", "/services/svc/heartbeat", map[string]string{"token": prev}); err != nil || r.code < 500 {
		t.Errorf("the retry at the holder during the outage: %v %d %s; want a 5xx", err, r.code, r.body)
	}
	clock.Advance((timeout + 1) * time.Second) // every deadline passes
	if cut {
		cli := etcdtest.Client(t, c.Endpoints()...)
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			resp, err := cli.Get(t.Context(), etcdstore.NodeKeys(holder.st), clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err == nil && resp.Count == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the nodes' keys outlived their leases")
			}
		}
		part.Heal()
	} else {
		c.Restart()
	}
	for _, x := range n {
		for deadline := time.Now().Add(30 * time.Second); x.metric("svcreg_store_etcd_outages_total") < 1; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("node %s counted no outage", x.addr)
			}
		}
	}

	// Within the grace (the clock stands still), the retry at each node,
	// as a client whose every answer is lost sends it.
	retry := func(x *node, token string) string {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			r, err := u.try(x, "POST", "/services/svc/heartbeat", map[string]string{"token": token})
			switch {
			case err == nil && r.code == 200:
				var out struct{ Token string }
				r.json(&out)
				return out.Token
			case err == nil && r.code < 500:
				t.Fatalf("heartbeat of %s at node %s: %d %s", token, x.addr, r.code, r.body)
			case time.Now().After(deadline):
				t.Fatalf("heartbeat of %s at node %s: %v %d %s", token, x.addr, err, r.code, r.body)
			}
		}
	}
	var answers []string
	for _, x := range []*node{holder, other, peer, holder} {
		answers = append(answers, retry(x, prev))
	}
	// The holder answers from its memory. With its lease alive, so does
	// every node after it, by a hand-over; with its lease gone (every node
	// cut off, or, with etcd stopped, a renewal that came too late after
	// it started again), the first other node takes the token as one
	// minted after the stored one, and the nodes after it answer as it
	// did.
	if answers[0] != last {
		t.Errorf("the retry of the previous token at the holder got %s; want %s, its answer", answers[0], last)
	}
	lost := holder.metric("svcreg_store_node_lease_lost_total") > 0
	if cut && !lost {
		t.Fatal("the holder, cut off until its key was gone, did not count its lease lost")
	}
	want := last
	if lost {
		want = answers[1]
	}
	for i, a := range answers[1:] {
		if a != want {
			t.Errorf("retry %d of the previous token got %s; want %s (answers %q)", i+2, a, want, answers)
		}
	}
	// The client goes on from the last answer, at each node in turn, and
	// the grace ends meanwhile.
	tok = answers[len(answers)-1]
	for _, x := range []*node{other, peer, holder, other} {
		tok = retry(x, tok)
		clock.Advance(timeout / 2 * time.Second)
	}
	var got []string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		got = summary(u.events(other, marker))
		if slices.Contains(got, "service.timeout dead") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dead service did not time out after its grace; events %q", got)
		}
	}
	retry(peer, tok)
	for _, e := range summary(u.events(other, marker)) {
		if strings.HasPrefix(e, "service.timeout") && e != "service.timeout dead" {
			t.Errorf("timed out: %s", e)
		}
	}
}
