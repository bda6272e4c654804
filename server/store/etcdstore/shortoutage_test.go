package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/etcdtest"
	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/server/store/etcdstore"
)

// TestEtcdBlipDuringAWrittenHeartbeat: etcd is out for a moment (every
// member stopped for 1.5 to 2.3 s), shorter than the nodes count on their
// leases, just as a held service's heartbeat must be written (its deadline
// past the stored one), and the deadline of the heartbeat before it, 1.2 s
// away, passes meanwhile. The client retries as the Go client does; the
// service must not time out. Before, the heartbeat's commit and its
// retry's failed (the retry's as etcd came back, while the node's client
// reconnected), no outage grace applied (the node never stopped counting
// on its lease), and the holder's reaper, waiting for the service since
// the old deadline passed, timed it out ahead of the next retry: in 6, 9
// and 3 of 10 rounds in three runs.
func TestEtcdBlipDuringAWrittenHeartbeat(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	clock := new(testserver.Clock)
	opts := etcdstore.Options{Clock: clock.Now, NodeTTL: 10 * time.Second, RequestTimeout: time.Second}
	slack := etcdstore.MinHeartbeatSlack(opts) // 12 s
	opts.HeartbeatSlack = slack
	n := startNodes(t, c, 2, opts)
	waitSeeing(t, n...)
	holder := n[0]
	peerOf(t, holder, n)
	u := login(t, holder, "etcd-blip")

	u.blipRounds(t, holder, n, func(id string) (string, func()) {
		tok := u.create(holder, id, blipTimeout)
		tok = u.heartbeat(holder, id, tok) // written: held, stored deadline timeout+slack from now
		// On schedule, answered from memory while the next deadline is
		// within the stored one.
		for k := time.Duration(1); k*blipInterval <= slack; k++ {
			clock.Advance(blipInterval)
			tok = u.heartbeat(holder, id, tok)
		}
		// The next heartbeat must be written; the last one's deadline is
		// 1.2 s away.
		clock.Advance(blipInterval)
		c.Stop()
		return tok, c.Restart
	})
}

// TestEtcdLeaderCrashDuringAFirstHeartbeat: the etcd leader of three
// members is killed (and started again 1.5 to 2.3 s later) just as a
// service created 1.8 s before sends its first heartbeat, on schedule. No
// node holds the service (a create stores its precise deadline, as does a
// hand-back, a graceful stop's too), so the heartbeat needs etcd, which
// elects a leader meanwhile; the deadline passes 1.2 s later, and the
// nodes count on their leases throughout (no outage). Before, a reaper
// (the other node's, which the client never asked) timed the service out
// at its stored deadline as soon as etcd committed again, before the
// client's retry got through at its node, which answered 404: with the
// defaults (5 s node TTL and request timeout), in 1 to 4 of 10 rounds in
// most runs. Now every node's reaper, whose etcd calls stalled or failed
// meanwhile, leaves the service its timeout from the election's end (a
// blip: blip.go).
func TestEtcdLeaderCrashDuringAFirstHeartbeat(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	clock := new(testserver.Clock)
	n := startNodes(t, c, 2, etcdstore.Options{Clock: clock.Now})
	waitSeeing(t, n...)
	at := n[0]
	t.Logf("the client heartbeats at node %s", at.addr)
	u := login(t, at, "leader-crash-first")

	u.blipRounds(t, at, n, func(id string) (string, func()) {
		tok := u.create(at, id, blipTimeout) // no holder, due in 3 s
		lead := c.Members[leader(t, c)]
		clock.Advance(blipInterval)                // the first heartbeat: due in 1.2 s
		syscall.Kill(-lead.Pid(), syscall.SIGKILL) // crashed: a member stopped gracefully hands its leadership over
		lead.Stop()
		return tok, func() {
			if err := lead.Start(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// blipRounds runs 10 rounds of an etcd blip at n, each with a service of
// its own: start makes service id ready for a heartbeat at n, stops etcd,
// and returns the token and what brings etcd back. The client's heartbeat
// must be answered and the service not time out (survivesBlip); the nodes
// settle before the test ends.
func (u *user) blipRounds(t *testing.T, n *node, nodes []*node, start func(id string) (token string, back func())) {
	t.Helper()
	const rounds = 10
	var timedOut []int
	for round := range rounds {
		id := fmt.Sprintf("svc%d", round)
		marker := u.listMarker(n)
		tok, back := start(id)
		if !u.survivesBlip(t, n, id, tok, marker, round, back) {
			timedOut = append(timedOut, round)
		}
	}
	settle(t, u, nodes)
	if len(timedOut) > 0 {
		t.Errorf("a live client's service timed out in %d of %d rounds %v", len(timedOut), rounds, timedOut)
	}
}

// survivesBlip heartbeats id with token at n as the Go client does while
// etcd is out, calls back after 1.5 to 2.3 s to end the outage, and
// reports whether the heartbeat was answered 200 and the service did not
// time out (the feed from marker has no timeout of it).
func (u *user) survivesBlip(t *testing.T, n *node, id, token, marker string, round int, back func()) bool {
	t.Helper()
	got := u.heartbeatAsClient(n, id, token)
	time.Sleep(time.Duration(1500+rand.IntN(800)) * time.Millisecond)
	back()
	r := <-got
	events := summary(u.events(n, marker))
	t.Logf("round %d: %s; node outages so far %v; events %q", round, r, n.metric("svcreg_store_etcd_outages_total"), events)
	return r.code == 200 && !slices.Contains(events, "service.timeout "+id)
}

// The blip tests' services: a 3 s timeout, heartbeated every 1.8 s
// (spec §11.2: 0.6 of the timeout).
const (
	blipTimeout  = 3
	blipInterval = 1800 * time.Millisecond
)

// clientResult is how a heartbeat of the Go client's Heartbeater ended.
type clientResult struct {
	code  int // 200, or the status of the error that ended it; 0 if none did within 30 s
	took  time.Duration
	trace []string // each attempt's result, by when it came, since the start
}

func (r clientResult) String() string {
	return fmt.Sprintf("the heartbeat got %d after %d attempts in %v %v", r.code, len(r.trace), r.took.Round(time.Millisecond), r.trace)
}

// heartbeatAsClient heartbeats id from token at n with the Go client's
// Heartbeater (registry/heartbeat.go), as a registered service does: the
// first heartbeat goes at once; an attempt with no answer in time is given
// up and sent again, a 5xx retried after its backoff. The channel gets the
// first answer that is not retried: 200, or the error that ends the
// Heartbeater (404) or that it would go on retrying past the service's
// deadline (another 4xx).
func (u *user) heartbeatAsClient(n *node, id, token string) <-chan clientResult {
	u.t.Helper()
	got := make(chan clientResult, 1)
	c, err := registry.New(registry.Config{URL: n.URL + "/v1.0", Token: u.token, Tenant: u.tenant, HTTPClient: clientFor(n.URL)})
	if err != nil {
		u.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	start := time.Now()
	var res clientResult
	var once sync.Once
	end := func(code int) {
		once.Do(func() {
			res.code, res.took = code, time.Since(start)
			got <- res
			cancel()
		})
	}
	h := c.StartHeartbeat(ctx, id, token, blipTimeout, registry.HeartbeatOptions{OnBeat: func(b registry.Beat) {
		var e *registry.Error
		answer := "200"
		switch {
		case b.Err == nil:
		case errors.As(b.Err, &e):
			answer = strconv.Itoa(e.StatusCode)
		default:
			answer = "no answer"
		}
		res.trace = append(res.trace, fmt.Sprintf("%v: %s", b.Time.Sub(start).Round(time.Millisecond), answer))
		switch {
		case b.Err == nil:
			end(200)
		case e != nil && e.StatusCode < 500 && e.StatusCode != http.StatusTooManyRequests:
			end(e.StatusCode)
		}
	}})
	go func() {
		<-h.Done()
		end(0)
	}()
	return got
}

// settle waits until every node writes again after etcd came back, before
// the nodes stop: leaving the cluster gets a request timeout, 1 s in some
// tests.
func settle(t *testing.T, u *user, nodes []*node) {
	t.Helper()
	for _, x := range nodes {
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if r, err := u.try(x, "PUT", "/configuration/settled", map[string]string{"value": "v"}); err == nil && r.code == 204 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %s does not write after etcd came back", x.addr)
			}
		}
	}
}
