package etcdstore

import (
	"testing"
	"time"
)

// An outage is a gap between renewals longer than the node counts on its
// lease; a service whose deadline passed in it is left its timeout from
// the outage's end, one due before it is not, and the grace ends.
func TestOutageGrace(t *testing.T) {
	t.Parallel()
	var o outages
	base := time.Unix(1_000_000, 0)
	mono := time.Now()
	at := func(d time.Duration) time.Time { return base.Add(d) }
	ns := func(d time.Duration) int64 { return at(d).UnixNano() }
	gap := 1500 * time.Millisecond

	// The first renewal ends no outage, nor does one on time.
	if _, ok := o.reached(mono, at(0), at(0), gap); ok {
		t.Fatal("the first renewal ended an outage")
	}
	if _, ok := o.reached(time.Now(), at(time.Second), at(time.Second), gap); ok {
		t.Fatal("a renewal on time ended an outage")
	}
	// Cut off: a deadline after the last renewal is graced, one before
	// it is not.
	if !o.graced(ns(2*time.Second), 3*time.Second, ns(5*time.Second), true) {
		t.Error("while cut off, a deadline after the last renewal is timed out")
	}
	if o.graced(ns(500*time.Millisecond), 3*time.Second, ns(5*time.Second), true) {
		t.Error("while cut off, a deadline before the last renewal is graced")
	}
	// Back after a gap: the outage runs from the last renewal asked to now.
	o.lastAsked = time.Now().Add(-10 * time.Second) // as if it had waited that long
	span, ok := o.reached(time.Now(), at(11*time.Second), at(11*time.Second), gap)
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
		{12 * time.Second, 13 * time.Second, true},  // due within the grace (rules the same)
		{20 * time.Second, 21 * time.Second, false}, // after the grace
	} {
		if got := o.graced(ns(tc.deadline), 3*time.Second, ns(tc.now), false); got != tc.want {
			t.Errorf("deadline %v at %v: graced %v, want %v", tc.deadline, tc.now, got, tc.want)
		}
	}
	// Spans are dropped once no grace can be left.
	o.reached(time.Now(), at(11*time.Second+maxGrace+time.Second), at(11*time.Second+maxGrace+time.Second), gap)
	if len(o.spans) != 0 {
		t.Errorf("spans kept past the longest grace: %+v", o.spans)
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
