package etcdstore

import "sync"

// releaseQueue runs the hand-over requests this node gets (release), at
// most total at once and perTenant of one tenant at once, taking the
// tenants in turn. A hand-over waits for its service's lock, which a
// heartbeat of that service holds through its etcd read: a tenant that
// keeps heartbeats queued on its services, and asks for them to move, would
// otherwise take every slot of one shared pool, and another tenant's
// delete of a service this node holds (a hand-over) waited behind them.
// Adding a request never waits, so the watch that delivers them goes on.
type releaseQueue struct {
	total, perTenant int
	run              func(tenant, id string)
	goroutine        func(func()) // starts a goroutine the store waits for

	mu      sync.Mutex
	running int
	tenants map[string]*tenantReleases
	turn    []string // tenants with requests waiting, in the order they get a turn
}

// tenantReleases is one tenant's requests: how many run, and those
// waiting, each once however often it was asked for.
type tenantReleases struct {
	running int
	waiting []string
	queued  map[string]bool
}

func newReleaseQueue(total, perTenant int, goroutine func(func()), run func(tenant, id string)) *releaseQueue {
	return &releaseQueue{total: total, perTenant: perTenant, run: run, goroutine: goroutine, tenants: map[string]*tenantReleases{}}
}

// add queues a hand-over of tenant's service id and starts what may start.
func (q *releaseQueue) add(tenant, id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	t := q.tenants[tenant]
	if t == nil {
		t = &tenantReleases{queued: map[string]bool{}}
		q.tenants[tenant] = t
	}
	if t.queued[id] {
		return // asked again before it ran: one hand-over answers both
	}
	if len(t.waiting) == 0 {
		q.turn = append(q.turn, tenant)
	}
	t.queued[id] = true
	t.waiting = append(t.waiting, id)
	q.startLocked()
}

// startLocked starts waiting requests, a tenant at a time in turn, while
// slots are free; a tenant whose own slots are taken waits for one of its
// requests to end.
func (q *releaseQueue) startLocked() {
	for i := 0; i < len(q.turn) && q.running < q.total; {
		tenant := q.turn[i]
		t := q.tenants[tenant]
		if t.running >= q.perTenant {
			i++
			continue
		}
		id := t.waiting[0]
		t.waiting = t.waiting[1:]
		delete(t.queued, id)
		t.running++
		q.running++
		// The tenant's turn goes to the back, or it leaves the turn.
		q.turn = append(q.turn[:i], q.turn[i+1:]...)
		if len(t.waiting) > 0 {
			q.turn = append(q.turn, tenant)
		}
		q.goroutine(func() {
			defer q.done(tenant)
			q.run(tenant, id)
		})
	}
}

// done ends a request of tenant, and starts what may start.
func (q *releaseQueue) done(tenant string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	t := q.tenants[tenant]
	t.running--
	q.running--
	if t.running == 0 && len(t.waiting) == 0 {
		delete(q.tenants, tenant)
	}
	q.startLocked()
}
