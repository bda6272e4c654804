package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svcreg/svcreg/internal/retry"
	"github.com/svcreg/svcreg/server/store"
)

// Design item 10 across nodes. Each running node keeps a key under P node/
// on a lease it keeps alive; Close revokes it, a crash lets it expire. A
// node that starts while another node is alive joins a running registry:
// heartbeats went on, so nothing changes, but for the outages of etcd the
// others saw and it could not (outage.go). A node that starts while no node
// is alive restarts the registry: clients could not heartbeat while it was
// down, so every live service gets its full timeout again from now, before
// this node serves or reaps, and before it registers itself, so that a
// node that sees it alive knows the deadlines were already extended.

// join registers this node, first extending every deadline if the registry
// was down.
func (s *Store) join(ctx context.Context) error {
	down, asOf, err := s.registryWasDown(ctx)
	if err != nil {
		return err
	}
	if down {
		n, err := s.extendDeadlines(ctx, asOf)
		if err != nil {
			return fmt.Errorf("give live services their full timeout again: %w", err)
		}
		if n > 0 {
			s.log.Info("no registry node was running: gave every live service its full timeout again", "services", n)
		}
	}
	// Before the registration's renewal is asked for: an outage that
	// begins after it is this node's own, never one to adopt back.
	joined := s.now().UnixNano()
	if err := s.register(ctx); err != nil {
		return err
	}
	rev := s.keyRev.Load() // the registration's
	// The wait's cap counts from the registration, which the running
	// nodes answer.
	var waitUntil int64
	if !down {
		waitUntil = s.now().Add(s.opts.NodeTTL + s.opts.RequestTimeout).UnixNano()
	}
	s.outages.join(joined, rev, waitUntil)
	s.wg.Go(s.keepRegistered)
	s.wg.Go(s.showOutages)
	return nil
}

// registryWasDown reports whether no other node is alive, and the etcd
// revision it last found none registered since at. Another node's
// key may outlive a crash by up to its lease's TTL, so while keys are
// there it watches their leases: one that is renewed belongs to a live
// node; if every key expires, the registry was down. A lease that neither
// expires nor is renewed in time (etcd cannot revoke it) is an error, not
// a live node: taking it for one would leave the deadlines that passed
// while the registry was down to time services out.
func (s *Store) registryWasDown(ctx context.Context) (down bool, asOf int64, err error) {
	resp, err := s.read(ctx, "list nodes", clientv3.OpGet(s.k.nodes(), clientv3.WithPrefix()))
	if err != nil {
		return false, 0, err
	}
	asOf = resp.Header.GetRevision()
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return true, asOf, nil
	}
	s.checkSettings(kvs)
	seen := map[string]int64{} // node key -> its lease
	w := newLeaseWatch(time.Now(), s.opts.NodeTTL, s.opts.RequestTimeout)
	for _, kv := range kvs {
		seen[string(kv.Key)] = kv.Lease
		w.add(clientv3.LeaseID(kv.Lease))
	}
	for {
		for lease := range w.leases {
			asked := time.Now()
			ttl, err := s.timeToLive(ctx, lease)
			if err != nil {
				return false, 0, s.fail(ctx, "check a node's lease", err)
			}
			if w.see(lease, ttl.TTL, ttl.GetRaftTerm(), ttl.GetMemberId(), asked, time.Now()) {
				return false, 0, nil
			}
		}
		if len(w.leases) == 0 {
			return true, asOf, nil
		}
		if time.Now().After(w.deadline) {
			return false, 0, fmt.Errorf("%w: etcd: %d node lease(s) neither renewed nor revoked after they expired; cannot tell whether another node is running", store.ErrUnavailable, len(w.leases))
		}
		if err := retry.Sleep(ctx, 200*time.Millisecond); err != nil {
			return false, 0, err
		}
		resp, err := s.read(ctx, "list nodes", clientv3.OpGet(s.k.nodes(), clientv3.WithPrefix()))
		if err != nil {
			return false, 0, err
		}
		for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
			if lease, ok := seen[string(kv.Key)]; !ok || lease != kv.Lease {
				return false, 0, nil // a node registered since: it is alive
			}
		}
		asOf = resp.Header.GetRevision()
	}
}

// leaseWatch tells, from what etcd says is left of the leases of the node
// keys a starting node found, looked at again and again, whether one of
// them is renewed (its node is alive), and how long to go on looking
// before a lease that neither expires nor is renewed is an error.
//
// A lease not renewed has less than t+1 seconds left when etcd says t
// (whole seconds, rounded down), and that much less a moment later;
// anything more means its node renewed it. Two answers are compared only
// if one etcd member gave both, within one raft term: a new etcd leader
// gives every lease its full TTL again, and more. And not the first
// answer a member gives in a term: a member fills in an answer's term
// itself, while a follower asks the leader for the TTL, so the first
// answer a follower gives after it learns of a new term may still carry
// the old leader's TTL, and the new leader's refreshed one after it would
// look like a renewal (the client spreads its requests over the members:
// each may give one such answer). A TTL of 0 tells nothing: etcd gives it
// for a second after a lease expires, then -1, revoked or not. Nor does
// one past any node's TTL and a minute (an old leader that lost its
// leadership reports every lease as never expiring).
type leaseWatch struct {
	// leases are those still watched (not yet expired), and of each the
	// answers that count, by the member that gave them.
	leases  map[clientv3.LeaseID]map[uint64]*leaseLooks
	timeout time.Duration
	maxTTL  int64 // seconds: an answer above it tells nothing
	// deadline is when to stop waiting for the leases to expire: at
	// first twice this node's TTL and a second, lengthened by what etcd
	// says is left of a lease, its second of TTL 0, and a request's time.
	deadline time.Time
}

// leaseLooks are the answers about one lease from one member that count.
type leaseLooks struct {
	term uint64 // of the last answer
	// first is the first answer of term after the one that showed it;
	// zero until then.
	firstTTL int64
	firstAt  time.Time
}

func newLeaseWatch(now time.Time, nodeTTL, timeout time.Duration) *leaseWatch {
	return &leaseWatch{
		leases:   map[clientv3.LeaseID]map[uint64]*leaseLooks{},
		timeout:  timeout,
		maxTTL:   int64((max(nodeTTL, MaxNodeTTL) + time.Minute) / time.Second),
		deadline: now.Add(2*nodeTTL + time.Second),
	}
}

func (w *leaseWatch) add(lease clientv3.LeaseID) { w.leases[lease] = map[uint64]*leaseLooks{} }

// see takes etcd's answer about lease, asked for at asked and arrived at
// at: ttl left in whole seconds (-1: expired), in raft term, from member.
// It reports whether the lease was renewed; an expired one is watched no
// more.
func (w *leaseWatch) see(lease clientv3.LeaseID, ttl int64, term, member uint64, asked, at time.Time) (renewed bool) {
	looks, ok := w.leases[lease]
	switch {
	case !ok || ttl > w.maxTTL:
		return false
	case ttl < 0:
		delete(w.leases, lease)
		return false
	}
	if d := at.Add(time.Duration(ttl+3)*time.Second + w.timeout); ttl > 0 && d.After(w.deadline) {
		w.deadline = d
	}
	l := looks[member]
	switch {
	case l == nil || l.term != term:
		looks[member] = &leaseLooks{term: term}
	case l.firstAt.IsZero():
		l.firstTTL, l.firstAt = ttl, at
	default:
		return ttl > 0 && float64(ttl) >= float64(l.firstTTL)+1-asked.Sub(l.firstAt).Seconds()
	}
	return false
}

// timeToLive asks etcd what is left of lease, within the request timeout.
func (s *Store) timeToLive(ctx context.Context, lease clientv3.LeaseID) (*clientv3.LeaseTimeToLiveResponse, error) {
	cctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	return s.cli.TimeToLive(cctx, lease)
}

// settings are this node's settings that every node must share.
func (s *Store) settings() nodeSettings {
	return nodeSettings{NodeTTL: s.opts.NodeTTL.String(), RequestTimeout: s.opts.RequestTimeout.String(), HeartbeatSlack: s.opts.HeartbeatSlack.String()}
}

// nodeValue is what this node's key says of it.
func (s *Store) nodeValue() nodeValue {
	v := nodeValue{Started: s.started.UTC().Format(time.RFC3339), Peer: s.peerAddr, nodeSettings: s.settings()}
	spans, _, _ := s.outages.toShow()
	// A registration after the lease was lost is written before the
	// outage it ends is recorded (renewed): it shows the outage so far.
	if _, alive := s.lease.get(); !alive {
		if sp, ok := s.outages.going(s.now().UnixNano()); ok {
			spans = append(spans, sp)
		}
	}
	for _, sp := range spans {
		v.Outages = append(v.Outages, sp.json())
	}
	return v
}

// checkSettings warns of each node among kvs (node keys) whose settings
// differ from this node's: the safety of the heartbeat slack rests on
// every node's sharing them (see MinHeartbeatSlack).
func (s *Store) checkSettings(kvs []*mvccpb.KeyValue) {
	mine := s.settings()
	for _, kv := range kvs {
		var v nodeValue
		if json.Unmarshal(kv.Value, &v) != nil || v.NodeTTL == "" { // a node of a release before settings were shown
			continue
		}
		if v.nodeSettings != mine {
			s.log.Warn("a node registered in etcd (running, or stopped within its lease) has other etcd settings; give every node the same --etcd-node-ttl, --etcd-request-timeout and --etcd-heartbeat-slack",
				"node", strings.TrimPrefix(string(kv.Key), s.k.nodes()),
				"its_node_ttl", v.NodeTTL, "its_request_timeout", v.RequestTimeout, "its_heartbeat_slack", v.HeartbeatSlack,
				"node_ttl", mine.NodeTTL, "request_timeout", mine.RequestTimeout, "heartbeat_slack", mine.HeartbeatSlack)
		}
	}
}

// register puts this node's key on a new lease. The write is
// conditional on the key's revision as read just before, so that an
// earlier attempt's write, which timed out here but may still land
// (etcd commits a request whose caller gave up, e.g. once a member that
// stopped answering is back), cannot overwrite a later registration and
// leave the key on a lease nobody renews: the late write fails its
// condition instead, and if it lands first this attempt fails and the
// next one registers over it.
func (s *Store) register(ctx context.Context) error {
	key := s.k.node(s.nodeID)
	cur, err := s.read(ctx, "read node key", clientv3.OpGet(key))
	if err != nil {
		return err
	}
	var rev int64
	if kv := first(cur.Responses[0]); kv != nil {
		rev = kv.ModRevision
	}
	asked, askedAt := time.Now(), s.now()
	cctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	lease, err := s.cli.Grant(cctx, leaseSeconds(s.opts.NodeTTL))
	cancel()
	if err != nil {
		return s.fail(ctx, "grant node lease", err)
	}
	value, err := json.Marshal(s.nodeValue())
	if err != nil {
		return err
	}
	resp, err := s.txn(ctx, "register node",
		[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", rev)},
		[]clientv3.Op{clientv3.OpPut(key, string(value), clientv3.WithLease(lease.ID))}, nil)
	if err == nil && !resp.Succeeded {
		err = fmt.Errorf("%w: etcd: register node: its key changed since read (an earlier registration landed late)", store.ErrUnavailable)
	}
	if err != nil {
		// The lease is nobody's: revoked, it cannot keep a write of this
		// attempt that lands later (etcd refuses a put on a lease it no
		// longer has, and drops the key if it was put already).
		if rerr := s.revoke(lease.ID); rerr != nil {
			s.log.Debug("revoke the lease of a failed registration", "lease", fmt.Sprintf("%x", int64(lease.ID)), "err", rerr)
		}
		return err
	}
	s.keyRev.Store(resp.Header.GetRevision())
	s.renewed(lease.ID, asked, askedAt, lease.TTL)
	return nil
}

// revoke revokes a lease within the request timeout; one etcd no longer
// has is revoked already. One that fails to be revoked expires a TTL
// later.
//
// Hedged (hedge.go): a node let back after a partition, whose client still
// waits on the member it lost, leaves the cluster through another.
func (s *Store) revoke(id clientv3.LeaseID) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.RequestTimeout)
	defer cancel()
	_, _, err := hedgedCall(ctx, s, hedged, func(ctx context.Context, m *memberConn) (struct{}, error) {
		var err error
		if m == nil {
			_, err = s.cli.Revoke(ctx, id)
		} else {
			_, err = pb.NewLeaseClient(m.conn).LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: int64(id)})
			err = rpctypes.Error(err)
		}
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			err = nil // revoked already (by another send, say)
		}
		return struct{}{}, err
	})
	return err
}

// keepRegistered renews the node's lease a third of its TTL after the last
// renewal that succeeded (see renew for one attempt, given a quarter of
// the TTL). An attempt that fails is made again at once, after a short
// jittered pause. If the lease is lost (etcd was out of reach for longer
// than its TTL), it registers again, on a new lease.
func (s *Store) keepRegistered() {
	every := s.opts.NodeTTL / 3
	limit := max(s.opts.NodeTTL/4, 100*time.Millisecond)
	pause := retry.Backoff{Min: 50 * time.Millisecond, Max: limit}
	wait := every
	for retry.Sleep(s.ctx, wait) == nil {
		id, _ := s.lease.get()
		asked, askedAt := time.Now(), s.now()
		resp, err := s.renew(id, limit)
		switch {
		case err == nil && resp.TTL > 0:
			s.renewed(id, asked, askedAt, resp.TTL)
			pause.Reset()
			wait = every
			continue
		case err == nil || errors.Is(err, rpctypes.ErrLeaseNotFound):
		default:
			if s.ctx.Err() == nil {
				s.log.Debug("renew node lease", "err", err)
			}
			wait = pause.Next()
			continue
		}
		s.log.Warn("node lease lost; registering again")
		s.metrics.leaseLost.Inc()
		for {
			err := s.register(s.ctx)
			if err == nil {
				break
			}
			s.log.Warn("register node", "err", err)
			if retry.Sleep(s.ctx, retry.Jitter(time.Second, 0.5)) != nil {
				return
			}
		}
		pause.Reset()
		wait = every
	}
}

// renewRequests is how many requests one attempt to renew the node's
// lease sends at once.
const renewRequests = 3

// renew is one attempt to renew the node's lease, within limit: it sends
// renewRequests renewals at once and the first answer counts. The client
// sends each request to the next etcd member in turn, so requests sent
// together reach different members, and a member that stopped answering
// without closing its connections (which the client notices only once
// its pings go unanswered, 13 s) holds up one of them, not the lease. One
// at a time, the node's other requests in between could send each to that
// member.
func (s *Store) renew(id clientv3.LeaseID, limit time.Duration) (*clientv3.LeaseKeepAliveResponse, error) {
	ctx, cancel := context.WithTimeout(s.ctx, limit)
	defer cancel()
	type answer struct {
		resp *clientv3.LeaseKeepAliveResponse
		err  error
	}
	answers := make(chan answer, renewRequests) // each answers without a reader
	for range renewRequests {
		go func() {
			resp, err := s.cli.KeepAliveOnce(ctx, id)
			answers <- answer{resp, err}
		}()
	}
	var a answer
	for range renewRequests {
		if a = <-answers; a.err == nil || errors.Is(a.err, rpctypes.ErrLeaseNotFound) {
			return a.resp, a.err
		}
	}
	return a.resp, a.err
}

// nodeLease is this node's lease, and until when this node can be sure it
// is alive: a renewal asked at time a makes etcd keep the lease until at
// least a+TTL by etcd's clock; this node counts on a quarter of the TTL
// less, for clock rates and scheduling. While it is sure, no other node
// takes over the services it holds (see heartbeat.go). It goes by both
// clocks: the monotonic one does not advance while the machine is
// suspended (nor, under some hypervisors, while a virtual machine is
// paused), and the wall clock may be stepped back; a pause past the lease
// shows on the wall clock, a step back not on the monotonic one.
type nodeLease struct {
	mu        sync.Mutex
	id        clientv3.LeaseID
	until     time.Time // by the monotonic clock
	untilWall int64     // the same, by the wall clock (Unix ns)
}

func (l *nodeLease) set(id clientv3.LeaseID, asked time.Time, ttl int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	until := asked.Add(time.Duration(ttl) * time.Second * 3 / 4)
	if id != l.id || until.After(l.until) {
		l.id, l.until, l.untilWall = id, until, until.UnixNano()
	}
}

// get returns the lease and whether it is surely alive now.
func (l *nodeLease) get() (clientv3.LeaseID, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	return l.id, l.id != 0 && now.Before(l.until) && now.UnixNano() < l.untilWall
}

// leaseStill reports whether lease is this node's lease and surely alive:
// checked again after a wait (a copy to the peer) before answering from
// memory.
func (s *Store) leaseStill(lease clientv3.LeaseID) bool {
	cur, alive := s.lease.get()
	return alive && cur == lease
}

// extendDeadlines gives every live service its full timeout from now
// (design item 10), each conditional on its heartbeat key, so that a
// heartbeat committed meanwhile (it set a fresh deadline) is left alone.
// Heartbeat state written after revision asOf, when no node was yet
// registered, is left alone too: a node that started at the same time
// wrote it, after extending it, and may hold it now. It returns how many
// it extended.
func (s *Store) extendDeadlines(ctx context.Context, asOf int64) (int, error) {
	now := s.now()
	start, end := s.k.allHeartbeats(), prefixEnd(s.k.allHeartbeats())
	page := int64(s.opts.HeartbeatBatch)
	extended := 0
	for {
		resp, err := s.read(ctx, "list heartbeat state", clientv3.OpGet(start, clientv3.WithRange(end), clientv3.WithLimit(page)))
		if err != nil {
			return extended, err
		}
		rr := resp.Responses[0].GetResponseRange()
		if len(rr.Kvs) == 0 {
			return extended, nil
		}
		gets := make([]clientv3.Op, len(rr.Kvs))
		for i, kv := range rr.Kvs {
			tenant, id, ok := s.k.parseHeartbeat(string(kv.Key))
			if !ok {
				return extended, fmt.Errorf("undecodable heartbeat key %q", kv.Key)
			}
			gets[i] = clientv3.OpGet(s.k.service(tenant, id))
		}
		svcs, err := s.read(ctx, "read services", gets...)
		if err != nil {
			return extended, err
		}
		var ops []clientv3.Op
		for i, kv := range rr.Kvs {
			skv := first(svcs.Responses[i])
			if skv == nil || kv.ModRevision > asOf {
				continue
			}
			tenant, id, _ := s.k.parseHeartbeat(string(kv.Key))
			rec, hb, err := decodeService(skv, kv)
			if err != nil {
				return extended, err
			}
			// Every node is gone, and with them the heartbeats they
			// answered from memory: each service's deadline becomes its
			// full timeout from now (at or after any deadline a node
			// answered, all of which were set before now), and any token
			// minted for it since the stored one is accepted.
			next := hb
			next.Deadline = now.Add(time.Duration(rec.HeartbeatTimeout) * time.Second).UnixNano()
			next.Holder, next.HolderLease, next.Loose = "", 0, hb.Loose || hb.Holder != ""
			if next == hb {
				continue
			}
			raw, err := json.Marshal(next)
			if err != nil {
				return extended, err
			}
			ops = append(ops, clientv3.OpTxn(
				[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)},
				append([]clientv3.Op{clientv3.OpPut(string(kv.Key), string(raw))}, s.k.moveDue(hb.Deadline, next.Deadline, tenant, id)...),
				nil))
		}
		if len(ops) > 0 {
			resp, err := s.txn(ctx, "extend deadlines", nil, ops, nil)
			if err != nil {
				return extended, err
			}
			for _, r := range resp.Responses {
				if tr := r.GetResponseTxn(); tr != nil && tr.Succeeded {
					extended++
				}
			}
		}
		if !rr.More {
			return extended, nil
		}
		start = string(rr.Kvs[len(rr.Kvs)-1].Key) + "\x00"
	}
}
