package etcdstore_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/etcdtest"
	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/server/store/etcdstore"
)

// TestRandomHistory runs many clients against three nodes over a
// three-member etcd: service owners registering, heartbeating (mostly at
// one node, so that it answers from memory, sometimes at another, so that
// the service is handed over), updating, deleting and abandoning services,
// configuration writers, and a watcher long-polling at each node, while
// every node's reaper races the reads. Meanwhile the node that took the
// last heartbeat is killed and started again, the etcd leader is stopped
// and started again, and a node is cut off from etcd and let back. Then it
// checks that
//
//   - the feed is in strictly increasing id order, without duplicates;
//   - every watcher saw exactly the feed: no gap, no duplicate, no reorder;
//   - replaying the feed is consistent (no event about a service that is
//     not there, so at most one timeout per service) and ends in the state
//     the nodes list;
//   - every acknowledged create and delete is in the feed;
//   - no service timed out while its owner heartbeated it, and every
//     timeout's timestamp is the deadline of the last heartbeat token its
//     owner was given; if the node that answered that heartbeat was
//     killed before the service was due while the other nodes and etcd
//     were up, within two reap intervals after it (its peer had a copy of
//     that deadline; another node's reaper may find the stored deadline,
//     just after it, passing first); or, if that node
//     was cut off, lost its lease or failed to copy to its peer, another
//     node was cut off or lost its lease, or a deadline fell while etcd's
//     leader member was stopped (or before that member was back), no
//     earlier and at most the heartbeat slack later: no acknowledged
//     heartbeat was lost.
func TestRandomHistory(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	clock := new(testserver.Clock)
	opts := etcdstore.Options{Clock: clock.Now, ReapInterval: 200 * time.Millisecond, NodeTTL: 2 * time.Second, RequestTimeout: time.Second}
	// The least slack that is safe: owners move their heartbeats to
	// another node when theirs dies.
	slack := etcdstore.MinHeartbeatSlack(opts)
	opts.HeartbeatSlack = slack
	part := newPartition(t, c.Endpoints())
	nodes := []*node{startNode(t, part.Endpoints, opts), startNode(t, c.Endpoints(), opts), startNode(t, c.Endpoints(), opts)}
	u := login(t, nodes[1], "history")
	start := u.listMarker(nodes[1])

	h := &history{t: t, u: u, nodes: nodes, slack: slack, reap: opts.ReapInterval, quit: make(chan struct{}), quitLeases: make(chan struct{}), outages: map[int][]outage{},
		copyFailures: make([]float64, len(nodes)), copiesSeen: make([]time.Time, len(nodes))}
	const owners, idsPerOwner, configWriters = 6, 3, 2
	runFor := 10 * time.Second
	if testing.Short() {
		runFor = 5 * time.Second
	}
	stop := make(chan struct{})
	var actors sync.WaitGroup
	for o := range owners {
		rng := rand.New(rand.NewPCG(seed, uint64(o)))
		ids := make([]*svcLog, idsPerOwner)
		for i := range ids {
			ids[i] = &svcLog{id: fmt.Sprintf("svc-%d-%d", o, i), home: o % len(nodes)}
		}
		h.services = append(h.services, ids...)
		actors.Go(func() { h.owner(rng, ids, stop) })
	}
	for w := range configWriters {
		rng := rand.New(rand.NewPCG(seed, uint64(100+w)))
		cl := &configLog{acked: map[string]int{}}
		h.configs = append(h.configs, cl)
		actors.Go(func() { h.configWriter(rng, w, cl, stop) })
	}
	watchers := make([]*watcher, len(nodes))
	var watching sync.WaitGroup
	for i := range watchers {
		watchers[i] = &watcher{last: start, target: make(chan string, 1)}
		watching.Go(func() { h.watch(i, watchers[i]) })
	}
	// A node whose lease expires (a loaded machine can starve its renewals
	// for longer than the TTL) is dead to the others as if killed: that is
	// an outage too, from when the lease may have been last renewed.
	var monitoring sync.WaitGroup
	monitoring.Go(func() { h.watchNodes(opts.NodeTTL) })
	// A test that fails early stops its clients before it ends: a client
	// that reported after the end would panic the whole package.
	stopActors := sync.OnceFunc(func() { close(stop); actors.Wait() })
	stopMonitor := sync.OnceFunc(func() { close(h.quitLeases); monitoring.Wait() })
	t.Cleanup(func() {
		stopActors()
		stopMonitor()
		close(h.quit)
		watching.Wait()
	})

	step := runFor / 5
	time.Sleep(step)
	// Kill the node that answered the last heartbeat, and start it again
	// while the others serve.
	killed := int(h.lastNode.Load())
	t.Logf("nodes %s, %s, %s; node %d crashes at %s", nodes[0].addr, nodes[1].addr, nodes[2].addr, killed, time.Now().UTC().Format("15:04:05.000"))
	h.noteCopyFailures(killed) // the last look at its failures
	h.outage(killed, killedOutage)
	killedAt := time.Now()
	nodes[killed].crash()
	time.Sleep(step)
	nodes[killed].restart()
	t.Logf("node %d back at %s", killed, time.Now().UTC().Format("15:04:05.000"))
	h.back(killed)
	// The services the killed node held are due by a timeout after it
	// died: let its peer time them out before etcd loses its leader, so
	// that their timeouts show the peer's copies (see exposed).
	time.Sleep(time.Until(killedAt.Add(historyTimeout + 1500*time.Millisecond)))
	// Lose the etcd leader, then get it back.
	lead := c.Members[leader(t, c)]
	t.Logf("etcd leader %s stops at %s", lead.Name, time.Now().UTC().Format("15:04:05.000"))
	h.etcdOutage()
	lead.Stop()
	time.Sleep(step)
	if err := lead.Start(); err != nil {
		t.Fatal(err)
	}
	h.etcdBack()
	t.Logf("etcd leader %s back at %s", lead.Name, time.Now().UTC().Format("15:04:05.000"))
	// Cut node 0 off from etcd, then let it back.
	h.outage(0, cutOutage)
	t.Logf("node 0 cut off from etcd at %s", time.Now().UTC().Format("15:04:05.000"))
	part.Cut()
	time.Sleep(step)
	part.Heal()
	t.Logf("node 0 let back at %s", time.Now().UTC().Format("15:04:05.000"))
	h.back(0)
	time.Sleep(runFor - 4*step)
	stopActors()
	// Abandoned services time out within their timeout and the slack:
	// past that, the reapers and the reads time every service out.
	clock.Advance(historyTimeout + slack + time.Second)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var svcs page[struct{ ID string }]
		u.do(nodes[1], "GET", "/services?limit=1000", nil, 200).json(&svcs)
		if len(svcs.Values) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d services left after every timeout passed", len(svcs.Values))
		}
	}

	stopMonitor()
	feed := u.events(nodes[1], start)
	if len(feed) == 0 {
		t.Fatal("empty feed")
	}
	for _, w := range watchers {
		w.target <- feed[len(feed)-1].ID
	}
	watching.Wait()

	checkOrder(t, feed)
	for i, w := range watchers {
		if !slices.EqualFunc(w.got, feed, func(a, b event) bool { return a.ID == b.ID }) {
			t.Errorf("watcher at node %d saw %d events, differing from the %d of the feed", i, len(w.got), len(feed))
		}
	}
	h.checkReplay(feed)
	var inMemory float64
	for _, n := range nodes {
		inMemory += n.metric("svcreg_store_heartbeats_in_memory_total")
	}
	t.Logf("%d events; %d timeouts; killed node %d; %v heartbeats answered from memory since the restart; %d node leases lost; %d failed copy requests seen", len(feed), count(feed, "service.timeout"), killed, inMemory, h.leaseLosses, h.copyTroubles)
}

// historyTimeout is the heartbeat timeout of TestRandomHistory's services.
const historyTimeout = 3 * time.Second

// history is the run's shared setup and what the clients logged.
type history struct {
	t        *testing.T
	u        *user
	nodes    []*node
	slack    time.Duration
	reap     time.Duration // the nodes' ReapInterval
	services []*svcLog
	configs  []*configLog
	quit     chan struct{} // closed: the watchers stop
	// quitLeases closed: watchNodes stops.
	quitLeases chan struct{}
	// lastNode is the node that answered the latest heartbeat.
	lastNode atomic.Int32
	// outages are when each node was killed, cut off from etcd, without a
	// lease or failing to copy to its peer, until it was back.
	mu           sync.Mutex
	outages      map[int][]outage
	leaseLosses  int
	copyTroubles int
	// copyFailures are each node's failed copy requests as last seen, and
	// when (noteCopyFailures).
	copyFailures []float64
	copiesSeen   []time.Time
	// etcdOutages are from when etcd's leader member was stopped until
	// it was back: leadership moves and the nodes' clients fail over from
	// the stopped member meanwhile, and a node's etcd calls, its reaper's
	// too, can stall for seconds on a loaded machine.
	etcdOutages []outage
}

type outage struct {
	from, to time.Time
	kind     outageKind
}

type outageKind int

const (
	// killedOutage: the node crashed. Its peer has a copy of every
	// deadline it handed out, and times its services out at them.
	killedOutage outageKind = iota
	// cutOutage: the node was cut off from etcd; leaseOutage: its lease
	// expired. The node's copies are refused, and it may have been some
	// node's peer.
	cutOutage
	leaseOutage
	// copyOutage: a request carrying the node's copies to its peer failed:
	// for a second it answers heartbeats written to etcd and not copied.
	copyOutage
)

// outage records that node i is killed or cut off now.
func (h *history) outage(i int, kind outageKind) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.outages[i] = append(h.outages[i], outage{from: time.Now(), kind: kind})
}

// noteCopyFailures records an outage of node i if a copy request of its
// failed since the last look: from then until a second after now.
func (h *history) noteCopyFailures(i int) {
	failed := h.nodes[i].metric("svcreg_store_heartbeat_copy_failures_total")
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if failed > h.copyFailures[i] {
		h.outages[i] = append(h.outages[i], outage{from: h.copiesSeen[i], to: now.Add(time.Second), kind: copyOutage})
		h.copyTroubles++
	}
	h.copyFailures[i], h.copiesSeen[i] = failed, now // a restarted node counts from 0 again
}

// back records that node i is back now.
func (h *history) back(i int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.outages[i][len(h.outages[i])-1].to = time.Now()
}

// etcdOutage records that etcd loses its leader now.
func (h *history) etcdOutage() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.etcdOutages = append(h.etcdOutages, outage{from: time.Now()})
}

// etcdBack records that the member that was etcd's leader is back now.
func (h *history) etcdBack() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.etcdOutages[len(h.etcdOutages)-1].to = time.Now()
}

// watchNodes records an outage of each node whose lease expired, as its
// svcreg_store_node_lease_lost_total shows, from two TTLs before the node
// saw it (the lease may have been last renewed then) until it did; and of
// each node whose copy request failed (svcreg_store_heartbeat_copy_failures_total),
// from the last look until a second after it saw it.
func (h *history) watchNodes(ttl time.Duration) {
	seen := make([]float64, len(h.nodes))
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-h.quitLeases:
			return
		case <-tick.C:
		}
		for i, n := range h.nodes {
			lost := n.metric("svcreg_store_node_lease_lost_total")
			if lost > seen[i] {
				now := time.Now()
				h.mu.Lock()
				h.outages[i] = append(h.outages[i], outage{from: now.Add(-2 * ttl), to: now, kind: leaseOutage})
				h.leaseLosses++
				h.mu.Unlock()
			}
			seen[i] = lost // a restarted node counts from 0 again
			h.noteCopyFailures(i)
		}
	}
}

// exposed reports whether a node that may have taken a life's last
// heartbeat (lastNodes) was down at some time from its answer until the
// life was due and reaped (within a second of its deadline): the deadline
// it handed out may have died with it. A node cut off from etcd is down for the whole cut:
// it answers heartbeats from memory meanwhile (until its lease might have
// expired) but cannot time a service out, and the other nodes take its
// services over at their stored deadlines.
//
// A holder can time a service out only through etcd: while etcd's leader
// member is stopped its calls may stall (see etcdOutages), so the second
// in which the life is reaped starts when that member is back, if that is
// later than the deadline.
//
// A node that was killed, and only that, does not expose the life
// (copied reports true instead): it answered a heartbeat from memory only
// once its peer had taken a copy of the deadline, or else wrote it to etcd
// and copied it after, and the peer times the service out at that
// deadline. Unless, from a second before the answer (a node whose copy
// failed writes to etcd without copying for a second) until the life was
// reaped, etcd's leader member was stopped, or any node was cut off or
// lost its lease (the peer then refuses copies, or cannot time out), or
// the killed node's copies failed.
func (h *history) exposed(l *life) (exposed, copied bool) {
	reapedBy := h.reapedBy(l)
	for _, n := range l.lastNodes {
		for _, o := range h.outages[n] {
			if (o.to.IsZero() || o.to.After(l.lastAckAt)) && o.from.UnixMilli() <= reapedBy {
				exposed = true
			}
		}
	}
	if !exposed {
		return false, false
	}
	from := l.lastAckAt.Add(-time.Second).UnixMilli()
	overlaps := func(o outage) bool {
		return o.from.UnixMilli() <= reapedBy && (o.to.IsZero() || o.to.UnixMilli() > from)
	}
	if slices.ContainsFunc(h.etcdOutages, overlaps) {
		return true, false
	}
	for n, os := range h.outages {
		for _, o := range os {
			if overlaps(o) && o.kind != killedOutage && (o.kind != copyOutage || slices.Contains(l.lastNodes, n)) {
				return true, false
			}
		}
	}
	return false, true
}

// reapedBy is when, in ms, a life is surely reaped: a second after its
// deadline, or after the etcd leader member stopped meanwhile is back.
func (h *history) reapedBy(l *life) int64 {
	reapedBy := l.lastDeadline + 1000
	for _, o := range h.etcdOutages {
		if o.from.UnixMilli() <= reapedBy && (o.to.IsZero() || o.to.UnixMilli() > l.lastDeadline) {
			if o.to.IsZero() {
				reapedBy = math.MaxInt64
			} else {
				reapedBy = max(reapedBy, o.to.UnixMilli()+1000)
			}
		}
	}
	return reapedBy
}

// svcLog is what one owner did to one service id, as it saw it.
type svcLog struct {
	id   string
	home int // the node it heartbeats at, unless that fails
	// ambiguous: some request's outcome is unknown (its node died), so
	// the exact checks are off for this id.
	ambiguous bool
	creates   int // acknowledged
	deletes   int
	// lives are the incarnations the owner created, in order.
	lives []*life

	alive          bool
	token          string
	lastBeat       time.Time
	abandonedUntil time.Time
	// lateAt, if set, is when to send a heartbeat that races the reapers:
	// around the service's deadline.
	lateAt time.Time
}

// life is one incarnation: the deadline of the last token its owner got,
// and whether the owner abandoned it, or saw it time out (so it must time
// out).
type life struct {
	lastDeadline int64 // ms
	abandoned    bool
	deleted      bool
	// lastNodes are the nodes the last heartbeat's token was sent to
	// (none yet: empty), the last of which answered, at lastAckAt. Any of
	// them may have taken the heartbeat: a node that committed it and died
	// before its answer got out leaves the retry at another node to answer
	// with the committed token, whose deadline then died with the node
	// that committed it.
	lastNodes []int
	lastAckAt time.Time
}

type configLog struct {
	acked map[string]int // acknowledged changes (sets and deletes), by key
}

// pick returns a random node.
func (h *history) pick(rng *rand.Rand) *node { return h.nodes[rng.IntN(len(h.nodes))] }

// tokenDeadline is the deadline a heartbeat token carries, in ms.
func tokenDeadline(tok string) int64 {
	u, err := timeuuid.Parse(tok)
	if err != nil {
		return 0
	}
	return u.Time().UnixMilli()
}

func (h *history) owner(rng *rand.Rand, ids []*svcLog, stop chan struct{}) {
	for {
		select {
		case <-stop:
			// What is still alive is abandoned now: it times out.
			for _, s := range ids {
				if s.alive {
					s.lives[len(s.lives)-1].abandoned = true
				}
			}
			return
		case <-time.After(time.Duration(20+rng.IntN(60)) * time.Millisecond):
		}
		// Heartbeat whatever is due first, then act on a random id.
		for _, s := range ids {
			switch {
			case !s.alive:
			case !s.lateAt.IsZero():
				if time.Now().After(s.lateAt) {
					s.lateAt = time.Time{}
					h.beat(rng, s)
				}
			case time.Since(s.lastBeat) > 600*time.Millisecond:
				h.beat(rng, s)
			}
		}
		s := ids[rng.IntN(len(ids))]
		switch p := rng.IntN(100); {
		case !s.alive:
			if time.Now().After(s.abandonedUntil) {
				h.create(rng, s)
			}
		case !s.lateAt.IsZero():
		case p < 60:
			h.beat(rng, s)
		case p < 70:
			h.update(rng, s)
		case p < 78:
			h.delete(rng, s)
		case p < 82:
			// Stop heartbeating: it times out a timeout after its last
			// deadline, and the reapers remove it soon after.
			s.alive = false
			s.lives[len(s.lives)-1].abandoned = true
			s.abandonedUntil = time.UnixMilli(s.lives[len(s.lives)-1].lastDeadline).Add(h.slack + 1500*time.Millisecond)
		case p < 88:
			// Heartbeat within 150ms of the deadline: the heartbeat and
			// a timeout race; exactly one may win.
			jitter := time.Duration(rng.IntN(300)-150) * time.Millisecond
			s.lateAt = time.UnixMilli(s.lives[len(s.lives)-1].lastDeadline).Add(jitter)
		}
	}
}

func (h *history) create(rng *rand.Rand, s *svcLog) {
	r, err := h.u.try(h.pick(rng), "POST", "/services", map[string]any{"id": s.id, "heartbeat_timeout": historyTimeout / time.Second, "tags": []string{"t0"}})
	switch {
	case err != nil || r.code >= 500:
		s.ambiguous = true // it may be there: find out next time
	case r.code == 201:
		var out struct{ Token string }
		r.json(&out)
		s.creates++
		s.alive, s.token, s.lastBeat = true, out.Token, time.Now()
		s.lives = append(s.lives, &life{lastDeadline: tokenDeadline(out.Token)})
	case r.code == 400 && r.faultType() == "serviceWithThisIdExists":
		if !s.ambiguous {
			h.t.Errorf("create %s: exists, though its owner deleted it or saw it time out", s.id)
		}
		// An earlier create whose answer was lost made it: delete it.
		if d, err := h.u.try(h.pick(rng), "DELETE", "/services/"+s.id, nil); err == nil && d.code == 204 {
			s.deletes++
		}
	default:
		h.t.Errorf("create %s: %d %s", s.id, r.code, r.body)
	}
}

// beat heartbeats s, mostly at its home node, retrying the same token at
// other nodes on transport errors (design item 6: the retry is safe).
func (h *history) beat(rng *rand.Rand, s *svcLog) {
	var tried []int
	for attempt := 0; ; attempt++ {
		i := s.home
		if attempt > 0 || rng.IntN(5) == 0 {
			i = rng.IntN(len(h.nodes))
		}
		if !slices.Contains(tried, i) {
			tried = append(tried, i)
		}
		r, err := h.u.try(h.nodes[i], "POST", "/services/"+s.id+"/heartbeat", map[string]string{"token": s.token})
		if (err != nil || r.code >= 500) && attempt < 40 {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		l := s.lives[len(s.lives)-1]
		switch {
		case err != nil:
			h.t.Errorf("heartbeat %s: %v", s.id, err)
		case r.code == 200:
			var out struct{ Token string }
			r.json(&out)
			s.token, s.lastBeat = out.Token, time.Now()
			l.lastDeadline = tokenDeadline(out.Token)
			l.lastNodes, l.lastAckAt = tried, time.Now()
			h.lastNode.Store(int32(i))
		case h.late(s, r):
		default:
			h.t.Errorf("heartbeat %s at node %d (%s), %v after the last (answered by node %v, its deadline %s): %d %s",
				s.id, i, h.nodes[i].addr, time.Since(s.lastBeat), l.lastNodes, time.UnixMilli(l.lastDeadline).UTC().Format("15:04:05.000"), r.code, r.body)
			s.alive, s.ambiguous = false, true
		}
		return
	}
}

func (h *history) update(rng *rand.Rand, s *svcLog) {
	tags := []string{fmt.Sprintf("t%d", rng.IntN(3))}
	r, err := h.u.try(h.pick(rng), "PUT", "/services/"+s.id, map[string]any{"tags": tags})
	switch {
	case err != nil || r.code == 204 || r.code >= 500:
	case h.late(s, r):
	case !s.ambiguous:
		h.t.Errorf("update %s: %d %s", s.id, r.code, r.body)
	}
}

// late reports whether r is the 404 of a service its owner did not
// heartbeat in time (its requests waited for a node that went down, say):
// it timed out at its deadline.
func (h *history) late(s *svcLog, r reply) bool {
	l := s.lives[len(s.lives)-1]
	if r.code != 404 || r.faultType() != "notFoundError" || time.Now().UnixMilli() < l.lastDeadline {
		return false
	}
	s.alive = false
	l.abandoned = true
	return true
}

func (h *history) delete(rng *rand.Rand, s *svcLog) {
	r, err := h.u.try(h.pick(rng), "DELETE", "/services/"+s.id, nil)
	s.alive = false
	switch {
	case err != nil || r.code >= 500:
		s.ambiguous = true
		s.abandonedUntil = time.Now().Add(4 * time.Second)
	case r.code == 204:
		s.deletes++
		s.lives[len(s.lives)-1].deleted = true
	case h.late(s, r):
	default:
		h.t.Errorf("delete %s: %d %s", s.id, r.code, r.body)
	}
}

func (h *history) configWriter(rng *rand.Rand, w int, cl *configLog, stop chan struct{}) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-time.After(time.Duration(20+rng.IntN(60)) * time.Millisecond):
		}
		key := fmt.Sprintf("cfg-%d-%d", w, rng.IntN(4))
		if rng.IntN(4) == 0 {
			r, err := h.u.try(h.pick(rng), "DELETE", "/configuration/"+key, nil)
			if err == nil && r.code == 204 {
				cl.acked[key]++
			}
			continue
		}
		// Every value is new, so every acknowledged set is an event.
		r, err := h.u.try(h.pick(rng), "PUT", "/configuration/"+key, map[string]string{"value": fmt.Sprint(i)})
		switch {
		case err != nil || r.code >= 500:
		case r.code == 204:
			cl.acked[key]++
		default:
			h.t.Errorf("set %s: %d %s", key, r.code, r.body)
		}
	}
}

// watcher follows the feed from a marker with long-polls.
type watcher struct {
	last   string // marker to go on from
	got    []event
	target chan string // the id to stop at, once known
}

func (h *history) watch(i int, w *watcher) {
	var target string
	deadline := time.Time{}
	lastID := ""
	for attempt := 0; ; {
		select {
		case target = <-w.target:
			deadline = time.Now().Add(30 * time.Second)
		case <-h.quit:
			return
		default:
		}
		if target != "" && lastID == target {
			return
		}
		if !deadline.IsZero() && time.Now().After(deadline) {
			h.t.Errorf("watcher at node %d did not reach the end of the feed", i)
			return
		}
		n := h.nodes[(i+attempt)%len(h.nodes)]
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		r, err := h.u.tryCtx(ctx, n, "GET", "/events?limit=100&include=service.update&wait=1s&marker="+w.last, nil)
		cancel()
		if err != nil || r.code >= 500 {
			attempt++ // its node is down: try the next one
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if r.code != 200 {
			h.t.Errorf("watcher at node %d: %d %s", i, r.code, r.body)
			return
		}
		var p page[event]
		r.json(&p)
		for _, e := range p.Values {
			if e.ID == lastID {
				continue // the marker is inclusive
			}
			w.got = append(w.got, e)
			lastID = e.ID
		}
		if lastID != "" {
			w.last = lastID
		}
	}
}

// checkOrder: ids strictly increase in UUID time order; none repeats.
func checkOrder(t *testing.T, feed []event) {
	t.Helper()
	var prev timeuuid.UUID
	for i, e := range feed {
		id, err := timeuuid.Parse(e.ID)
		if err != nil {
			t.Fatalf("event %d: id %q: %v", i, e.ID, err)
		}
		if i > 0 && timeuuid.Compare(prev, id) >= 0 {
			t.Errorf("event %d (%s) is not after event %d (%s)", i, e.ID, i-1, prev)
		}
		prev = id
	}
}

// checkReplay replays the feed and compares it with the final state and
// with what the clients were told.
func (h *history) checkReplay(feed []event) {
	t := h.t
	live := map[string]bool{}
	config := map[string]bool{}
	joins, removes, configEvents := map[string]int{}, map[string]int{}, map[string]int{}
	// ends are the events that ended each id's incarnations, in order.
	ends := map[string][]event{}
	for _, e := range feed {
		id := e.subject()
		switch e.Type {
		case "service.join":
			if live[id] {
				t.Errorf("join of %s, which is there", id)
			}
			live[id] = true
			joins[id]++
		case "service.update":
			if !live[id] {
				t.Errorf("update of %s, which is not there", id)
			}
		case "service.remove", "service.timeout":
			if !live[id] {
				t.Errorf("%s of %s, which is not there (a second timeout?)", e.Type, id)
			}
			live[id] = false
			ends[id] = append(ends[id], e)
			if e.Type == "service.remove" {
				removes[id]++
			}
		case "configuration_value.update":
			config[id] = true
			configEvents[id]++
		case "configuration_value.remove":
			if !config[id] {
				t.Errorf("remove of value %s, which is not there", id)
			}
			config[id] = false
			configEvents[id]++
		}
	}
	for _, cl := range h.configs {
		for key, n := range cl.acked {
			if configEvents[key] < n {
				t.Errorf("value %s: %d events for %d acknowledged changes", key, configEvents[key], n)
			}
		}
	}

	// The final state at every node is the replay's.
	for i, n := range h.nodes {
		var svcs page[struct{ ID string }]
		h.u.do(n, "GET", "/services?limit=1000", nil, 200).json(&svcs)
		var got, want []string
		for _, s := range svcs.Values {
			got = append(got, s.ID)
		}
		for id, ok := range live {
			if ok {
				want = append(want, id)
			}
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("node %d lists services %q; the feed replays to %q", i, got, want)
		}
		var cvs page[struct{ ID string }]
		h.u.do(n, "GET", "/configuration?limit=1000", nil, 200).json(&cvs)
		got, want = nil, nil
		for _, cv := range cvs.Values {
			got = append(got, cv.ID)
		}
		for id, ok := range config {
			if ok {
				want = append(want, id)
			}
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("node %d lists values %q; the feed replays to %q", i, got, want)
		}
	}

	exposedN, copiedN, copiedExact := 0, 0, 0
	defer func() {
		t.Logf("%d timeouts of services whose last heartbeat's node went down; %d more of a killed node's services, %d of them at the exact deadline", exposedN, copiedN, copiedExact)
	}()
	for _, s := range h.services {
		if s.ambiguous {
			if joins[s.id] < s.creates || removes[s.id] < s.deletes {
				t.Errorf("%s: %d joins and %d removes in the feed for %d acknowledged creates and %d deletes", s.id, joins[s.id], removes[s.id], s.creates, s.deletes)
			}
			continue
		}
		if joins[s.id] != s.creates || removes[s.id] != s.deletes {
			t.Errorf("%s: %d joins and %d removes in the feed for %d acknowledged creates and %d deletes", s.id, joins[s.id], removes[s.id], s.creates, s.deletes)
			continue
		}
		for k, l := range s.lives {
			if k >= len(ends[s.id]) {
				if l.abandoned || l.deleted {
					t.Errorf("%s: incarnation %d never ended, though abandoned or deleted", s.id, k)
				}
				continue
			}
			end := ends[s.id][k]
			exposed, copied := h.exposed(l)
			switch {
			case l.deleted && end.Type != "service.remove":
				t.Errorf("%s: incarnation %d ended by %s; its owner deleted it", s.id, k, end.Type)
			case !l.deleted && end.Type != "service.timeout":
				t.Errorf("%s: incarnation %d ended by %s; its owner did not delete it", s.id, k, end.Type)
			case end.Type == "service.timeout" && exposed &&
				(end.Timestamp < l.lastDeadline || end.Timestamp > l.lastDeadline+h.slack.Milliseconds()+1):
				t.Errorf("%s: incarnation %d timed out at %d, not within the slack after the deadline %d of the last token its owner got (its node went down)", s.id, k, end.Timestamp, l.lastDeadline)
			case end.Type == "service.timeout" && !exposed && !copied && end.Timestamp != l.lastDeadline:
				t.Errorf("%s: incarnation %d timed out at %d, not at the deadline %d of the last token its owner got", s.id, k, end.Timestamp, l.lastDeadline)
			case end.Type == "service.timeout" && copied &&
				(end.Timestamp < l.lastDeadline || end.Timestamp > l.lastDeadline+2*h.reap.Milliseconds()):
				t.Errorf("%s: incarnation %d timed out at %d, not within two reap intervals of the deadline %d of the last token its owner got (its node was killed; its peer had that deadline)", s.id, k, end.Timestamp, l.lastDeadline)
			case end.Type == "service.timeout" && !l.abandoned:
				t.Errorf("%s: incarnation %d timed out while its owner heartbeated it", s.id, k)
			case end.Type == "service.timeout" && exposed:
				exposedN++
			case end.Type == "service.timeout" && copied:
				copiedN++
				if end.Timestamp == l.lastDeadline {
					copiedExact++
				}
			}
		}
	}
}

func count(evs []event, typ string) int {
	n := 0
	for _, e := range evs {
		if e.Type == typ {
			n++
		}
	}
	return n
}
