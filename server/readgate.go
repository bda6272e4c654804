package server

import (
	"context"
	"runtime"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// readGate bounds how many list reads (a page of services, configuration
// values or events) of one account run at once. Such a read of an
// account's largest data decodes and encodes megabytes: 200 services of
// the largest metadata are some 5 MB of JSON, some 90 ms of CPU a page.
// Without a bound, one account sending such reads on many connections at
// once took every core from the others (another account's reads waited
// 100 ms and more). Reads past the bound wait their turn, as long as their
// request lives; an account's other requests (heartbeats, single reads,
// writes) do not wait.
type readGate struct {
	slots   int
	waiting prometheus.Gauge

	mu       sync.Mutex
	accounts map[string]*gateSlots
}

// gateSlots are one account's slots, and how many reads hold or want one.
type gateSlots struct {
	ch    chan struct{}
	users int
}

// listReadSlots is the most list reads of one account that run at once:
// half the processors, at least one, so that one account leaves the
// others at least half of them.
func listReadSlots() int { return max(1, runtime.GOMAXPROCS(0)/2) }

func newReadGate(slots int, waiting prometheus.Gauge) *readGate {
	return &readGate{slots: slots, waiting: waiting, accounts: map[string]*gateSlots{}}
}

// enter waits for a slot of the account, and returns the function that
// gives it back; or ctx's error if ctx ends first.
func (g *readGate) enter(ctx context.Context, tenant string) (leave func(), err error) {
	g.mu.Lock()
	a := g.accounts[tenant]
	if a == nil {
		a = &gateSlots{ch: make(chan struct{}, g.slots)}
		g.accounts[tenant] = a
	}
	a.users++
	g.mu.Unlock()
	select {
	case a.ch <- struct{}{}:
	default:
		g.waiting.Inc()
		select {
		case a.ch <- struct{}{}:
			g.waiting.Dec()
		case <-ctx.Done():
			g.waiting.Dec()
			g.done(tenant, a)
			return nil, context.Cause(ctx)
		}
	}
	return func() {
		<-a.ch
		g.done(tenant, a)
	}, nil
}

// done counts a read of the account's off, and forgets the account once
// none holds or wants a slot.
func (g *readGate) done(tenant string, a *gateSlots) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if a.users--; a.users == 0 {
		delete(g.accounts, tenant)
	}
}
