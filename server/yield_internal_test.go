package server

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/svcreg/svcreg/server/store"
)

// yieldPoller is a poller with room for maxWaiters waiting long-polls, as
// many a tenant.
func yieldPoller(maxWaiters int) *poller {
	s := &Server{closing: make(chan struct{}), metrics: newServerMetrics(nil), store: &feedStore{}}
	s.cfg.MaxWaiters, s.cfg.MaxWaitersPerTenant = maxWaiters, maxWaiters
	s.poller = newPoller(s)
	return s.poller
}

// parkFake counts a waiting poll of tenant and parks it in pl's sets; its
// answer goes to a pipe that is read to the end.
func parkFake(t *testing.T, pl *poller, tenant string) *parkedPoll {
	t.Helper()
	if pl.addWaiter(tenant) != admitted {
		t.Fatalf("%s: not admitted", tenant)
	}
	c1, c2 := net.Pipe()
	go io.Copy(io.Discard, c2)
	t.Cleanup(func() { c1.Close(); c2.Close() })
	p := &parkedPoll{conn: c1, tenant: tenant, timer: time.NewTimer(time.Hour), q: store.EventQuery{Limit: 100}}
	pl.mu.Lock()
	defer pl.mu.Unlock()
	pl.parked.Add(1)
	ps := pl.sets[tenant]
	if ps == nil {
		ps = &pollSet{groups: map[pollKey]*pollGroup{}, kick: make(chan struct{}, 1)}
		pl.sets[tenant] = ps
	}
	key := keyOf(p.q)
	g := ps.groups[key]
	if g == nil {
		g = &pollGroup{q: p.q, polls: map[*parkedPoll]struct{}{}}
		ps.groups[key] = g
	}
	g.polls[p] = struct{}{}
	ps.n++
	return p
}

func (pl *poller) parkedOf(tenant string) int {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if ps := pl.sets[tenant]; ps != nil {
		return ps.n
	}
	return 0
}

// A poll admitted past the cap on condition of a yield takes no slot if,
// by the time it is about to wait, others have left and there is room:
// no parked poll gives way for it, and it waits (even when the polls that
// left were those that would have given way).
func TestYieldOnlyPastTheCap(t *testing.T) {
	for _, leave := range []int{2, 3} {
		pl := yieldPoller(5)
		var as []*parkedPoll
		for range 4 {
			as = append(as, parkFake(t, pl, "a"))
		}
		parkFake(t, pl, "c")
		if adm := pl.addWaiter("b"); adm != onYield {
			t.Fatalf("b: %v, want onYield", adm)
		}
		for _, p := range as[:leave] { // answered while b's poll reads
			if _, ok := pl.take(p); !ok {
				t.Fatal("take")
			}
		}
		if !pl.yield("b") {
			t.Errorf("%d left: b's poll may not wait", leave)
		}
		if n := pl.parkedOf("a"); n != 4-leave {
			t.Errorf("%d left: a has %d parked, want %d: one gave way with room to spare", leave, n, 4-leave)
		}
	}
}

// A tenant has at most maxYields polls admitted on condition of a yield at
// once (its reads may wait behind its own read gate for as long as their
// requests last): another tenant's are still admitted so.
func TestYieldsBoundedByTenant(t *testing.T) {
	pl := yieldPoller(20)
	parkFake(t, pl, "a")
	for range 19 {
		pl.addWaiter("a")
	}
	for i := range maxYields + 1 {
		want := onYield
		if i == maxYields {
			want = refused
		}
		if adm := pl.addWaiter("b"); adm != want {
			t.Fatalf("b's poll %d: %v, want %v", i, adm, want)
		}
	}
	if adm := pl.addWaiter("c"); adm != onYield {
		t.Errorf("c: %v, want onYield", adm)
	}
	pl.removeWaiter("b", true)
	if adm := pl.addWaiter("b"); adm != onYield {
		t.Errorf("b's poll after one of its own ended: %v, want onYield", adm)
	}
}
