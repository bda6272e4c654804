package etcdstore

import (
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// An outage is a renewal that finds the node no longer counting on its
// lease; a service whose deadline passed since the renewal before it is
// left its timeout from the outage's end, one due before it is not, and
// the grace ends.
func TestOutageGrace(t *testing.T) {
	t.Parallel()
	var o outages
	base := time.Unix(1_000_000, 0)
	at := func(d time.Duration) time.Time { return base.Add(d) }
	ns := func(d time.Duration) int64 { return at(d).UnixNano() }
	graced := func(deadline, now time.Duration, cutOff bool) (int64, bool) {
		return o.graced(ns(deadline), 3*time.Second, ns(now), cutOff, false)
	}

	// The first registration ends no outage, even without a lease before
	// it; a renewal on time (the lease counted on) ends none.
	if _, ok := o.reached(at(0), at(0), true); ok {
		t.Fatal("the first registration ended an outage")
	}
	if _, ok := o.reached(at(time.Second), at(time.Second), false); ok {
		t.Fatal("a renewal on time ended an outage")
	}
	// Cut off: a deadline after the last renewal is graced, until a time
	// not known yet; one before it is not.
	if until, ok := graced(2*time.Second, 5*time.Second, true); !ok || until != 0 {
		t.Errorf("while cut off, a deadline after the last renewal: %v, %v", until, ok)
	}
	if _, ok := graced(time.Second/2, 5*time.Second, true); ok {
		t.Error("while cut off, a deadline before the last renewal is graced")
	}
	// Back: the outage runs from the last renewal asked to now.
	span, ok := o.reached(at(11*time.Second), at(11*time.Second), true)
	if !ok || span != (outageSpan{ns(time.Second), ns(11 * time.Second)}) {
		t.Fatalf("outage = %+v, %v; want from 1 s to 11 s", span, ok)
	}
	for _, tc := range []struct {
		deadline, now time.Duration
		want          bool
	}{
		{5 * time.Second, 12 * time.Second, true},   // in the outage, within its grace
		{5 * time.Second, 14 * time.Second, false},  // its timeout (3 s) past the end
		{11 * time.Second, 13 * time.Second, true},  // due as it ended
		{time.Second / 2, 12 * time.Second, false},  // due before it began
		{12 * time.Second, 13 * time.Second, true},  // due within the grace (the same rule)
		{20 * time.Second, 21 * time.Second, false}, // after the grace
	} {
		until, got := graced(tc.deadline, tc.now, false)
		if got != tc.want || got && until != ns(14*time.Second) {
			t.Errorf("deadline %v at %v: graced %v until %v, want %v until 14 s", tc.deadline, tc.now, got, until, tc.want)
		}
	}
	// Spans are dropped once no grace can be left, and the outages are
	// over then.
	if o.over(ns(12*time.Second), false) || o.over(ns(11*time.Second+maxGrace+time.Second), true) {
		t.Error("outages over within the longest grace, or while cut off")
	}
	if !o.over(ns(11*time.Second+maxGrace+time.Second), false) {
		t.Error("outages not over past the longest grace")
	}
	o.reached(at(11*time.Second+maxGrace+time.Second), at(11*time.Second+maxGrace+time.Second), false)
	if len(o.spans) != 0 {
		t.Errorf("spans kept past the longest grace: %+v", o.spans)
	}
}

// A node that joined a running registry leaves the services it does not
// hold to the others for its first moments, and takes of another node's
// outages the part before it joined of those that began before then; the
// node key is to show what it has.
func TestAdoptOutages(t *testing.T) {
	t.Parallel()
	var o outages
	s := func(sec int) int64 { return int64(sec) * int64(time.Second) }
	if got := o.adopt([]outageSpan{{s(1), s(2)}}, s(3)); got != nil {
		t.Errorf("adopted %+v before joining", got)
	}
	o.join(s(100), 10, s(103))
	o.join(s(200), 20, 0) // registered again: nothing changes
	if _, ok := o.graced(s(50), 3*time.Second, s(102), false, false); !ok {
		t.Error("just joined, a service this node does not hold is timed out")
	}
	if until, ok := o.graced(s(101), 3*time.Second, s(102), false, true); ok {
		t.Errorf("just joined, a service this node holds is graced until %v", until)
	}
	if o.over(s(102), false) || !o.over(s(103), false) {
		t.Error("outages not over only when the first moments are")
	}
	if _, _, unshown := o.toShow(); unshown {
		t.Error("nothing to show before any outage")
	}
	got := o.adopt([]outageSpan{
		{s(80), s(90)},   // before it joined: whole
		{s(95), s(105)},  // going on as it joined: up to then
		{s(101), s(104)}, // since it joined: its own to see
		{s(-60), s(-30)}, // no grace left
	}, s(104))
	if want := []outageSpan{{s(80), s(90)}, {s(95), s(100)}}; !slices.Equal(got, want) {
		t.Errorf("adopted %+v, want %+v", got, want)
	}
	if again := o.adopt([]outageSpan{{s(80), s(90)}}, s(104)); again != nil {
		t.Errorf("adopted %+v twice", again)
	}
	if until, ok := o.graced(s(85), 10*time.Second, s(99), false, true); !ok || until != s(100) {
		t.Errorf("a held service due in an adopted outage: graced %v until %v, want until 100 s", ok, until)
	}
	spans, gen, unshown := o.toShow()
	if !unshown || len(spans) != 2 {
		t.Fatalf("to show: %+v, %v; want the two adopted", spans, unshown)
	}
	o.showing(gen)
	if _, _, unshown := o.toShow(); unshown {
		t.Error("shown, and still to show")
	}
}

// A node that joined a running registry leaves the services it does not
// hold to the others until each node running then has written its key
// since (or is gone), and no longer than its first moments.
func TestJoinWaitsForTheRunningNodes(t *testing.T) {
	t.Parallel()
	s := func(sec int) int64 { return int64(sec) * int64(time.Second) }
	blind := func(o *outages, now int64) bool {
		_, ok := o.graced(s(50), 3*time.Second, now, false, false)
		return ok
	}
	var o outages
	o.join(s(100), 10, s(110))
	if o.nodeWritten("a", 11, false, s(101)) || !blind(&o, s(101)) {
		t.Error("the wait ended before the nodes were listed")
	}
	// a and c were running (written before the join), b registered since.
	if o.nodesListed(map[string]int64{"a": 5, "b": 12, "c": 7}, s(101)) {
		t.Fatal("the wait ended with nodes left to write")
	}
	if o.nodeWritten("a", 9, false, s(101)) || o.nodeWritten("b", 13, false, s(101)) {
		t.Error("the wait ended on a write from before the join, or of a node not waited for")
	}
	if o.nodeWritten("a", 11, false, s(101)) || !blind(&o, s(101)) {
		t.Error("the wait ended with c left")
	}
	if !o.nodeWritten("c", 0, true, s(101)) || blind(&o, s(101)) {
		t.Error("the wait did not end once every node had written its key or gone")
	}

	// A later list drops the nodes written since, and gone.
	var p outages
	p.join(s(100), 10, s(110))
	p.nodesListed(map[string]int64{"a": 5, "c": 7}, s(101))
	if !p.nodesListed(map[string]int64{"a": 14}, s(101)) || blind(&p, s(101)) {
		t.Error("a later list did not end the wait")
	}
	// Without an answer, the wait ends with the first moments.
	var q outages
	q.join(s(100), 10, s(110))
	q.nodesListed(map[string]int64{"a": 5}, s(101))
	if !blind(&q, s(109)) || blind(&q, s(110)) {
		t.Error("the wait did not end with the first moments, or before")
	}
	// A node that restarted the registry waits for nothing.
	var r outages
	r.join(s(100), 10, 0)
	if r.nodesListed(map[string]int64{"a": 5}, s(101)) || blind(&r, s(101)) {
		t.Error("a node that found no other running waits")
	}
}

// A node does not adopt back its own outage, which began at its
// registration, from the key of a node that joined later.
func TestOwnOutageIsNotAdoptedBack(t *testing.T) {
	t.Parallel()
	var o outages
	t0 := time.Unix(1000, 0)
	o.join(t0.UnixNano(), 5, 0)                       // before the registration is asked
	o.reached(t0, t0.Add(10*time.Millisecond), false) // the registration
	span, ok := o.reached(t0.Add(time.Second), t0.Add(3*time.Second), true)
	if !ok {
		t.Fatal("no outage recorded")
	}
	if got := o.adopt([]outageSpan{span}, t0.Add(6*time.Second).UnixNano()); got != nil {
		t.Errorf("adopted its own outage back from another node's key: %+v", got)
	}
}

// The keys left to their grace are forgotten once it ends, and all of them
// once the outages are over.
func TestGracedDue(t *testing.T) {
	t.Parallel()
	var g gracedDue
	g.add("a", 100, 0)
	g.add("b", 200, 0)
	if !g.has("a", 50) || g.has("a", 100) || g.has("a", 50) {
		t.Error("a key is not left to its grace until its end, and only until then")
	}
	g.clear()
	if g.has("b", 150) {
		t.Error("a key outlived clear")
	}
}

// A renewal that finds the lease no longer counted on (its time passed, by
// either clock: a suspended machine's too) records the outage before the
// lease counts again, so that no reaper finds the one without the other.
func TestRenewalAfterALapseRecordsTheOutage(t *testing.T) {
	t.Parallel()
	clock := time.Unix(2_000_000, 0)
	s := &Store{opts: Options{Clock: func() time.Time { return clock }}, log: slog.New(slog.DiscardHandler), metrics: newMetrics(prometheus.NewRegistry(), func() bool { return false })}
	s.renewed(7, time.Now(), clock, 5) // registered
	clock = clock.Add(time.Minute)
	// The lease was asked for an hour ago by the monotonic clock: it is
	// not counted on now (as after a pause that the wall clock shows).
	s.lease.set(7, time.Now().Add(-time.Hour), 5)
	s.lease.mu.Lock()
	s.lease.until = time.Now().Add(-time.Minute)
	s.lease.mu.Unlock()
	due := clock.Add(-30 * time.Second).UnixNano()
	if !s.graced(due, 10, clock.UnixNano(), false) {
		t.Fatal("while the lease is not counted on, a deadline since the last renewal is timed out")
	}
	s.renewed(7, time.Now(), clock, 5)
	if _, alive := s.lease.get(); !alive {
		t.Fatal("the renewal left the lease not counted on")
	}
	if !s.graced(due, 10, clock.Add(5*time.Second).UnixNano(), false) {
		t.Error("after the renewal, a deadline that passed in the lapse is timed out within its grace")
	}
	if s.graced(due, 10, clock.Add(11*time.Second).UnixNano(), false) {
		t.Error("the grace outlived the service's timeout after the outage")
	}
}

// A registration after the lease was lost, written before the outage it
// ends is recorded, shows the outage so far.
func TestRegistrationShowsTheOutageGoingOn(t *testing.T) {
	t.Parallel()
	clock := time.Unix(3_000_000, 0)
	s := &Store{opts: Options{Clock: func() time.Time { return clock }}, log: slog.New(slog.DiscardHandler), metrics: newMetrics(prometheus.NewRegistry(), func() bool { return false })}
	s.renewed(7, time.Now(), clock, 5)
	if v := s.nodeValue(); len(v.Outages) != 0 {
		t.Fatalf("a node counting on its lease shows %+v", v.Outages)
	}
	clock = clock.Add(time.Minute)
	s.lease.mu.Lock()
	s.lease.until = time.Now().Add(-time.Minute)
	s.lease.mu.Unlock()
	v := s.nodeValue()
	if want := (outageJSON{time.Unix(3_000_000, 0).UTC(), clock.UTC()}); len(v.Outages) != 1 || v.Outages[0] != want {
		t.Errorf("cut off, the node key shows %+v, want %+v", v.Outages, want)
	}
}

func TestImpliedTimeout(t *testing.T) {
	t.Parallel()
	seen := time.UnixMilli(1_700_000_000_123)
	for _, tc := range []struct {
		hb   hbRecord
		want int
	}{
		{hbRecord{LastSeen: seen.UnixMilli(), Deadline: seen.Add(30*time.Second + 400*time.Microsecond).UnixNano()}, 30},
		{hbRecord{LastSeen: seen.UnixMilli(), Deadline: seen.Add(3 * time.Second).UnixNano()}, 3},
		{hbRecord{Deadline: seen.UnixNano()}, 120},
	} {
		if got := impliedTimeout(tc.hb); got != tc.want {
			t.Errorf("impliedTimeout(%+v) = %d, want %d", tc.hb, got, tc.want)
		}
	}
}
