package server

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// readGate bounds how many list reads (a page of services, configuration
// values or events) of one account run at once. Such a read of an
// account's largest data decodes and encodes megabytes: 200 services of
// the largest metadata are some 5 MB of JSON, some 90 ms of CPU a page.
// Without a bound, one account sending such reads on many connections at
// once took every core from the others (another account's reads waited
// 100 ms and more). Reads past the bound wait their turn, as long as their
// request lives, up to maxWaiting of them (Config.MaxListReadsWaitingPerTenant);
// past that a read is refused at once (rate-limited, to be sent again a
// second later): each waiting read holds its connection, and an account
// that kept sending slow reads on new connections held every file
// descriptor of the server. An account's
// other requests (heartbeats, single reads, writes) do not wait.
type readGate struct {
	slots, maxWaiting int
	waiting           prometheus.Gauge
	refused           prometheus.Counter

	mu       sync.Mutex
	accounts map[string]*gateSlots
}

// gateSlots are one account's slots, how many reads hold or want one, and
// how many wait.
type gateSlots struct {
	ch             chan struct{}
	users, waiting int
}

// listReadSlots is the most list reads of one account that run at once:
// half the processors, at least one, so that one account leaves the
// others at least half of them.
func listReadSlots() int { return max(1, runtime.GOMAXPROCS(0)/2) }

func newReadGate(slots, maxWaiting int, waiting prometheus.Gauge, refused prometheus.Counter) *readGate {
	return &readGate{slots: slots, maxWaiting: maxWaiting, waiting: waiting, refused: refused, accounts: map[string]*gateSlots{}}
}

// enter waits for a slot of the account, and returns the function that
// gives it back; or ctx's error if ctx ends first, or the rate-limit
// fault if maxWaiting reads of the account wait already.
func (g *readGate) enter(ctx context.Context, tenant string) (leave func(), err error) {
	g.mu.Lock()
	a := g.accounts[tenant]
	if a == nil {
		a = &gateSlots{ch: make(chan struct{}, g.slots)}
		g.accounts[tenant] = a
	}
	a.users++
	g.mu.Unlock()
	leave = func() {
		<-a.ch
		g.done(tenant, a)
	}
	select {
	case a.ch <- struct{}{}:
		return leave, nil
	default:
	}
	g.mu.Lock()
	if a.waiting >= g.maxWaiting {
		g.mu.Unlock()
		g.refused.Inc()
		g.done(tenant, a)
		f := rateLimited(fmt.Sprintf("Limit of %d list reads of the account waiting at once, behind the %d that run, has been reached", g.maxWaiting, g.slots), time.Second)
		f.readRefused = true
		return nil, f
	}
	a.waiting++
	g.mu.Unlock()
	g.waiting.Inc()
	defer func() {
		g.waiting.Dec()
		g.mu.Lock()
		a.waiting--
		g.mu.Unlock()
	}()
	select {
	case a.ch <- struct{}{}:
		return leave, nil
	case <-ctx.Done():
		g.done(tenant, a)
		return nil, context.Cause(ctx)
	}
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
