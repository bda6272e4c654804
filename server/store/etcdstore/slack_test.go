package etcdstore_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/etcdtest"
	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/server/store/etcdstore"
)

// The least safe slack covers the dead holder's lease and two etcd
// requests; a slack outside the bounds is refused before etcd is asked, and
// the default one is never less.
func TestHeartbeatSlackBounds(t *testing.T) {
	if got := etcdstore.MinHeartbeatSlack(etcdstore.Options{}); got != 15*time.Second {
		t.Errorf("MinHeartbeatSlack with the defaults = %v, want 15s", got)
	}
	if got := etcdstore.MinHeartbeatSlack(etcdstore.Options{NodeTTL: 2 * time.Second, RequestTimeout: time.Second}); got != 4*time.Second {
		t.Errorf("MinHeartbeatSlack(NodeTTL 2s, RequestTimeout 1s) = %v, want 4s", got)
	}
	for _, slack := range []time.Duration{14 * time.Second, etcdstore.MaxHeartbeatSlack + time.Second} {
		_, err := etcdstore.Open(t.Context(), nil, etcdstore.Options{HeartbeatSlack: slack})
		if err == nil || !strings.Contains(err.Error(), "heartbeat slack") {
			t.Errorf("Open with a slack of %v: %v, want it refused", slack, err)
		}
	}
	for _, slack := range []time.Duration{0, 15 * time.Second, etcdstore.MaxHeartbeatSlack} {
		if err := etcdstore.CheckHeartbeatSlack(etcdstore.Options{HeartbeatSlack: slack}); err != nil {
			t.Errorf("CheckHeartbeatSlack(%v): %v", slack, err)
		}
	}
	// A node TTL is granted in whole seconds.
	if got := etcdstore.MinHeartbeatSlack(etcdstore.Options{NodeTTL: 2500 * time.Millisecond, RequestTimeout: time.Second}); got != 5*time.Second {
		t.Errorf("MinHeartbeatSlack(NodeTTL 2.5s, RequestTimeout 1s) = %v, want 5s", got)
	}
	// The default slack is twice the timeout, at least a minute, and at
	// least the least safe one.
	long := etcdstore.Options{NodeTTL: 30 * time.Second, RequestTimeout: 16 * time.Second}
	for _, c := range []struct {
		opts    etcdstore.Options
		timeout int
		want    time.Duration
	}{
		{etcdstore.Options{}, 10, time.Minute},
		{etcdstore.Options{}, 45, 90 * time.Second},
		{long, 10, 62 * time.Second},
		{long, 40, 80 * time.Second},
	} {
		if got := etcdstore.DefaultHeartbeatSlack(c.opts, c.timeout); got != c.want {
			t.Errorf("DefaultHeartbeatSlack(NodeTTL %v, RequestTimeout %v, timeout %ds) = %v, want %v", c.opts.NodeTTL, c.opts.RequestTimeout, c.timeout, got, c.want)
		}
	}
	if err := etcdstore.CheckHeartbeatSlack(long); err != nil {
		t.Errorf("CheckHeartbeatSlack(NodeTTL 30s, RequestTimeout 16s, default slack): %v", err)
	}
	long.HeartbeatSlack = 61 * time.Second
	if err := etcdstore.CheckHeartbeatSlack(long); err == nil {
		t.Errorf("CheckHeartbeatSlack(NodeTTL 30s, RequestTimeout 16s, slack 61s): accepted, want it refused")
	}
}

// Open refuses a MaxTxnOps the transactions it sizes from it would not
// fit, before etcd is asked.
func TestOpenRefusesFewTxnOps(t *testing.T) {
	if _, err := etcdstore.Open(t.Context(), nil, etcdstore.Options{MaxTxnOps: etcdstore.MinTxnOps - 1}); err == nil || !strings.Contains(err.Error(), "MaxTxnOps") {
		t.Errorf("Open with MaxTxnOps %d: %v, want it refused", etcdstore.MinTxnOps-1, err)
	}
}

// A holder without a peer to copy to (copies off here) answers from memory
// only while the stored deadline is at least MinHeartbeatSlack past the
// token's: should it die, the client's next heartbeat, sent in time to
// another node, waits there for the holder's lease to expire and then
// makes its etcd calls, and only the stored deadline keeps the reapers
// from timing the service out meanwhile. Before this rule the holder
// answered up to the stored deadline itself, and a reaper timed the
// service out while the heartbeat waited.
func TestHolderWithoutPeerKeepsTheSlackAhead(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	clock := new(testserver.Clock)
	opts := etcdstore.Options{Clock: clock.Now, NodeTTL: 8 * time.Second, RequestTimeout: time.Second,
		ReapInterval: 20 * time.Millisecond, PeerListen: "off"}
	margin := etcdstore.MinHeartbeatSlack(opts) // 10 s
	opts.HeartbeatSlack = margin + 5*time.Second
	n := startNodes(t, c, 2, opts)
	u := login(t, n[0], "slack-ahead")
	tok := u.create(n[0], "svc", 3)
	tok = u.heartbeat(n[0], "svc", tok) // written: node 0 holds it; stored deadline 18 s from now
	// Heartbeats every 2.7 s of the 3 s timeout: the clock is the real
	// time plus the steps, so the real time a heartbeat takes (a written
	// one, on a loaded machine) comes out of the 0.3 s left, and at
	// 2.9 s one in some hundred runs of the whole suite ran past the
	// deadline before the next arrived. The first, third and fifth (2.7,
	// 8.1 and 13.5 s), whose tokens' deadlines are within the stored
	// deadline less the margin, are answered from memory; the second and
	// fourth (5.4 and 10.8 s: 0.4 s past that) are written, each moving
	// the stored deadline to 18 s from then. (Without the margin, all
	// five were answered from memory, the last 1.5 s inside the stored
	// deadline of 18 s.)
	for range 5 {
		clock.Advance(2700 * time.Millisecond)
		tok = u.heartbeat(n[0], "svc", tok)
	}
	if got := n[0].metric("svcreg_store_heartbeats_in_memory_total"); got != 3 {
		t.Errorf("node 0 answered %v heartbeats from memory, want 3", got)
	}
	n[0].crash()
	// The client's next heartbeat, 3 s before its token's deadline, at the
	// other node: it waits for node 0's lease (up to 8 s).
	r, err := u.try(n[1], "POST", "/services/svc/heartbeat", map[string]string{"token": tok})
	if err != nil {
		t.Fatal(err)
	}
	if r.code != 200 {
		t.Errorf("a heartbeat sent in time after its holder died: %d %s, want 200", r.code, r.body)
	}
	if got := summary(u.events(n[1], "")); !slices.Equal(got, []string{"service.join svc"}) {
		t.Errorf("events %q, want the join alone", got)
	}
}
