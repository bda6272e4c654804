package etcdstore_test

import (
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/server/store/etcdstore"
)

// A node that reads back a lost heartbeat commit of a service deleted
// while the node was cut off from etcd does not take that read for the
// service's next incarnation: a heartbeat of the service created again
// answers with the next token, not 404.
func TestReadBackOfDeletedServiceDoesNotHideItsNextIncarnation(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	clock := new(testserver.Clock)
	opts := etcdstore.Options{Prefix: registryPrefix(t), Clock: clock.Now, ReapInterval: 100 * time.Millisecond, NodeTTL: 2 * time.Second, RequestTimeout: time.Second, HeartbeatSlack: time.Minute}
	part := newPartition(t, c.Endpoints())
	nodes := []*node{startNode(t, part.Endpoints, opts), startNode(t, c.Endpoints(), opts)}
	u := login(t, nodes[0], "lost-then-deleted")
	tok := u.create(nodes[0], "svc", 3)
	nodes[0].mu.Lock()
	etcdstore.LoseNextHeartbeatAnswer(nodes[0].st)
	nodes[0].mu.Unlock()
	if r, err := u.try(nodes[0], "POST", "/services/svc/heartbeat", map[string]string{"token": tok}); err != nil || r.code != 503 {
		t.Fatalf("heartbeat whose answer was lost: %v %d %s; want 503", err, r.code, r.body)
	}
	part.Cut()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		r, err := u.try(nodes[1], "DELETE", "/services/svc", nil)
		if err == nil && (r.code == 204 || r.code == 404) {
			t.Logf("delete: %d", r.code)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("delete: %v %d %s", err, r.code, r.body)
		}
	}
	time.Sleep(time.Second)
	part.Heal()
	waitSeeing(t, nodes[0])
	// Past the lost heartbeat's deadline: node 0 reads its record back
	// and finds the service gone.
	clock.Advance(3500 * time.Millisecond)
	time.Sleep(time.Second)
	tok = u.create(nodes[1], "svc", 3)
	for i := range 3 {
		r, err := u.try(nodes[0], "POST", "/services/svc/heartbeat", map[string]string{"token": tok})
		if err != nil || r.code != 200 {
			t.Fatalf("heartbeat %d of the service created again, at node 0: %v %d %s", i, err, r.code, r.body)
		}
		var out struct{ Token string }
		r.json(&out)
		tok = out.Token
	}
}
