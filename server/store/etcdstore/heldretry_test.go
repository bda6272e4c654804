package etcdstore_test

import (
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testserver"
)

// A holder cut off from etcd for less than its lease, whose peer handed a
// service over from its copy meanwhile to a delete at another node, does
// not answer a retry of the service's previous token from its memory:
// the token went with the service.
func TestRetryOfATokenOfAServiceDeletedFromItsCopy(t *testing.T) {
	t.Parallel()
	clock := new(testserver.Clock)
	part, nodes := cutOffPair(t, clock, 4*time.Second)
	u := login(t, nodes[0], "deleted-from-copy")
	var prev string
	tok := u.create(nodes[0], "svc", 30)
	for range 3 { // held at node 0, answered from its memory
		prev, tok = tok, u.heartbeat(nodes[0], "svc", tok)
	}
	part.Cut()
	u.deleteEventually(nodes[1], "svc", 204)
	part.Heal()
	time.Sleep(time.Second)
	if v := nodes[0].metric("svcreg_store_node_lease_lost_total"); v != 0 {
		t.Fatalf("node 0 lost its lease %v times; the test needs it alive", v)
	}
	for i, n := range nodes {
		if r, err := u.try(n, "POST", "/services/svc/heartbeat", map[string]string{"token": prev}); err != nil || r.code != 404 {
			t.Errorf("the deleted service's previous token, again at node %d: %v %d %s; want 404", i, err, r.code, r.body)
		}
	}
}
