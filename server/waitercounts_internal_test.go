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
		got := w.most(len(tenants))
		slices.Sort(got)
		slices.Sort(most)
		if !slices.Equal(got, most) || w.top != top {
			t.Fatalf("step %d: most %v (top %d), want %v (top %d)", i, got, w.top, most, top)
		}
		for _, tn := range tenants {
			if w.of(tn) != want[tn] {
				t.Fatalf("step %d: %s has %d, want %d", i, tn, w.of(tn), want[tn])
			}
		}
	}
	if len(w.n) != len(want) || len(w.byCount) > len(want) {
		t.Errorf("%d tenants and %d counts kept, want %d tenants", len(w.n), len(w.byCount), len(want))
	}
	if got := w.most(2); len(got) > 2 {
		t.Errorf("most(2) gave %d tenants", len(got))
	}
}
