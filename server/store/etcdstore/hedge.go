package etcdstore

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// A member that stops answering without closing its connections (a host
// powered off, a partition that drops packets, a stalled VM) holds every
// request the etcd client sends it, about one in as many as there are
// members, until the client gives up on the connection (13 s, client.go).
// Heartbeats, reads and writes cannot wait that long: a service whose
// timeout is a few seconds would time out meanwhile, and a client's
// request would fail. So they are hedged: one that has no answer within
// hedgeAfter goes again, on a connection of its own, to one member after
// another, and the first answer is taken.
//
// A read may be answered by any member. A heartbeat batch is a list of
// writes each conditioned on its keys' revisions, so at most one of its
// sends commits any of them; a write whose condition failed because
// another send of it committed first is recognised by its value, which
// names this node as holder and holds a token minted for it
// (commitHeartbeat), and a send that commits after another was answered
// commits nothing. A write through Store.write that appends events is
// conditioned on the account's revision and moves it, so the same holds;
// the account's value at its first event's revision, which holds a nonce
// of the write, tells whether one of its sends committed (committedAs:
// the event alone does not, as two nodes whose clocks are behind the
// account's head give their events the same id). Writes that append no
// event are not hedged.

// hedging says whether a transaction is hedged, and as what.
type hedging int

const (
	notHedged   hedging = iota
	hedged              // its hedges count against maxHedges
	hedgedBatch         // a heartbeat batch: the committers bound them
)

// hedgeAfter is how long a hedged request waits for an answer before it
// is sent to another member: a tenth of the request timeout, 500 ms by
// default, which a commit of a healthy cluster takes far less than.
func (s *Store) hedgeAfter() time.Duration {
	return max(s.opts.RequestTimeout/10, 10*time.Millisecond)
}

// maxHedges bounds the hedged reads and API writes on their way at once,
// so that when every member is slow (an election, a slow disk) hedging
// adds a bounded load. Heartbeat batches are bounded by the committers
// already.
const maxHedges = 32

// memberConns are the store's connections to single members, for hedges,
// made when first needed and kept in step with the client's endpoints,
// which syncEndpoints keeps in step with etcd's membership: both under mu,
// as the client reads its endpoints unguarded when it dials.
type memberConns struct {
	mu     sync.Mutex
	conns  map[string]*memberConn
	closed bool
	next   atomic.Uint32
	// slots bound the hedges of reads and API writes (maxHedges); made
	// by Open.
	slots chan struct{}
	// hungAt is when a member was last marked hung (monoNow; 0: never).
	hungAt atomic.Int64
}

type memberConn struct {
	ep   string
	conn *grpc.ClientConn
	kv   clientv3.KV
	// answered is when the member last answered a hedge or a watch's
	// probe, and hung when a hedge to it was last overtaken, a send made
	// after it answered first, or a watch's probe went unanswered
	// (monoNow): one that hung since it last answered is tried last, for
	// a while (hangs). A slow cluster (an election) overtakes no send with
	// a later one.
	answered, hung atomic.Int64
}

// monoStart anchors monoNow.
var monoStart = time.Now()

// monoNow is the monotonic time since the process started, which a step
// of the wall clock leaves alone.
func monoNow() int64 { return int64(time.Since(monoStart)) }

// storeLater stores t in v unless v holds a later time.
func storeLater(v *atomic.Int64, t int64) {
	for {
		cur := v.Load()
		if cur >= t || v.CompareAndSwap(cur, t) {
			return
		}
	}
}

// members returns the members the client knows, those that answer first,
// or none if it knows fewer than two; or (tests) the stand-ins hedgeTo
// holds, as they are.
func (s *Store) members() []*memberConn {
	if standIns := s.hedgeTo.Load(); standIns != nil {
		return *standIns
	}
	m := &s.memberConns
	m.mu.Lock()
	defer m.mu.Unlock()
	eps := s.cli.Endpoints()
	if len(eps) < 2 || m.closed {
		return nil
	}
	if m.conns == nil {
		m.conns = make(map[string]*memberConn)
	}
	out := make([]*memberConn, 0, len(eps))
	known := make(map[string]bool, len(eps))
	for _, ep := range eps {
		known[ep] = true
		c := m.conns[ep]
		if c == nil {
			conn, err := s.cli.Dial(ep)
			if err != nil {
				s.log.Warn("connect to an etcd member for hedged requests", "endpoint", ep, "err", err)
				continue
			}
			c = &memberConn{ep: ep, conn: conn, kv: clientv3.NewKVFromKVClient(pb.NewKVClient(conn), s.cli)}
			m.conns[ep] = c
		}
		out = append(out, c)
	}
	for ep, c := range m.conns {
		if !known[ep] { // the member left the cluster
			c.conn.Close()
			delete(m.conns, ep)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return hedgeOrder(out, int(m.next.Add(1)))
}

// hedgeOrder is the order to hedge to members in: those that answer, then
// those that hung since they last answered, each in turn from the n-th
// (n moves on with each request, so that each of them comes first as
// often as the others).
func hedgeOrder(members []*memberConn, n int) []*memberConn {
	var answering, hanging []*memberConn
	for _, m := range members {
		if m.hangs() {
			hanging = append(hanging, m)
		} else {
			answering = append(answering, m)
		}
	}
	out := make([]*memberConn, 0, len(members))
	for _, l := range [][]*memberConn{answering, hanging} {
		for i := range l {
			out = append(out, l[(n+i)%len(l)])
		}
	}
	return out
}

// markHung marks m as hung now.
func (s *Store) markHung(m *memberConn) {
	now := monoNow()
	storeLater(&m.hung, now)
	storeLater(&s.memberConns.hungAt, now)
}

// someHang reports whether a member may hang (one was marked hung within
// hungFor).
func (s *Store) someHang() bool {
	h := s.memberConns.hungAt.Load()
	return h != 0 && monoNow()-h < int64(hungFor)
}

// hangs reports whether a hedge or a watch's probe to the member went
// unanswered since it last answered one, within hungFor.
func (c *memberConn) hangs() bool {
	h := c.hung.Load()
	return h > c.answered.Load() && monoNow()-h < int64(hungFor)
}

// hungFor is how long a member that hung is tried last: the requests that
// would tell it answers again go to the others meanwhile (an election or a
// defragmentation passes, and the member is as good as any).
const hungFor = time.Minute

// syncEndpoints sets the client's endpoints to the members' client URLs,
// as etcd lists them, so that members added later are used and removed
// ones are not.
func (s *Store) syncEndpoints(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	resp, err := s.cli.MemberList(ctx)
	if err != nil {
		return s.fail(ctx, "list the etcd members", err)
	}
	var eps []string
	for _, m := range resp.Members {
		if m.Name != "" && !m.IsLearner { // a learner answers no requests
			eps = append(eps, m.ClientURLs...)
		}
	}
	if len(eps) == 0 {
		return nil
	}
	m := &s.memberConns
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur := s.cli.Endpoints(); len(cur) > 0 && !sameSet(cur, eps) { // none: a test's stand-in
		s.log.Info("etcd members changed", "endpoints", eps, "were", cur)
		s.cli.SetEndpoints(eps...)
	}
	return nil
}

// sameSet reports whether a and b hold the same strings.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// closeMembers closes the connections to single members.
func (s *Store) closeMembers() {
	m := &s.memberConns
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	for ep, c := range m.conns {
		c.conn.Close()
		delete(m.conns, ep)
	}
}

// hedgedTxn sends a transaction as hedgedCall does.
func (s *Store) hedgedTxn(ctx context.Context, as hedging, cmps []clientv3.Cmp, then, els []clientv3.Op) (*clientv3.TxnResponse, int, error) {
	return hedgedCall(ctx, s, as, func(ctx context.Context, m *memberConn) (*clientv3.TxnResponse, error) {
		kv := s.cli.KV
		if m != nil {
			kv = m.kv
		}
		return kv.Txn(ctx).If(cmps...).Then(then...).Else(els...).Commit()
	})
}

// hedgedGrant grants a lease of ttl seconds as hedgedCall does. The
// leases that sends whose answer was not taken granted are revoked.
func (s *Store) hedgedGrant(ctx context.Context, ttl int64) (clientv3.LeaseID, error) {
	var mu sync.Mutex
	var granted []clientv3.LeaseID
	id, _, err := hedgedCall(ctx, s, hedged, func(ctx context.Context, m *memberConn) (clientv3.LeaseID, error) {
		var id clientv3.LeaseID
		if m == nil {
			resp, err := s.cli.Grant(ctx, ttl)
			if err != nil {
				return 0, err
			}
			id = resp.ID
		} else {
			resp, err := pb.NewLeaseClient(m.conn).LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: ttl})
			if err != nil {
				return 0, err
			}
			id = clientv3.LeaseID(resp.ID)
		}
		mu.Lock()
		granted = append(granted, id)
		mu.Unlock()
		return id, nil
	})
	// Every send ended: the others' leases are nobody's (seldom any: a
	// send not taken is cancelled).
	for _, g := range granted {
		if err != nil || g != id {
			if rerr := s.revoke(g); rerr != nil {
				s.log.Debug("revoke a lease a hedged grant made twice", "lease", fmt.Sprintf("%x", int64(g)), "err", rerr)
			}
		}
	}
	return id, err
}

// hedgedCall makes call through the client (m nil; while a member hangs,
// to the first of the others instead) and, while it has no
// answer, again every hedgeAfter to the next member until each had it,
// then once more to each, every other hedgeAfter (a leader that fell
// silent holds every send made before the others elected another, which
// a send made after that reaches); it returns the first answer, or the
// last error once every send failed or ctx ended, and how many sends it
// made. The sends still on their way are cancelled, and it returns once
// they ended.
func hedgedCall[T any](ctx context.Context, s *Store, as hedging, call func(ctx context.Context, m *memberConn) (T, error)) (T, int, error) {
	type answer struct {
		resp T
		err  error
		sent int64 // monoNow
		m    *memberConn
	}
	var none T
	ctx, cancel := context.WithCancel(ctx)
	answers := make(chan answer)
	pending := 0 // sends whose answer was not taken
	defer func() {
		cancel()
		for ; pending > 0; pending-- {
			<-answers
		}
	}()
	// won is when the send whose answer was taken was made (monoNow), and
	// wonAt the member it went to (stored first).
	var won atomic.Int64
	var wonAt atomic.Pointer[memberConn]
	sends := 0
	send := func(m *memberConn, release func()) {
		sends++
		pending++
		sent := monoNow()
		go func() {
			defer release()
			resp, err := call(ctx, m)
			if m != nil {
				switch {
				case err == nil:
					storeLater(&m.answered, monoNow())
				case ctx.Err() != nil && won.Load() > sent && wonAt.Load() != m:
					// Overtaken by another member (not by a later
					// send to this one).
					s.markHung(m)
				}
			}
			answers <- answer{resp, err, sent, m}
		}()
	}
	var members []*memberConn // loaded at the first hedge
	loaded, tried := false, 0
	// The client's balancer sends to every member in turn, one that hangs
	// too, until it gives up on it (13 s); meanwhile the first send goes
	// to a member that answers.
	var first *memberConn
	if s.someHang() {
		members, loaded = s.members(), true
		if len(members) > 0 && !members[0].hangs() {
			first, tried = members[0], 1
		}
	}
	send(first, func() {})
	hedge := time.NewTimer(s.hedgeAfter())
	defer hedge.Stop()
	var slots chan struct{} // nil: not bounded
	if as == hedged {
		slots = s.memberConns.slots
	}
	// last is the answer once no send is left: the last error, or etcd's
	// refusal (no more sends then).
	var last, refusal error
	for {
		select {
		case a := <-answers:
			pending--
			if a.err == nil {
				wonAt.Store(a.m)
				won.Store(a.sent)
				return a.resp, sends, nil
			}
			if refusal == nil {
				last = a.err
			}
			switch {
			case ctx.Err() != nil:
				return none, sends, last
			case !retryable(a.err):
				// Final once no send is left: one on its way may have
				// committed (a member falling behind refuses at once
				// while the first send's answer is late). It is the
				// answer, not a later send's timeout: etcd's own.
				refusal, last = a.err, a.err
				hedge.Stop()
			case loaded && tried >= len(members):
				// The second round keeps its pace: a cluster that
				// fails every send at once (no leader yet) is given
				// time to elect one.
			default:
				hedge.Reset(0) // a send that failed at once: the next now
			}
		case <-hedge.C:
			if refusal != nil {
				break
			}
			if !loaded {
				members, loaded = s.members(), true
			}
			if tried == 2*len(members) {
				break
			}
			release := func() {}
			if slots != nil {
				select {
				case slots <- struct{}{}:
					release = func() { <-slots }
				default: // hedging at its bound: try again later
					hedge.Reset(s.hedgeAfter())
					continue
				}
			}
			m := members[tried%len(members)]
			tried++
			s.metrics.hedges.Inc()
			send(m, release)
			next := s.hedgeAfter()
			if tried >= len(members) {
				next *= 2
			}
			hedge.Reset(next)
		case <-ctx.Done():
			if refusal != nil {
				return none, sends, refusal
			}
			return none, sends, ctx.Err()
		}
		if pending == 0 && (refusal != nil || loaded && tried == 2*len(members)) {
			return none, sends, last
		}
	}
}

// retryable reports whether a send that failed with err may get an
// answer from another member: one that timed out, found no leader or no
// connection, not one etcd refused as such.
func retryable(err error) bool {
	switch grpcCode(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Unknown, codes.Canceled:
		return true
	}
	return false
}
