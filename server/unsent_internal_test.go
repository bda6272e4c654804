package server

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// An account's answers are bounded by an eighth of the whole, and an
// account's that holds some by the whole; one of an account that holds
// none is taken, whatever its size, up to twice the whole in all.
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
	take("b", 1, false)          // past twice the whole
	big()
	big() // once only
	if got := testGauge(held); got != 0 {
		t.Fatalf("%v held after the release", got)
	}
	var all []func()
	all = append(all, take("a", 60, true))
	take("a", 41, false) // past a's 100
	all = append(all, take("a", 40, true))
	for _, tenant := range []string{"b", "c", "d", "e", "f", "g", "h"} {
		all = append(all, take(tenant, 100, true))
	}
	take("h", 1, false)                     // the whole is held, and h holds some
	all = append(all, take("i", 100, true)) // i holds none: past the whole
	all = append(all, take("j", 699, true))
	take("k", 2, false) // past twice the whole
	for _, r := range all {
		r()
	}
	if len(b.byTenant) != 0 || b.all != 0 {
		t.Errorf("held %v by %v after every release", b.all, b.byTenant)
	}
}
