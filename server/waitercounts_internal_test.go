package server

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// waiterCounts keeps each tenant's count and the tenants holding the
// most through any sequence of changes, a group's many at once included:
// checked against counting them all afresh.
func TestWaiterCounts(t *testing.T) {
	w := newWaiterCounts()
	want := map[string]int{}
	tenants := []string{"a", "b", "c", "d", "e"}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		tn := tenants[rng.IntN(len(tenants))]
		d := rng.IntN(5) + 1
		if rng.IntN(50) == 0 {
			d = rng.IntN(200) + 1 // a group answered at once, or many parked
		}
		if rng.IntN(2) == 0 {
			d = -min(d, want[tn]) // never below zero, as the poller
		}
		w.add(tn, d)
		if want[tn] += d; want[tn] == 0 {
			delete(want, tn)
		}
		top := 0
		var most []string
		for tn, n := range want {
			if n > top {
				top, most = n, nil
			}
			if n == top {
				most = append(most, tn)
			}
		}
		got := slices.Collect(w.most(len(tenants)))
		slices.Sort(got)
		slices.Sort(most)
		if !slices.Equal(got, most) || w.top != top {
			t.Fatalf("step %d: most %v (top %d), want %v (top %d)", i, got, w.top, most, top)
		}
		if few := slices.Collect(w.most(1)); len(most) > 0 && (len(few) != 1 || !slices.Contains(most, few[0])) {
			t.Fatalf("step %d: most(1) %v, want one of %v", i, few, most)
		}
		for _, tn := range tenants {
			if w.of(tn) != want[tn] {
				t.Fatalf("step %d: %s has %d, want %d", i, tn, w.of(tn), want[tn])
			}
		}
	}
	if len(w.n) != len(want) {
		t.Errorf("%d tenants kept, want %d", len(w.n), len(want))
	}
	// Once each count has been reached, a poll allocates nothing.
	w.add("a", 3)
	w.add("a", -3)
	if n := testing.AllocsPerRun(100, func() { w.add("a", 1); w.add("a", -1) }); n != 0 {
		t.Errorf("%v allocations a poll", n)
	}
}
