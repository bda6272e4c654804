package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svcreg/svcreg/internal/etcdtest"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/server/store"
)

// TestCopyHandOverEndsWithThePeersLease: a holder's peer starts handing a
// service over from its copy (a heartbeat at a third node asked, and the
// holder, dead, does not answer), and its write's outcome is unknown;
// then the peer's own node key loses its lease. No write of that hand-over,
// the one in flight nor the reaper's retry, may commit from then on (the
// holder's next peer has no fence against them), and the copy, its
// deadline passed meanwhile, is not timed out instead. The heartbeat that
// asked goes on once the holder's lease is gone, and the service's next
// heartbeats work at every node, the old peer too; nothing times out.
func TestCopyHandOverEndsWithThePeersLease(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := etcdtest.Client(t, c.Endpoints()...)
	ctx := t.Context()
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	opts := Options{Prefix: "/peer-lease-gone/", Clock: now, ReapInterval: -1, NodeTTL: 6 * time.Second, RequestTimeout: 2 * time.Second}

	// The peer's hand-over writes of the service are held: each fails at
	// once, as one that timed out, and the test sends it later.
	var (
		mu      sync.Mutex
		stashed []sendTxn
		holding atomic.Bool
	)
	holding.Store(true)
	gate := &gatedKV{KV: cli.KV, gate: func(_ int32, ctx context.Context, send sendTxn) (*clientv3.TxnResponse, error) {
		if !holding.Load() {
			return send(ctx)
		}
		mu.Lock()
		stashed = append(stashed, send)
		mu.Unlock()
		return nil, context.DeadlineExceeded
	}}
	hbKeyOf := func(s *Store) string { return s.k.heartbeat("t", "svc") }

	// The holder and its peer take copies; the third node does not, so
	// that the two are each other's peers.
	peerOpts, otherOpts := opts, opts
	peerOpts.PeerListen = "127.0.0.1:0"
	otherOpts.PeerListen = ""
	stores := make([]*Store, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i, o := range []Options{peerOpts, peerOpts, otherOpts} {
		client := cli
		if i == 1 {
			client = swapped(cli, gate, nil)
		}
		wg.Go(func() { stores[i], errs[i] = Open(ctx, client, o) })
	}
	wg.Wait()
	for i, s := range stores {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		t.Cleanup(func() { s.Close() })
	}
	holder, peer, other := stores[0], stores[1], stores[2]
	k := hbKey{"t", "svc"}
	key := hbKeyOf(peer)
	gate.key.Store(&key)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if id, _ := PeerOf(holder); id == peer.nodeID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the holder chose no peer")
		}
	}

	tok, err := holder.CreateService(ctx, "t", store.NewService{ID: "svc", HeartbeatTimeout: 10})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if tok, err = holder.Heartbeat(ctx, "t", "svc", tok); err != nil {
			t.Fatal(err)
		}
	}
	copied := func() (copyEntry, bool) {
		peer.copies.mu.Lock()
		defer peer.copies.mu.Unlock()
		e := peer.copies.m[k]
		if e == nil {
			return copyEntry{}, false
		}
		return *e, true
	}
	if e, ok := copied(); !ok || e.state.Cur != tok {
		t.Fatalf("the peer has no copy of the holder's last answer: %+v", e)
	}

	// The holder dies; its lease is kept alive until the test lets it go,
	// so that the heartbeat at the third node waits for a hand-over.
	holderLease, _ := holder.lease.get()
	Crash(holder)
	kctx, kcancel := context.WithCancel(ctx)
	defer kcancel()
	alive, err := cli.KeepAlive(kctx, holderLease)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range alive {
		}
	}()
	type answer struct {
		tok string
		err error
	}
	answered := make(chan answer, 1)
	go func() {
		next, err := other.Heartbeat(ctx, "t", "svc", tok)
		answered <- answer{next, err}
	}()

	// The peer hands the service over from its copy; the write's outcome
	// is unknown.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if e, _ := copied(); e.pendingRel != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the peer did not start a hand-over from its copy")
		}
	}
	hbResp, err := cli.Get(ctx, key)
	if err != nil || len(hbResp.Kvs) != 1 {
		t.Fatalf("read the heartbeat key: %v", err)
	}
	rev := hbResp.Kvs[0].ModRevision

	// The peer's node key loses its lease.
	peerLease, _ := peer.lease.get()
	if _, err := cli.Revoke(ctx, peerLease); err != nil {
		t.Fatal(err)
	}
	holding.Store(false)
	mu.Lock()
	late := stashed
	stashed = nil
	mu.Unlock()
	if len(late) == 0 {
		t.Fatal("no hand-over write of the peer's was held")
	}
	for i, send := range late {
		resp, err := send(ctx)
		if err == nil && resp.Succeeded {
			t.Errorf("the peer's hand-over %d, sent before its lease was revoked, committed after", i+1)
		}
	}
	// The copy's deadline passes; the peer's reaper tries the hand-over
	// again, and never a timeout.
	if e, _ := copied(); !now().Add(11 * time.Second).After(time.Unix(0, e.state.Deadline)) {
		t.Fatalf("the copy's deadline %v is too far", time.Unix(0, e.state.Deadline))
	}
	offset.Add(int64(11 * time.Second))
	for range 2 {
		if err := peer.reapCopies(ctx, ""); err != nil {
			t.Fatal(err)
		}
	}
	if resp, err := cli.Get(ctx, key); err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].ModRevision != rev {
		t.Fatalf("the heartbeat key was written after the peer's lease was revoked, while the heartbeat waits: %v %v", err, resp.Kvs)
	}
	if _, err := other.Service(ctx, "t", "svc"); err != nil {
		t.Fatalf("the service, after the peer's lease was revoked: %v", err)
	}

	// The holder's lease goes: the heartbeat that asked goes on.
	kcancel()
	if _, err := cli.Revoke(ctx, holderLease); err != nil {
		t.Fatal(err)
	}
	var a answer
	select {
	case a = <-answered:
	case <-time.After(60 * time.Second):
		t.Fatal("the heartbeat waiting for the hand-over got no answer")
	}
	if a.err != nil {
		if !errors.Is(a.err, store.ErrUnavailable) {
			t.Fatalf("the heartbeat waiting for the hand-over: %v; want a token or a retryable error", a.err)
		}
		if a.tok, a.err = other.Heartbeat(ctx, "t", "svc", tok); a.err != nil {
			t.Fatalf("the heartbeat's retry: %v", a.err)
		}
	}
	if resp, err := cli.Get(ctx, key); err == nil && len(resp.Kvs) == 1 {
		var hb hbRecord
		if json.Unmarshal(resp.Kvs[0].Value, &hb) == nil && hb.Prev != tok {
			t.Errorf("the heartbeat key holds %+v; want the heartbeat of %s committed at the third node", hb, tok)
		}
	}
	// The old peer registers again; the next heartbeats work there and at
	// the third node.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if l, ok := peer.lease.get(); ok && l != peerLease {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the old peer did not register again")
		}
	}
	next := a.tok
	for i, s := range []*Store{peer, other, peer} {
		if next, err = s.Heartbeat(ctx, "t", "svc", next); err != nil {
			t.Fatalf("heartbeat %d after the hand-over: %v", i+1, err)
		}
	}
	page, err := other.Events(ctx, "t", store.EventQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	joined := false
	for _, ev := range page.Values {
		switch ev.Type {
		case registry.ServiceJoin:
			joined = true
		case registry.ServiceTimeout:
			t.Errorf("timed out: %s", ev.JSON)
		}
	}
	if !joined {
		t.Errorf("the feed has no join: %+v", page.Values)
	}
}
