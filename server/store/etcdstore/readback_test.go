package etcdstore_test

import (
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testserver"
)

// A node that reads back a lost heartbeat commit of a service deleted
// while the node was cut off from etcd does not take that read for the
// service's next incarnation: a heartbeat of the service created again
// answers with the next token, not 404.
func TestReadBackOfDeletedServiceDoesNotHideItsNextIncarnation(t *testing.T) {
	t.Parallel()
	clock := new(testserver.Clock)
	part, nodes := cutOffPair(t, clock, 2*time.Second)
	u := login(t, nodes[0], "lost-then-deleted")
	tok := u.create(nodes[0], "svc", 3)
	u.loseHeartbeatAnswer(nodes[0], "svc", tok)
	part.Cut()
	t.Logf("delete: %d", u.deleteEventually(nodes[1], "svc", 204, 404))
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
