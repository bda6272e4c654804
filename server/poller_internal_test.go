package server

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/server/store"
)

// feedStore is a feed in memory, paged as the stores page it, that
// counts its reads.
type feedStore struct {
	store.Store
	events []store.Event
	reads  int
}

func (f *feedStore) Events(ctx context.Context, tenant string, q store.EventQuery) (store.EventPage, error) {
	f.reads++
	var page store.EventPage
	if n := len(f.events); n > 0 {
		page.Head = f.events[n-1].ID
	}
	size := 0
	for _, ev := range f.events {
		if timeuuid.Compare(ev.ID, q.From) < 0 || !store.Matches(q.Types, ev.Type) {
			continue
		}
		if q.Full(len(page.Values), size, len(ev.JSON)) {
			page.Next = ev.ID
			break
		}
		size += len(ev.JSON)
		page.Values = append(page.Values, ev)
	}
	return page, nil
}

// A burst of commits between two wake-ups, more than one page of the
// feed: the groups read before are checked page by page, once for all of
// them, up to the head; one with news is left to read its own page.
func TestCheckSharedPagesThroughABurst(t *testing.T) {
	f := &feedStore{}
	for i := range 2500 {
		f.events = append(f.events, store.Event{ID: timeuuid.New(uint64(1000+i), 0), Type: registry.ConfigValueUpdate, JSON: []byte(`{}`)})
	}
	timeouts := []registry.EventType{registry.ServiceTimeout}
	group := func(from, scanned int, types []registry.EventType) keyedGroup {
		q := store.EventQuery{From: timeuuid.New(uint64(from), 0), Limit: 100, Types: types}
		return keyedGroup{keyOf(q), &pollGroup{q: q, scanned: timeuuid.New(uint64(scanned), 0)}}
	}
	groups := []keyedGroup{
		group(10, 1000, timeouts),
		group(20, 1500, timeouts),
		group(30, 2200, timeouts),
		group(40, 3400, nil), // every type: the last events are news to it
	}
	pl := &poller{s: &Server{store: f}}
	quiet := map[*pollGroup]bool{}
	pl.checkShared(context.Background(), "t", groups, quiet)
	if f.reads != 3 {
		t.Errorf("%d reads of a burst of 2,500 events for %d groups; want 3, a page of 1,000 each", f.reads, len(groups))
	}
	head := f.events[len(f.events)-1].ID.Next()
	for i, g := range groups[:3] {
		if !quiet[g.g] || g.g.scanned != head {
			t.Errorf("group %d: quiet %v, scanned %v; want quiet, scanned past the head", i, quiet[g.g], g.g.scanned)
		}
	}
	if quiet[groups[3].g] {
		t.Error("the group with news was taken for quiet")
	}
}

// An answered poll whose connection cannot be kept goes back to the
// http.Server, but not while the server drains: then it is closed, as
// the kept ones are, rather than left waiting for a next request.
func TestSettleWhileDraining(t *testing.T) {
	for _, draining := range []bool{false, true} {
		s := &Server{closing: make(chan struct{})}
		if draining {
			close(s.closing)
		}
		pl := &poller{s: s}
		pl.keepFor.Store(int64(time.Hour))
		server, client := net.Pipe()
		t.Cleanup(func() { server.Close(); client.Close() })
		pl.parked.Add(1)
		// No watcher: it cannot be kept.
		back := pl.settle([]*parkedPoll{{conn: server, keepAlive: true}}, nil)
		if pl.parked.Load() != 0 {
			t.Errorf("draining %v: %d parked after settle; want 0", draining, pl.parked.Load())
		}
		if !draining {
			if len(back) != 1 || back[0].conn != server {
				t.Errorf("serving: %d handed back; want the connection", len(back))
			}
			continue
		}
		client.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := client.Read(make([]byte, 1)); len(back) != 0 || !errors.Is(err, io.EOF) {
			t.Errorf("draining: %d handed back, read %v; want none handed back and the connection closed", len(back), err)
		}
	}
}

// A tenant whose clients do not read their answers holds its own share
// of the writers that finish slow answers, and no more: another tenant's
// answer is written meanwhile.
func TestSlowReadersHoldTheirTenantsWritersOnly(t *testing.T) {
	pl := newPoller(&Server{closing: make(chan struct{}), metrics: newServerMetrics(nil)})
	u := unreadAnswers(t, pl)
	u.finish("unread", pollWriters+10) // more than every writer
	// Until the loop waits: one answer more handed to finish than it
	// writes, for a while.
	blocked := func() bool { return u.count() == len(pl.writers)+1 }
	for still := 0; still < 5; {
		if blocked() {
			still++
		} else {
			still = 0
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Unfixed, the other tenant's answer waits for the unread ones' write
	// deadline (30 s).
	otherTenantAnswered(t, pl, "the first tenant's clients read nothing")
	pl.writingMu.Lock()
	n := len(pl.writing["unread"].slots)
	pl.writingMu.Unlock()
	if n != pollWritersPerTenant {
		t.Errorf("%d writers busy with the unread answers; want the tenant's share, %d", n, pollWritersPerTenant)
	}
}

// unread are answers handed to a poller's finish whose clients read
// nothing; the test's end closes their connections, and so ends them.
type unread struct {
	pl      *poller
	mu      sync.Mutex
	clients []net.Conn
	stop    chan struct{}
	wg      sync.WaitGroup
}

func unreadAnswers(t *testing.T, pl *poller) *unread {
	u := &unread{pl: pl, stop: make(chan struct{})}
	t.Cleanup(func() {
		close(u.stop)
		done := make(chan struct{})
		go func() { u.wg.Wait(); close(done) }()
		for {
			u.mu.Lock()
			for _, c := range u.clients {
				c.Close() // the writes fail, the writers end
			}
			u.mu.Unlock()
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	})
	return u
}

// finish hands n answers of tenant to finish, one after the other, on a
// goroutine of their own.
func (u *unread) finish(tenant string, n int) {
	u.wg.Go(func() {
		for range n {
			select {
			case <-u.stop:
				return
			default:
			}
			server, client := net.Pipe()
			u.mu.Lock()
			u.clients = append(u.clients, client)
			u.mu.Unlock()
			u.pl.parked.Add(1)
			u.pl.finish(&parkedPoll{conn: server, tenant: tenant}, []byte("answer"), false)
		}
	})
}

// count is how many answers were handed to finish so far.
func (u *unread) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.clients)
}

// Tenants enough to take every writer with their shares, all their
// clients reading nothing, do not hold another tenant's answer for their
// writes' 30 s: a write of the tenants holding the most, stuck for
// pollWriteCut, is cut to free a writer for it.
func TestSlowReadersOfManyTenantsLeaveAWriter(t *testing.T) {
	pl := newPoller(&Server{closing: make(chan struct{}), metrics: newServerMetrics(nil)})
	u := unreadAnswers(t, pl)
	tenants := pollWriters / pollWritersPerTenant
	for i := range tenants {
		u.finish("unread"+strconv.Itoa(i), pollWritersPerTenant+1) // one more than its share
	}
	// Until every writer is busy, and each tenant waits for its own.
	for u.count() != pollWriters+tenants || len(pl.writers) != pollWriters {
		time.Sleep(10 * time.Millisecond)
	}
	// Unfixed, the other tenant's answer waits for a write deadline of the
	// others (30 s).
	otherTenantAnswered(t, pl, "the other tenants' clients read nothing")
}

// otherTenantAnswered finishes a poll of tenant "other" and fails the test
// unless its client reads its answer within 10 s, while the others'
// writes hang (while says why).
func otherTenantAnswered(t *testing.T, pl *poller, while string) {
	t.Helper()
	server, client := net.Pipe()
	defer client.Close()
	pl.parked.Add(1)
	go pl.finish(&parkedPoll{conn: server, tenant: "other"}, []byte("answer"), false)
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len("answer"))
	if _, err := io.ReadFull(client, got); err != nil || string(got) != "answer" {
		t.Fatalf("the other tenant's answer: %q, %v; want it written while %s", got, err, while)
	}
}

// Past its writers and pollWritersQueued of its wait timers' answers
// waiting for them, a tenant's further timer answer is dropped and its
// connection closed, rather than held (with its bytes and its descriptor)
// on a goroutine of its own. A dispatcher's answer is never dropped: it
// waits.
func TestUnreadAnswersQueueBounded(t *testing.T) {
	pl := newPoller(&Server{closing: make(chan struct{}), metrics: newServerMetrics(nil)})
	var clients []net.Conn
	t.Cleanup(func() {
		for _, c := range clients {
			c.Close() // the writes fail, the writers and waiters end
		}
	})
	finish := func(fromTimer bool) net.Conn {
		server, client := net.Pipe()
		clients = append(clients, client)
		pl.parked.Add(1)
		go pl.finish(&parkedPoll{conn: server, tenant: "unread"}, []byte("answer"), fromTimer)
		return client
	}
	users := func() int {
		pl.writingMu.Lock()
		defer pl.writingMu.Unlock()
		if tw := pl.writing["unread"]; tw != nil {
			return tw.users
		}
		return 0
	}
	most := pollWritersPerTenant + pollWritersQueued
	for range most {
		finish(true)
	}
	for users() < most {
		time.Sleep(time.Millisecond)
	}
	dropped := finish(true)
	dropped.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := dropped.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("a timer's answer past the queue: read %v; want its connection closed", err)
	}
	waits := finish(false)
	for users() < most+1 {
		time.Sleep(time.Millisecond)
	}
	waits.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := waits.Read(make([]byte, 1)); errors.Is(err, io.EOF) {
		t.Error("the dispatcher's answer past the queue was dropped; want it waiting for a writer")
	}
}

// The poll's wait timer may fire as the dispatcher answers the poll. Its
// expire, while keep is registering the answered connection, waits for
// keep, then closes the kept connection and takes it off the idle lists.
// It had found the connection kept before its idle record was made, and
// crashed the server.
func TestExpireWhileKeeping(t *testing.T) {
	s := &Server{closing: make(chan struct{}), metrics: newServerMetrics(nil)}
	s.conns = newConnTracker(s)
	pl := newPoller(s)
	s.poller = pl
	server, client := net.Pipe()
	defer client.Close()
	p := &parkedPoll{conn: server, tenant: "t", keepAlive: true, timer: time.AfterFunc(time.Hour, func() {})}
	// keep, registered with the watcher, not yet kept:
	p.idle = newKeptInfo(server, "t", func() { pl.evicted(p) })
	p.kept.Store(keeping)
	expired := make(chan struct{})
	go func() {
		defer close(expired)
		pl.expire(p)
	}()
	select {
	case <-expired:
		t.Fatal("expire took a connection that keep had not finished keeping")
	case <-time.After(50 * time.Millisecond):
	}
	pl.kept.Add(1)
	p.kept.Store(isKept)
	s.conns.listKept(p.idle, func() bool { return p.kept.Load() == isKept })
	<-expired
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := client.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("the kept connection after its expiry: read %v; want it closed", err)
	}
	if s.conns.idle.n != 0 || pl.kept.Load() != 0 {
		t.Errorf("%d idle connections, %d kept after the expiry; want none", s.conns.idle.n, pl.kept.Load())
	}
}
