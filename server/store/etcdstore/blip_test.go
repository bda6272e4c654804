package etcdstore

import (
	"testing"
	"time"
)

// A reaper call that fails or stalls is a blip: while the calls fail, a
// deadline after the start of the last good pass is left alone; the first
// call that answers again, or a stalled one that answers, ends the blip,
// which graces such a deadline for its timeout from its end, as an outage
// does; the node key does not show it.
func TestBlipGrace(t *testing.T) {
	t.Parallel()
	s := func(ms int) int64 { return int64(ms) * int64(time.Millisecond) }
	graced := func(o *outages, deadline, now int) (int64, bool) {
		return o.graced(s(deadline), 3*time.Second, s(now), false, false)
	}
	mono := time.Now()
	at := func(ms int) time.Time { return mono.Add(time.Duration(ms) * time.Millisecond) }

	var o outages
	// Before the node registered, nothing to grace from.
	o.reapCallSent(at(0))
	if _, ok := o.reapCallDone(at(0), at(2000), s(2000), false); ok {
		t.Error("a blip before the first pass ended")
	}
	o.reapPassEnded(s(0))
	o.reapCallSent(at(2500))
	if _, ok := o.reapCallDone(at(2500), at(2510), s(2510), false); ok {
		t.Error("a quick call is a blip")
	}
	o.reapPassEnded(s(2500))

	// A pass whose call fails: a deadline after 2.5 s is left alone, one
	// before is not.
	o.reapCallSent(at(3000))
	o.reapCallDone(at(3000), at(3100), s(3100), true)
	o.reapPassEnded(s(3000))
	if until, ok := graced(&o, 2600, 4000); !ok || until != 0 {
		t.Errorf("while the reaper's calls fail: graced %v until %v, want until unknown", ok, until)
	}
	if _, ok := graced(&o, 2400, 4000); ok {
		t.Error("a deadline before the last good pass is graced")
	}
	if o.over(s(4000), false) {
		t.Error("over while the reaper's calls fail")
	}
	// The first call that answers ends the blip at 4.01 s.
	o.reapCallSent(at(4000))
	span, ok := o.reapCallDone(at(4000), at(4010), s(4010), false)
	if !ok || span != (outageSpan{s(2500), s(4010)}) {
		t.Fatalf("blip %v %+v, want 2.5 s to 4.01 s", ok, span)
	}
	o.reapPassEnded(s(4000))
	if until, ok := graced(&o, 2600, 5000); !ok || until != s(7010) {
		t.Errorf("after the blip: graced %v until %v, want until 7.01 s", ok, until)
	}
	if _, ok := graced(&o, 2600, 7010); ok {
		t.Error("graced past the blip's end and the timeout")
	}
	if _, _, unshown := o.toShow(); unshown || len(o.spans) != 0 {
		t.Error("a blip is to be shown in the node key")
	}

	// A call in flight for longer than blipAfter: a deadline after the
	// last good pass (4 s) is left alone while it goes on; when it
	// answers, the blip runs from that pass to its answer.
	o.reapCallSent(time.Now().Add(-time.Second))
	if until, ok := graced(&o, 4100, 5000); !ok || until != 0 {
		t.Errorf("while the reaper's call stalls: graced %v until %v, want until unknown", ok, until)
	}
	span, ok = o.reapCallDone(at(4500), at(5200), s(5200), false)
	if !ok || span != (outageSpan{s(4000), s(5200)}) {
		t.Fatalf("blip %v %+v, want 4 s to 5.2 s", ok, span)
	}
	if until, ok := graced(&o, 4100, 5300); !ok || until != s(8200) {
		t.Errorf("after a stalled call: graced %v until %v, want until 8.2 s", ok, until)
	}
	// The blips are kept, and over, as long as the longest grace.
	o.reapPassEnded(s(4500))
	if o.over(s(5200)+int64(maxGrace)-1, false) || !o.over(s(5200)+int64(maxGrace), false) {
		t.Error("blips not over only past the longest grace")
	}
	o.reapCallSent(at(200_000))
	o.reapCallDone(at(200_000), at(201_000), s(201_000), false)
	if len(o.blips) != 1 {
		t.Errorf("blips past their grace kept: %+v", o.blips)
	}

	// Before its first pass ends, the reaper's blip begins at the
	// node's registration.
	var p outages
	p.join(s(100), 1, 0)
	p.reapCallSent(at(0))
	p.reapCallDone(at(0), at(10), s(110), true)
	if until, ok := graced(&p, 200, 1000); !ok || until != 0 {
		t.Errorf("while the first pass's calls fail: graced %v until %v, want until unknown", ok, until)
	}
	if span, ok := p.reapCallDone(at(900), at(910), s(1010), false); !ok || span != (outageSpan{s(100), s(1010)}) {
		t.Errorf("first blip %v %+v, want from the registration (0.1 s) to 1.01 s", ok, span)
	}
}
