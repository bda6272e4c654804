package server

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// An account's answers are bounded by an eighth of the whole, and all
// by the whole; an answer is taken while its account holds none (and
// while none is held at all), whatever its size.
func TestUnsentBudget(t *testing.T) {
	t.Parallel()
	held := prometheus.NewGauge(prometheus.GaugeOpts{Name: "h"})
	b := newUnsentBudget(800, prometheus.NewCounter(prometheus.CounterOpts{Name: "r"}), held)
	take := func(tenant string, n int, want bool) func() {
		t.Helper()
		release, err := b.take(tenant, n)
		if (err == nil) != want {
			t.Fatalf("take %d of %s: %v, want taken %v", n, tenant, err, want)
		}
		return release
	}
	big := take("a", 5000, true) // larger than the whole: none held
	take("b", 1, false)          // the whole is held
	big()
	big() // once only
	if got := testGauge(held); got != 0 {
		t.Fatalf("%v held after the release", got)
	}
	a1 := take("a", 60, true)
	take("a", 41, false) // past a's 100
	a2 := take("a", 40, true)
	var others []func()
	for _, tenant := range []string{"b", "c", "d", "e", "f", "g"} {
		others = append(others, take(tenant, 100, true))
	}
	take("h", 101, false) // 700 held: past the 800
	take("h", 100, true)
	a1()
	a2()
	for _, r := range others {
		r()
	}
	if len(b.byTenant) != 1 || b.all != 100 {
		t.Errorf("held %v by %v; want only h's 100", b.all, b.byTenant)
	}
}
