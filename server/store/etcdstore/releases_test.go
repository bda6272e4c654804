package etcdstore

import (
	"fmt"
	"sync"
	"testing"
)

// One tenant's hand-overs, each stuck behind its service's lock, take at
// most their tenant's share of the slots: another tenant's hand-over
// still runs, adding a request never waits, and a request asked for again
// before it ran runs once.
func TestReleaseQueueSharesTheSlotsByTenant(t *testing.T) {
	t.Parallel()
	var (
		mu      sync.Mutex
		ran     = map[string]int{}
		stuck   = make(chan struct{})
		started = make(chan string, 100)
		wg      sync.WaitGroup
	)
	q := newReleaseQueue(3, 2, wg.Go, func(tenant, id string) {
		mu.Lock()
		ran[tenant+"/"+id]++
		mu.Unlock()
		started <- tenant + "/" + id
		if tenant == "busy" {
			<-stuck
		}
	})
	for i := range 10 {
		q.add("busy", fmt.Sprint("svc-", i))
	}
	q.add("busy", "svc-9") // again, before it ran
	<-started
	<-started // the busy tenant's two slots
	q.add("other", "svc-1")
	if got := <-started; got != "other/svc-1" {
		t.Fatalf("started %s; want the other tenant's hand-over, with the busy tenant's share taken", got)
	}
	close(stuck)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for i := range 10 {
		if n := ran[fmt.Sprint("busy/svc-", i)]; n != 1 {
			t.Errorf("busy/svc-%d ran %d times, want once", i, n)
		}
	}
	if len(q.tenants) != 0 || len(q.turn) != 0 || q.running != 0 {
		t.Errorf("after all ran: %d tenants, %d in turn, %d running; want none", len(q.tenants), len(q.turn), q.running)
	}
}
