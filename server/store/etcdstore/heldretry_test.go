package etcdstore_test

import (
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/server/store/etcdstore"
)

// A holder cut off from etcd for less than its lease, whose peer handed a
// service over from its copy meanwhile to a delete at another node, does
// not answer a retry of the service's previous token from its memory:
// the token went with the service.
func TestRetryOfATokenOfAServiceDeletedFromItsCopy(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	clock := new(testserver.Clock)
	opts := etcdstore.Options{Prefix: registryPrefix(t), Clock: clock.Now, ReapInterval: 100 * time.Millisecond, NodeTTL: 4 * time.Second, RequestTimeout: time.Second, HeartbeatSlack: time.Minute}
	part := newPartition(t, c.Endpoints())
	nodes := []*node{startNode(t, part.Endpoints, opts), startNode(t, c.Endpoints(), opts)}
	u := login(t, nodes[0], "deleted-from-copy")
	var prev string
	tok := u.create(nodes[0], "svc", 30)
	for range 3 { // held at node 0, answered from its memory
		prev, tok = tok, u.heartbeat(nodes[0], "svc", tok)
	}
	part.Cut()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		r, err := u.try(nodes[1], "DELETE", "/services/svc", nil)
		if err == nil && r.code == 204 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("delete: %v %d %s", err, r.code, r.body)
		}
	}
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
