package etcdstore

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svcreg/svcreg/internal/etcdtest"
	"github.com/svcreg/svcreg/internal/testserver"
)

// steppedWatcher lets a test cut the first watch (as a member going away
// would) and hold the set-up of the later ones until it lets them go.
type steppedWatcher struct {
	clientv3.Watcher
	n     atomic.Int32
	key   string          // only the watches of key are stepped
	cut   chan struct{}   // closes the first watch's channel
	gates []chan struct{} // the n-th watch (from 2) waits for gates[n-2]
}

func (w *steppedWatcher) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	if key != w.key {
		return w.Watcher.Watch(ctx, key, opts...)
	}
	n := int(w.n.Add(1))
	if n == 1 {
		return relay(ctx, w.Watcher.Watch(ctx, key, opts...), w.cut, nil)
	}
	if i := n - 2; i < len(w.gates) {
		select {
		case <-w.gates[i]:
		case <-ctx.Done():
		}
	}
	return w.Watcher.Watch(ctx, key, opts...)
}

// A node's account watch resumes at a revision etcd compacted meanwhile:
// the node wakes every long-poll and watches again. A long-poll that woke,
// read the feed and waited again before that new watch was set up still
// hears of another node's commit in between: the watch starts again from
// the oldest revision etcd keeps, not from now.
func TestWatchAfterCompactionMissesNoCommit(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := etcdtest.Client(t, c.Endpoints()...)
	ctx := t.Context()
	opts := Options{Prefix: "/watch-compaction/", RequestTimeout: 2 * time.Second, ReapInterval: -1}
	w := &steppedWatcher{Watcher: cli.Watcher, key: opts.Prefix + "acct/", cut: make(chan struct{}), gates: []chan struct{}{make(chan struct{}), make(chan struct{})}}
	var logBuf testserver.Buffer
	aOpts := opts
	aOpts.Logger = slog.New(slog.NewTextHandler(&logBuf, nil))
	a, b := watchedPair(t, cli, w, aOpts, opts)

	if err := b.SetConfig(ctx, "t", "k0", "v"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Account(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	ch1, _ := a.Changed(ctx, "t")

	close(w.cut) // node a's watch is cut; its next one waits on gates[0]
	if err := b.SetConfig(ctx, "t", "k1", "v"); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Put(ctx, "probe", "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	close(w.gates[0]) // resumes at a compacted revision: every long-poll wakes

	select {
	case <-ch1:
	case <-time.After(10 * time.Second):
		t.Fatal("no wake-up after the watch fell behind compaction")
	}
	if !strings.Contains(logBuf.String(), "fell behind etcd compaction") {
		t.Fatalf("the watch did not resume at a compacted revision; log:\n%s", logBuf.String())
	}
	// The woken long-poll takes its channel again and reads the feed
	// (a.Events), finds nothing newer, waits. Meanwhile (node a's backoff
	// before it watches again) node b commits.
	if _, err := a.Head(ctx, "t"); err != nil { // a knows k1's commit
		t.Fatal(err)
	}
	ch2, _ := a.Changed(ctx, "t")
	if err := b.SetConfig(ctx, "t", "k2", "v"); err != nil {
		t.Fatal(err)
	}
	close(w.gates[1]) // node a watches again
	select {
	case <-ch2:
	case <-time.After(5 * time.Second):
		t.Error("a long-poll woken by the compaction and waiting again never woke on another node's commit made before the node watched again")
	}
}

// batchCutWatcher cuts the first watch of key when the test says, holds
// the second until the test lets it go, and ends the second after its
// first batch of events (a member lost while the watch catches up).
type batchCutWatcher struct {
	clientv3.Watcher
	key     string
	n       atomic.Int32
	cut     chan struct{}
	second  chan struct{}
	firstOf chan int64 // the second watch's first batch: its last event's revision
	header  chan int64 // and its header's
}

func (w *batchCutWatcher) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	if key != w.key {
		return w.Watcher.Watch(ctx, key, opts...)
	}
	n := w.n.Add(1)
	if n == 2 {
		select {
		case <-w.second:
		case <-ctx.Done():
		}
	}
	in := w.Watcher.Watch(ctx, key, opts...)
	switch n {
	case 1:
		return relay(ctx, in, w.cut, nil)
	case 2:
		return relay(ctx, in, nil, func(r clientv3.WatchResponse) bool {
			if len(r.Events) == 0 {
				return false
			}
			w.firstOf <- r.Events[len(r.Events)-1].Kv.ModRevision
			w.header <- r.Header.Revision
			return true
		})
	}
	return in
}

// relay passes in's replies on until in closes, ctx ends, cut closes (a
// member going away), or last, if not nil, says the reply it was given
// is the last.
func relay(ctx context.Context, in clientv3.WatchChan, cut <-chan struct{}, last func(clientv3.WatchResponse) bool) clientv3.WatchChan {
	out := make(chan clientv3.WatchResponse)
	go func() {
		defer close(out)
		for {
			select {
			case r, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- r:
				case <-ctx.Done():
					return
				}
				if last != nil && last(r) {
					return
				}
			case <-cut:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// A watch that resumes after more than 1000 revisions of account changes
// gets them from etcd in batches, each with the member's head revision in
// its header, not its last event's. If the watch ends after its first
// batch (the member lost again, a leader election), the next one starts
// after the last event delivered, and so delivers the changes between: a
// long-poll on a tenant written there is woken.
func TestWatchResumesAfterTheLastEventDelivered(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := etcdtest.Client(t, c.Endpoints()...)
	ctx := t.Context()
	opts := Options{Prefix: "/watch-batches/", RequestTimeout: 2 * time.Second, ReapInterval: -1}
	w := &batchCutWatcher{Watcher: cli.Watcher, key: opts.Prefix + "acct/", cut: make(chan struct{}), second: make(chan struct{}),
		firstOf: make(chan int64, 1), header: make(chan int64, 1)}
	a, b := watchedPair(t, cli, w, opts, opts)
	if err := b.SetConfig(ctx, "t", "k0", "v"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Head(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	ch, _ := a.Changed(ctx, "t")

	close(w.cut) // node a's watch is cut; the next waits
	// Other tenants' writes: 1100 account changes (raw puts stand in for
	// them; node a knows none of those tenants).
	for i := range 1100 {
		if _, err := cli.Put(ctx, opts.Prefix+"acct/other", `{"created_at":1}`); err != nil {
			t.Fatal(i, err)
		}
	}
	if err := b.SetConfig(ctx, "t", "k1", "v"); err != nil {
		t.Fatal(err)
	}
	close(w.second)
	last, header := <-w.firstOf, <-w.header
	t.Logf("first batch: events to revision %d, header revision %d", last, header)
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Error("a long-poll never woke on a commit made while the watch was away: the watch resumed past it")
	}
}

// watchedPair opens two nodes on cli: a, whose watches go through w, and
// b, which writes.
func watchedPair(t *testing.T, cli *clientv3.Client, w clientv3.Watcher, aOpts, bOpts Options) (a, b *Store) {
	t.Helper()
	wc := swapped(cli, nil, nil)
	wc.Watcher = w
	open := func(c *clientv3.Client, o Options) *Store {
		s, err := Open(t.Context(), c, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	return open(wc, aOpts), open(cli, bOpts)
}
