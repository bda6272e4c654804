package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/svcreg/svcreg/internal/etcdtest"
	"github.com/svcreg/svcreg/server/store"
)

// TestHedgedHeartbeatFindsItsOwnWrite: a heartbeat batch's first send
// commits, but its answer is slow to come back; the hedge, sent to another
// member meanwhile, finds the keys changed (by the batch itself) and is
// answered first. The node must take the write for its own: it holds the
// service and times it out at its deadline, not at the stored one, a
// slack later, as it would a service it does not hold. Also when another
// node updated the service between the sends (its metadata: no
// hand-over), so that the service key is not as the write expected.
func TestHedgedHeartbeatFindsItsOwnWrite(t *testing.T) {
	t.Parallel()
	for _, updated := range []bool{false, true} {
		name := "keys as written"
		if updated {
			name = "service updated between the sends"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			hedgedFindsOwnWrite(t, updated)
		})
	}
}

func hedgedFindsOwnWrite(t *testing.T, updated bool) {
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := etcdtest.Client(t, c.Endpoints()...)
	ctx := t.Context()
	svcKey := "" // set once the service exists
	var between func()
	if updated {
		between = func() { // another node's update of the service's metadata
			if g, err := cli.Get(context.Background(), svcKey); err != nil || len(g.Kvs) != 1 {
				t.Errorf("read the service key: %v", err)
			} else if _, err := cli.Put(context.Background(), svcKey, string(g.Kvs[0].Value)); err != nil {
				t.Error(err)
			}
		}
	}
	w := newTwinSends(cli.KV, true, between)
	opts := Options{Prefix: "/hedged-own-write/", ReapInterval: 100 * time.Millisecond, NodeTTL: 2 * time.Second, RequestTimeout: 2 * time.Second}
	opts.HeartbeatSlack = MinHeartbeatSlack(opts)
	s := w.open(t, cli, opts)
	const timeout = 3 * time.Second
	tok, err := s.CreateService(ctx, "t", store.NewService{ID: "s", HeartbeatTimeout: int(timeout / time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	svcKey = s.k.service("t", "s")
	// The first heartbeat makes the node the holder; with the least
	// slack, the next must be written too.
	if tok, err = s.Heartbeat(ctx, "t", "s", tok); err != nil {
		t.Fatal(err)
	}
	w.gate(s.k.heartbeat("t", "s"))
	sent := time.Now()
	if _, err := s.Heartbeat(ctx, "t", "s", tok); err != nil {
		t.Fatal(err)
	}
	w.check(t, "the heartbeat write")
	if s.hb.held("t", "s") == nil {
		t.Error("the node does not hold the service it wrote the heartbeat of")
	}
	// Not heartbeated again, the service times out at its deadline,
	// within the reaper's interval.
	deadline := sent.Add(timeout)
	for {
		_, err := s.Service(ctx, "t", "s")
		var nf *store.NotFoundError
		if errors.As(err, &nf) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline.Add(time.Second)) {
			t.Fatalf("the service is still there %v past its deadline: the node does not hold it", time.Since(deadline).Round(time.Millisecond))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHedgedHandOverFindsItsOwnWrite: a holder's hand-over whose first
// send committed unanswered, its hedge then finding the heartbeat key
// changed, is its own: the node hands the service over once, and knows
// the revision it wrote at (the next write is conditional on it).
func TestHedgedHandOverFindsItsOwnWrite(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := etcdtest.Client(t, c.Endpoints()...)
	ctx := t.Context()
	w := newTwinSends(cli.KV, false, nil)
	s := w.open(t, cli, Options{Prefix: "/hedged-hand-over/", RequestTimeout: 2 * time.Second})
	tok, err := s.CreateService(ctx, "t", store.NewService{ID: "s", HeartbeatTimeout: 30})
	if err != nil {
		t.Fatal(err)
	}
	if tok, err = s.Heartbeat(ctx, "t", "s", tok); err != nil { // the node holds it
		t.Fatal(err)
	}
	hbKey := s.k.heartbeat("t", "s")
	w.gate(hbKey)
	if err := s.release(ctx, "t", "s", asker{}); err != nil {
		t.Fatal(err)
	}
	w.check(t, "the hand-over")
	g, err := cli.Get(ctx, hbKey)
	if err != nil || len(g.Kvs) != 1 {
		t.Fatalf("read the heartbeat key: %v", err)
	}
	var hb hbRecord
	if err := json.Unmarshal(g.Kvs[0].Value, &hb); err != nil {
		t.Fatal(err)
	}
	if hb.Holder != "" || hb.Loose {
		t.Errorf("heartbeat state after the hand-over: holder %q, loose %v; want the exact state, no holder", hb.Holder, hb.Loose)
	}
	e := s.hb.lock("t", "s", s.now())
	rev, mine := e.hbRev, e.mine
	e.mu.Unlock()
	if rev != g.Kvs[0].ModRevision || mine {
		t.Errorf("the node's memory: revision %d, holds it %v; want the key's %d, not held", rev, mine, g.Kvs[0].ModRevision)
	}
	var m dto.Metric
	if err := s.metrics.handovers.Write(&m); err != nil {
		t.Fatal(err)
	}
	if n := m.GetCounter().GetValue(); n != 1 {
		t.Errorf("hand-overs counted: %v, want 1", n)
	}
	// The token handed back works at the next heartbeat.
	if _, err := s.Heartbeat(ctx, "t", "s", tok); err != nil {
		t.Errorf("heartbeat after the hand-over: %v", err)
	}
}

// twinSends are the two sends of one write, each through a gatedKV over
// kv (nested as gatedKV's) once gate sets the key it writes: the first
// commits at once, calls between (if not nil), and answers only when it
// is no longer waited for, once the hedge's answer was taken; the hedge
// goes once the first committed, so it finds the keys changed. Later
// writes of the key go as they come.
type twinSends struct {
	slow, hedge    *gatedKV
	hedgeCommitted atomic.Bool
}

func newTwinSends(kv clientv3.KV, nested bool, between func()) *twinSends {
	w := &twinSends{}
	committed := make(chan struct{}) // the first send's commit is in
	w.slow = &gatedKV{KV: kv, nested: nested, gate: func(n int32, ctx context.Context, send sendTxn) (*clientv3.TxnResponse, error) {
		resp, err := send(ctx)
		if n > 1 {
			return resp, err
		}
		if between != nil {
			between()
		}
		close(committed)
		<-ctx.Done()
		return resp, err
	}}
	w.hedge = &gatedKV{KV: kv, nested: nested, gate: func(n int32, ctx context.Context, send sendTxn) (*clientv3.TxnResponse, error) {
		if n == 1 {
			<-committed
		}
		resp, err := send(ctx)
		if err == nil {
			ok := resp.Succeeded
			if nested { // a heartbeat batch of one
				ok = len(resp.Responses) == 1 && resp.Responses[0].GetResponseTxn().GetSucceeded()
			}
			w.hedgeCommitted.Store(ok)
		}
		return resp, err
	}}
	return w
}

// open opens and runs a store with opts whose transactions go through
// the first send's gate and whose hedges through the hedge's.
func (w *twinSends) open(t *testing.T, cli *clientv3.Client, opts Options) *Store {
	t.Helper()
	s, err := Open(t.Context(), swapped(cli, w.slow, nil), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	hedgeTo(s, w.hedge)
	go s.Run(t.Context())
	return s
}

// gate makes the next write of key go through the two sends.
func (w *twinSends) gate(key string) {
	w.slow.key.Store(&key)
	w.hedge.key.Store(&key)
}

// check fails the test unless what was sent once through the client and
// once hedged, the hedge finding the first's commit.
func (w *twinSends) check(t *testing.T, what string) {
	t.Helper()
	if n, h := w.slow.n.Load(), w.hedge.n.Load(); n != 1 || h != 1 || w.hedgeCommitted.Load() {
		t.Fatalf("sends of %s: %d through the client, %d hedged (which committed: %v); want 1 and 1, the hedge finding the first's commit",
			what, n, h, w.hedgeCommitted.Load())
	}
}

// hedgeTo makes s hedge to kvs, stand-ins for members, in that order, and
// returns their memberConns.
func hedgeTo(s *Store, kvs ...clientv3.KV) []*memberConn {
	members := make([]*memberConn, len(kvs))
	for i, kv := range kvs {
		members[i] = &memberConn{kv: kv}
	}
	s.hedgeTo.Store(&members)
	return members
}

// standIn is a KV whose transactions succeed, fail with err, or (hang, or
// the first hangFirst of them) wait until their context ends, after delay.
type standIn struct {
	clientv3.KV
	hang      bool
	hangFirst int32
	delay     time.Duration // before it answers
	err       error
	sends     atomic.Int32
}

func (k *standIn) Txn(ctx context.Context) clientv3.Txn { return &standInTxn{k: k, ctx: ctx} }

type standInTxn struct {
	clientv3.Txn
	k   *standIn
	ctx context.Context
}

func (t *standInTxn) If(...clientv3.Cmp) clientv3.Txn  { return t }
func (t *standInTxn) Then(...clientv3.Op) clientv3.Txn { return t }
func (t *standInTxn) Else(...clientv3.Op) clientv3.Txn { return t }
func (t *standInTxn) Commit() (*clientv3.TxnResponse, error) {
	n := t.k.sends.Add(1)
	select {
	case <-time.After(t.k.delay):
	case <-t.ctx.Done():
		return nil, t.ctx.Err()
	}
	if t.k.hang || n <= t.k.hangFirst {
		<-t.ctx.Done()
		return nil, t.ctx.Err()
	}
	if t.k.err != nil {
		return nil, t.k.err
	}
	return &clientv3.TxnResponse{Succeeded: true}, nil
}

// TestHedgedTxn: a send that hangs is sent again to each member in turn
// until one answers, then once more to each (as to a cluster whose leader
// fell silent, whose members answer only once they elected another); sends
// that fail at once are sent on at once, then at a pace, and the last
// error is the answer once every member had two; a refusal sends nothing
// more, but a send on its way may still answer, and is the answer
// otherwise; a store whose client knows one member sends nothing more;
// while a member hangs, the first send goes to another member, not
// through the client.
func TestHedgedTxn(t *testing.T) {
	t.Parallel()
	unavailable := status.Error(codes.Unavailable, "etcdserver: no leader")
	for _, tc := range []struct {
		name     string
		first    *standIn
		members  []*standIn
		answered bool
		sends    int
		hung     []bool // per member, if given: tried last from now on
		hungWas  int    // a member (counted from 1) marked hung before
	}{
		{"first hangs, then a member", &standIn{hang: true}, []*standIn{{hang: true}, {}, {}}, true, 3, nil, 0},
		// The first member answers its second send: its first, which
		// that overtook, does not count against it.
		{"every member hangs, then answers", &standIn{hang: true}, []*standIn{{hangFirst: 1}, {hangFirst: 1}}, true, 4, []bool{false, true}, 0},
		{"all fail at once", &standIn{err: unavailable}, []*standIn{{err: unavailable}, {err: unavailable}}, false, 5, nil, 0},
		{"refused, not sent again", &standIn{err: status.Error(codes.InvalidArgument, "bad")}, []*standIn{{}}, false, 1, nil, 0},
		// The first send's answer comes after the hedge's refusal.
		{"refused while another is on its way", &standIn{delay: 300 * time.Millisecond}, []*standIn{{err: status.Error(codes.ResourceExhausted, "etcdserver: too many requests")}, {}}, true, 2, nil, 0},
		{"one member", &standIn{hang: true}, nil, false, 1, nil, 0},
		// The refusal is the answer, not the hanging send's timeout
		// (a token's put refused for its lease tries another lease).
		{"refused while another hangs", &standIn{hang: true}, []*standIn{{err: status.Error(codes.NotFound, "etcdserver: requested lease not found")}, {}}, false, 2, nil, 0},
		// The client's balancer would send it to the member that hangs.
		{"a member hangs: the first send to another", &standIn{hang: true}, []*standIn{{}, {hang: true}}, true, 1, nil, 2},
		// No member first in order answers (as hedgeOrder puts them,
		// every one hangs): through the client, as before.
		{"the first member hangs: through the client", &standIn{}, []*standIn{{hang: true}, {}}, true, 1, nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := &Store{cli: swapped(clientv3.NewCtxClient(t.Context()), tc.first, nil), opts: Options{RequestTimeout: time.Second}, metrics: newMetrics(nil, func() bool { return false })}
			var members []*memberConn
			if tc.members != nil {
				kvs := make([]clientv3.KV, len(tc.members))
				for i, m := range tc.members {
					kvs[i] = m
				}
				members = hedgeTo(s, kvs...)
			}
			if tc.hungWas > 0 {
				s.markHung(members[tc.hungWas-1])
			}
			ctx, cancel := context.WithTimeout(t.Context(), s.opts.RequestTimeout)
			defer cancel()
			_, made, err := s.hedgedTxn(ctx, hedgedBatch, nil, nil, nil)
			sends := int(tc.first.sends.Load())
			for _, m := range tc.members {
				sends += int(m.sends.Load())
			}
			if (err == nil) != tc.answered || sends != tc.sends || made != sends {
				t.Errorf("answered: %v (%v), sends %d (%d reported); want answered %v, %d sends", err == nil, err, sends, made, tc.answered, tc.sends)
			}
			// The first send skips the client unless the member marked
			// is the first in order.
			if skipped := tc.first.sends.Load() == 0; tc.hungWas > 0 && skipped != (tc.hungWas > 1) {
				t.Errorf("a member marked hung (%d), the first send through the client: %v", tc.hungWas, !skipped)
			}
			for i, want := range tc.hung {
				if got := members[i].hangs(); got != want {
					t.Errorf("member %d hangs: %v, want %v", i, got, want)
				}
			}
			if refusal := tc.members; err != nil && len(refusal) > 0 && refusal[0].err != nil && status.Code(err) != status.Code(refusal[0].err) {
				t.Errorf("error %v, want the refusal %v", err, refusal[0].err)
			}
		})
	}
}

// TestSyncEndpoints: a store given one member's URL learns the others'
// from etcd, and hedges to them.
func TestSyncEndpoints(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	cli := etcdtest.Client(t, c.Endpoints()[0])
	s, err := Open(t.Context(), cli, Options{Prefix: "/sync-endpoints/"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if m := s.members(); len(m) != 0 {
		t.Fatalf("%d members to hedge to, knowing one endpoint", len(m))
	}
	if err := s.syncEndpoints(t.Context()); err != nil {
		t.Fatal(err)
	}
	if eps := cli.Endpoints(); len(eps) != 3 {
		t.Fatalf("endpoints after a sync: %v, want the three members'", eps)
	}
	m := s.members()
	if len(m) != 3 {
		t.Fatalf("%d members to hedge to, want 3", len(m))
	}
	for i, h := range m {
		if _, err := h.kv.Get(t.Context(), "k"); err != nil {
			t.Errorf("member %d: %v", i, err)
		}
	}
}

// TestProbeFailed: a watch's member that does not answer its probe is
// tried last, and requests go first to the others for a while; one that
// says it has no leader (every member does, for a moment, in an election)
// is tried last, but requests still go through the client.
func TestProbeFailed(t *testing.T) {
	t.Parallel()
	s := &Store{ctx: t.Context(), log: slog.New(slog.NewTextHandler(io.Discard, nil)), metrics: newMetrics(nil, func() bool { return false })}
	election, silent := &memberConn{ep: "a"}, &memberConn{ep: "b"}
	s.probeFailed(election, "accounts", rpctypes.ErrNoLeader)
	if !election.hangs() || s.someHang() {
		t.Errorf("no leader: the member tried last %v, requests redirected %v; want true, false", election.hangs(), s.someHang())
	}
	s.probeFailed(silent, "accounts", context.DeadlineExceeded)
	if !silent.hangs() || !s.someHang() {
		t.Errorf("no answer: the member tried last %v, requests redirected %v; want both", silent.hangs(), s.someHang())
	}
}

// TestHedgeOrder: the members that answer in turn from the n-th, each
// first as often as the others, then those that hung since they last
// answered (for a minute), in turn too.
func TestHedgeOrder(t *testing.T) {
	t.Parallel()
	ms := make([]*memberConn, 5)
	for i := range ms {
		ms[i] = &memberConn{}
	}
	now := monoNow()
	ms[1].hung.Store(now - 2) // hung, never answered since
	ms[3].answered.Store(now - 3)
	ms[3].hung.Store(now - 2)
	ms[2].hung.Store(now - 3) // answered since it hung
	ms[2].answered.Store(now - 1)
	ms[4].hung.Store(now - int64(hungFor) - 1) // hung over a minute ago
	got := hedgeOrder(ms, 2)
	order := []int{4, 0, 2, 1, 3}
	for i, m := range order {
		if got[i] != ms[m] {
			t.Fatalf("order at 2: position %d is not member %d", i, m)
		}
	}
	firsts := map[*memberConn]int{}
	for n := range 6 {
		firsts[hedgeOrder(ms, n)[0]]++
	}
	for _, i := range []int{0, 2, 4} {
		if firsts[ms[i]] != 2 {
			t.Errorf("member %d first %d times in 6, want 2 (each answering member as often)", i, firsts[ms[i]])
		}
	}
}

// TestHedgedWriteFindsItsOwnCommit: a create's first send commits but
// answers late; the hedge finds the account moved on (by the create) and
// answers first. The create must succeed, with a token that works, not
// fail as a service that exists already.
func TestHedgedWriteFindsItsOwnCommit(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := etcdtest.Client(t, c.Endpoints()...)
	ctx := t.Context()
	w := newTwinSends(cli.KV, false, nil)
	s := w.open(t, cli, Options{Prefix: "/hedged-write/", RequestTimeout: 2 * time.Second})
	if _, err := s.CreateService(ctx, "t", store.NewService{ID: "other", HeartbeatTimeout: 10}); err != nil {
		t.Fatal(err) // the tenant's account exists
	}
	w.gate(s.k.service("t", "s"))
	tok, err := s.CreateService(ctx, "t", store.NewService{ID: "s", HeartbeatTimeout: 10})
	if err != nil {
		t.Fatalf("a create whose hedge found it committed failed: %v", err)
	}
	w.check(t, "the create")
	if _, err := s.Heartbeat(ctx, "t", "s", tok); err != nil {
		t.Errorf("the create's token: %v", err)
	}
	page, err := s.Events(ctx, "t", store.EventQuery{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Values) != 2 {
		t.Errorf("%d events, want 2 (two creates)", len(page.Values))
	}
}

// TestAccountNonce: two encodings of one account differ (each write's is
// its own), and each decodes as the account.
func TestAccountNonce(t *testing.T) {
	t.Parallel()
	acct := store.AccountRecord{CreatedAt: 1, Services: 2}
	a, b := nonced(t, acct), nonced(t, acct)
	if string(a) == string(b) {
		t.Errorf("two writes of an account encode alike: %s", a)
	}
	var got store.AccountRecord
	if err := json.Unmarshal(a, &got); err != nil || got != acct {
		t.Errorf("%s decodes as %+v (%v), want %+v", a, got, err, acct)
	}
}

// nonced is withNonce(acct), failing the test on an error.
func nonced(t *testing.T, acct store.AccountRecord) []byte {
	t.Helper()
	raw, err := withNonce(acct)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestCommittedAs: a write whose condition failed finds its own commit
// only by the account's value at its first event's revision, not by the
// event's key, which another node's write may have taken (both nodes'
// clocks behind the account's head give the same next id).
func TestCommittedAs(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := etcdtest.Client(t, c.Endpoints()...)
	ctx := t.Context()
	s, err := Open(ctx, cli, Options{Prefix: "/committed-as/"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	acct := store.AccountRecord{CreatedAt: 1}
	mine, theirs := nonced(t, acct), nonced(t, acct)
	id := acct.NextEventID(time.Now(), 1)
	acctKey, eventKey := s.k.account("t"), s.k.event("t", id)
	if rev, err := s.committedAs(ctx, "test", "t", id, acctKey, mine); err != nil || rev != 0 {
		t.Errorf("no write committed: %d, %v; want 0", rev, err)
	}
	resp, err := cli.Txn(ctx).Then(clientv3.OpPut(eventKey, "e"), clientv3.OpPut(acctKey, string(theirs))).Commit()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, acctKey, string(mine)); err != nil { // a later write: the account moved on
		t.Fatal(err)
	}
	if rev, err := s.committedAs(ctx, "test", "t", id, acctKey, mine); err != nil || rev != 0 {
		t.Errorf("another node's write with the same event: %d, %v; want 0", rev, err)
	}
	if rev, err := s.committedAs(ctx, "test", "t", id, acctKey, theirs); err != nil || rev != resp.Header.Revision {
		t.Errorf("its own write: %d, %v; want %d", rev, err, resp.Header.Revision)
	}
	// The event deleted since by the event cap (the pruned mark at it):
	// whether the write committed is not known.
	if _, err := cli.Delete(ctx, eventKey); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, acctKey, string(nonced(t, store.AccountRecord{CreatedAt: 1, Pruned: id}))); err != nil {
		t.Fatal(err)
	}
	if rev, err := s.committedAs(ctx, "test", "t", id, acctKey, mine); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("its event deleted by the cap: %d, %v; want ErrUnavailable", rev, err)
	}
}

// A create whose first send commits but answers late, and whose event
// the event cap deletes (another node's write past --max-events) before
// its hedge, which found the account moved, comes back: the write does not
// take itself for not committed and run again (the create would answer
// that the service exists). Its outcome is unknown (503), and the service
// is there.
func TestHedgedWriteWhoseEventWasCapped(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := etcdtest.Client(t, c.Endpoints()...)
	ctx := t.Context()
	opts := Options{Prefix: "/hedge-cap/", RequestTimeout: 2 * time.Second, ReapInterval: -1}
	var b *Store
	w := newTwinSends(cli.KV, false, func() {
		if err := b.SetConfig(ctx, "t", "k", "v"); err != nil {
			t.Error(err)
		}
		if err := b.capTenant(ctx, "t"); err != nil {
			t.Error(err)
		}
	})
	s := w.open(t, cli, opts)
	bOpts := opts
	bOpts.MaxEvents = 1
	var err error
	if b, err = Open(ctx, cli, bOpts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if _, err := s.CreateService(ctx, "t", store.NewService{ID: "other", HeartbeatTimeout: 10}); err != nil {
		t.Fatal(err)
	}
	w.gate(s.k.service("t", "s"))
	if _, err := s.CreateService(ctx, "t", store.NewService{ID: "s", HeartbeatTimeout: 10}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("a create that committed, its event capped before it could tell: %v; want ErrUnavailable", err)
	}
	if _, err := b.Service(ctx, "t", "s"); err != nil {
		t.Errorf("the service: %v", err)
	}
}

// TestHedgedTokenPut: a token's put is hedged. A hedge that finds the key
// put by the first send takes it for its own; and a first send that hung,
// and that its member carries out only after the hedge's commit was
// answered and the token revoked, commits nothing: the token stays
// revoked.
func TestHedgedTokenPut(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := etcdtest.Client(t, c.Endpoints()...)
	opts := Options{Prefix: "/hedged-token/", RequestTimeout: 2 * time.Second}
	info := store.TokenInfo{User: "u", Tenant: "123", Expires: time.Now().Add(time.Hour)}
	t.Run("hedge finds the first send's commit", func(t *testing.T) {
		w := newTwinSends(cli.KV, false, nil)
		s := w.open(t, cli, opts)
		hash := [32]byte{1}
		w.gate(s.k.token(hash))
		if err := s.PutToken(t.Context(), hash, info); err != nil {
			t.Fatalf("put token: %v", err)
		}
		w.check(t, "the token's put")
		if got, err := s.Token(t.Context(), hash); err != nil || got.User != "u" {
			t.Errorf("token after its put: %+v, %v", got, err)
		}
	})
	t.Run("first send lands after the revoke", func(t *testing.T) {
		revoked := make(chan struct{})
		late := make(chan bool, 1) // whether the late send committed
		slow := &gatedKV{KV: cli.KV, gate: func(n int32, ctx context.Context, send sendTxn) (*clientv3.TxnResponse, error) {
			if n > 1 { // the revoke
				return send(ctx)
			}
			<-ctx.Done() // the hedge was answered first
			go func() {
				<-revoked
				resp, err := send(context.Background())
				late <- err == nil && resp.Succeeded
			}()
			return nil, ctx.Err()
		}}
		hedge := &gatedKV{KV: cli.KV, gate: func(n int32, ctx context.Context, send sendTxn) (*clientv3.TxnResponse, error) {
			return send(ctx)
		}}
		s, err := Open(t.Context(), swapped(cli, slow, nil), opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		hedgeTo(s, hedge)
		go s.Run(t.Context())
		hash := [32]byte{2}
		slow.key.Store(new(s.k.token(hash)))
		hedge.key.Store(new(s.k.token(hash)))
		if err := s.PutToken(t.Context(), hash, info); err != nil {
			t.Fatalf("put token: %v", err)
		}
		if err := s.DeleteToken(t.Context(), hash); err != nil {
			t.Fatalf("revoke token: %v", err)
		}
		close(revoked)
		if <-late {
			t.Error("the put's late send committed after the revoke")
		}
		if got, err := s.Token(t.Context(), hash); !errors.Is(err, store.ErrTokenUnknown) {
			t.Errorf("revoked token after its put's late send: %+v, %v; want it unknown", got, err)
		}
	})
}
