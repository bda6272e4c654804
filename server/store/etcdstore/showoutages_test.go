package etcdstore

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svcreg/svcreg/internal/etcdtest"
	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/server/store"
)

func debugLogger(b *testserver.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// gatedLease holds KeepAliveOnce until the channel in open, if any, is
// closed (or the caller's context ends).
type gatedLease struct {
	clientv3.Lease
	open atomic.Pointer[chan struct{}]
}

func (l *gatedLease) KeepAliveOnce(ctx context.Context, id clientv3.LeaseID) (*clientv3.LeaseKeepAliveResponse, error) {
	if ch := l.open.Load(); ch != nil {
		select {
		case <-*ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return l.Lease.KeepAliveOnce(ctx, id)
}

// Showing an outage in the node key does not hold up the lease's
// renewals: a write of the key that etcd takes 4 s to answer (within the
// request timeout; an election, a slow disk, a silent member) used to
// delay the next renewal past three quarters of the TTL, which recorded a
// second outage, and past the TTL, which lost the lease.
func TestSlowShowOfAnOutageKeepsTheLease(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := etcdtest.Client(t, c.Endpoints()...)
	gate := &gatedKV{KV: cli.KV, gate: func(n int32, ctx context.Context, send sendTxn) (*clientv3.TxnResponse, error) {
		if n == 1 {
			select {
			case <-time.After(4 * time.Second):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return send(ctx)
	}}
	var logs testserver.Buffer
	// The default TTL and request timeout, 5 s each.
	s, err := Open(t.Context(), swapped(cli, gate, nil), Options{Prefix: "/" + t.Name() + "/", Logger: debugLogger(&logs), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	key := s.k.node(s.nodeID)
	gate.key.Store(&key)
	// An outage of this node's: it no longer counts on its lease, and its
	// next renewal records the outage, which it then shows.
	s.lease.mu.Lock()
	s.lease.until = time.Now().Add(-time.Second)
	s.lease.mu.Unlock()
	deadline := time.Now().Add(15 * time.Second)
	for strings.Count(logs.String(), "etcd answers again after an outage") == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	// Three TTLs after the outage: a renewal held up behind the slow write
	// shows within two.
	time.Sleep(3 * DefaultNodeTTL)
	out := logs.String()
	if n, lost := strings.Count(out, "etcd answers again after an outage"), strings.Count(out, "node lease lost"); n != 1 || lost != 0 {
		t.Errorf("%d outages recorded (want 1), lease lost %d times (want 0)\n%s", n, lost, out)
	}
	resp, err := cli.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || !strings.Contains(string(resp.Kvs[0].Value), `"outages":[{`) {
		t.Errorf("the node key does not show the outage: %q", resp.Kvs)
	}
}

// A running node's first write of an outage to its key fails (times out):
// it writes it again at once, not a renewal later, and a node that joined
// meanwhile leaves the services in the outage to their grace until it has
// adopted it. The joining node used to time them out, once the first
// seconds after it joined were over, while the running node left them to
// their grace.
func TestJoinerWaitsForAShowThatFailedOnce(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	cliA := etcdtest.Client(t, c.Endpoints()...)
	gate := &gatedKV{KV: cliA.KV, gate: func(n int32, ctx context.Context, send sendTxn) (*clientv3.TxnResponse, error) {
		if n == 1 { // the first write of the node key after the outage
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return send(ctx)
	}}
	lease := &gatedLease{Lease: cliA.Lease}
	opts := Options{Prefix: "/" + t.Name() + "/", NodeTTL: 3 * time.Second, RequestTimeout: 3 * time.Second, ReapInterval: 100 * time.Millisecond, Registerer: prometheus.NewRegistry()}
	var logsA, logsJ testserver.Buffer
	optsA := opts
	optsA.Logger = debugLogger(&logsA)
	a, err := Open(t.Context(), swapped(cliA, gate, lease), optsA)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	go a.Run(t.Context())
	key := a.k.node(a.nodeID)
	gate.key.Store(&key)
	const timeout = 12
	if _, err := a.CreateService(t.Context(), "t", store.NewService{ID: "s", HeartbeatTimeout: timeout}); err != nil {
		t.Fatal(err)
	}
	c.Stop()
	time.Sleep((timeout + 1) * time.Second) // the deadline passes
	closed := make(chan struct{})
	lease.open.Store(&closed) // a's renewals wait, so that j finds a's key first
	c.Restart()
	var j *Store
	joined := make(chan error, 1)
	go func() {
		optsJ := opts
		optsJ.Logger = debugLogger(&logsJ)
		optsJ.Registerer = prometheus.NewRegistry()
		var err error
		j, err = Open(t.Context(), etcdtest.Client(t, c.Endpoints()...), optsJ)
		joined <- err
	}()
	time.Sleep(2 * time.Second)
	close(closed) // a renews: it records the outage, and its first show fails
	released := time.Now()
	if err := <-joined; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	go j.Run(t.Context())
	// a leaves the service to its grace until 12 s after its renewal; j's
	// first seconds are over after 6.
	time.Sleep(8 * time.Second)
	resp, err := cliA.Get(t.Context(), a.k.service("t", "s"))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		t.Errorf("the joining node timed out, %v after the outage, a service the running node leaves to its grace for %d s\nj:\n%s\na:\n%s",
			time.Since(released).Round(time.Millisecond), timeout, logsJ.String(), logsA.String())
	}
}
