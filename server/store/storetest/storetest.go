// Package storetest is the contract every store.Store keeps, as a test
// suite that each store's own tests run against a fresh store: what the
// server relies on, checked on the store interface itself.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/server/store"
)

// Open opens a new, empty store with the shared options o, its reaper off
// (services time out only when the suite reads or calls Rectify) and its
// background work not running; it closes the store when the test ends.
type Open func(t *testing.T, o store.Options) store.Store

// Run runs the contract suite, each test on a store of its own.
func Run(t *testing.T, open Open) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, *env)
	}{
		{"Account", testAccount},
		{"Services", testServices},
		{"ServicePages", testServicePages},
		{"Config", testConfig},
		{"Limits", testLimits},
		{"EventsOrderAndMarkers", testEvents},
		{"FirstEventAfterTheEmptyFeedsMarker", testFirstEvent},
		{"Heartbeats", testHeartbeats},
		{"TimeoutsExactlyOnce", testTimeouts},
		{"MaxEvents", testMaxEvents},
		{"MaxEventBytes", testMaxEventBytes},
		{"Retention", testRetention},
		{"UserRevocations", testRevocations},
		{"AuthMode", testAuthMode},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, &env{open: open, clock: newClock()})
		})
	}
}

// env is one test's store and clock.
type env struct {
	open  Open
	clock *clock
}

func (e *env) store(t *testing.T, o store.Options) store.Store {
	o.Clock = e.clock.Now
	return e.open(t, o)
}

// run runs the store's background work until the test ends.
func run(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// clock is a clock that moves only when told to.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now().Truncate(time.Millisecond)} }

// Now returns the clock's time.
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Add moves the clock by d.
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

const tenant = "1"

var ctx = context.Background()

// must returns v, failing the test given to it if err is set:
// must(s.Service(ctx, tenant, id))(t).
func must[T any](v T, err error) func(testing.TB) T {
	return func(t testing.TB) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func create(t *testing.T, s store.Store, tenant, id string, timeout int, tags ...string) string {
	t.Helper()
	return must(s.CreateService(ctx, tenant, store.NewService{ID: id, Tags: tags, HeartbeatTimeout: timeout}))(t)
}

// wireEvent is an event's JSON as the feed serves it (spec §6.3).
type wireEvent struct {
	ID        string          `json:"id"`
	Timestamp int64           `json:"timestamp"`
	Type      string          `json:"type"`
	Payload   json.RawMessage `json:"payload"`
}

// feed reads every event from from on, checking that each event's JSON
// agrees with its id and type, and returns them as "type subject".
func feed(t *testing.T, s store.Store, from timeuuid.UUID) ([]string, []wireEvent) {
	t.Helper()
	page := must(s.Events(ctx, tenant, store.EventQuery{From: from, Limit: 1000}))(t)
	var out []string
	var wire []wireEvent
	for _, ev := range page.Values {
		var w wireEvent
		check(t, json.Unmarshal(ev.JSON, &w))
		if w.ID != ev.ID.String() || w.Type != string(ev.Type) {
			t.Fatalf("event %s %s carries id %s type %s", ev.ID, ev.Type, w.ID, w.Type)
		}
		var p struct {
			ID  string `json:"id"`
			Key string `json:"configuration_value_id"`
		}
		check(t, json.Unmarshal(w.Payload, &p))
		out = append(out, w.Type+" "+p.ID+p.Key)
		wire = append(wire, w)
	}
	return out, wire
}

func wantFeed(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("feed:\n got %q\nwant %q", got, want)
	}
}

func wantNotFound(t *testing.T, err error, kind, key string) {
	t.Helper()
	var nf *store.NotFoundError
	if !errors.As(err, &nf) || nf.Kind != kind || nf.Key != key {
		t.Errorf("got %v, want %s %q not found", err, kind, key)
	}
}

// An account exists from its first use with the default limits, its
// creation time and no events; tenants do not see each other (spec §3.4).
func testAccount(t *testing.T, e *env) {
	limits := store.Limits{Services: 3, ConfigValues: 4}
	s := e.store(t, store.Options{DefaultLimits: limits})
	created := e.clock.Now()
	a := must(s.Account(ctx, tenant))(t)
	if a.Tenant != tenant || !a.CreatedAt.Equal(created) || a.Limits != limits || !a.Head.IsZero() {
		t.Errorf("new account %+v, want tenant %s created %v with %+v and no head", a, tenant, created, limits)
	}
	if h := must(s.Head(ctx, tenant))(t); !h.IsZero() {
		t.Errorf("head of a new account %v, want zero", h)
	}
	e.clock.Add(time.Second)
	create(t, s, tenant, "a", 10)
	check(t, s.SetConfig(ctx, "2", "k", "v"))
	evs, _ := feed(t, s, timeuuid.UUID{})
	wantFeed(t, evs, "service.join a")
	page := must(s.Events(ctx, tenant, store.EventQuery{Limit: 10}))(t)
	if h := must(s.Head(ctx, tenant))(t); h != page.Values[0].ID {
		t.Errorf("head %v, want the newest event %v", h, page.Values[0].ID)
	}
	if a := must(s.Account(ctx, tenant))(t); !a.CreatedAt.Equal(created) {
		t.Errorf("account created %v after a write, want %v", a.CreatedAt, created)
	}
	if _, err := s.Service(ctx, "2", "a"); err == nil {
		t.Error("tenant 2 sees tenant 1's service")
	}
	_, err := s.Heartbeat(ctx, "3", "a", "00000000-0000-1000-8000-000000000000")
	wantNotFound(t, err, store.KindService, "a")
}

// Services are created, read, updated and deleted with one event each;
// an update that changes nothing appends none (spec §7.4–§7.6).
func testServices(t *testing.T, e *env) {
	s := e.store(t, store.Options{})
	meta := map[string]string{"k": "v"}
	must(s.CreateService(ctx, tenant, store.NewService{ID: "web", Tags: []string{"a"}, Metadata: meta, HeartbeatTimeout: 30}))(t)
	if _, err := s.CreateService(ctx, tenant, store.NewService{ID: "web", HeartbeatTimeout: 30}); !errors.Is(err, store.ErrServiceExists) {
		t.Errorf("second create: %v, want ErrServiceExists", err)
	}
	got := must(s.Service(ctx, tenant, "web"))(t)
	if got.ID != "web" || !slices.Equal(got.Tags, []string{"a"}) || got.Metadata["k"] != "v" || got.HeartbeatTimeout != 30 {
		t.Errorf("service %+v", got)
	}
	tags := []string{"b", "c"}
	check(t, s.UpdateService(ctx, tenant, "web", store.ServiceUpdate{Tags: &tags}))
	check(t, s.UpdateService(ctx, tenant, "web", store.ServiceUpdate{Tags: &tags}))
	if got := must(s.Service(ctx, tenant, "web"))(t); !slices.Equal(got.Tags, tags) || got.Metadata["k"] != "v" {
		t.Errorf("after update %+v, want tags %q and the metadata kept", got, tags)
	}
	check(t, s.DeleteService(ctx, tenant, "web"))
	_, err := s.Service(ctx, tenant, "web")
	wantNotFound(t, err, store.KindService, "web")
	wantNotFound(t, s.DeleteService(ctx, tenant, "web"), store.KindService, "web")
	wantNotFound(t, s.UpdateService(ctx, tenant, "web", store.ServiceUpdate{Tags: &tags}), store.KindService, "web")
	_, err = s.Heartbeat(ctx, tenant, "web", "00000000-0000-1000-8000-000000000000")
	wantNotFound(t, err, store.KindService, "web")
	evs, _ := feed(t, s, timeuuid.UUID{})
	wantFeed(t, evs, "service.join web", "service.update web", "service.remove web")
}

// Services list in byte order of id, page by marker and filter by tag;
// a page's marker is where the feed continues after it (spec §7.2).
func testServicePages(t *testing.T, e *env) {
	s := e.store(t, store.Options{})
	for _, id := range []string{"b", "a", "c", "B", "d"} {
		tags := []string{"all"}
		if id != "c" {
			tags = append(tags, "x")
		}
		create(t, s, tenant, id, 60, tags...)
	}
	var ids []string
	marker := ""
	for {
		page := must(s.Services(ctx, tenant, store.ServiceQuery{Marker: marker, Limit: 2}))(t)
		for _, v := range page.Values {
			ids = append(ids, v.ID)
		}
		if page.Next == "" {
			break
		}
		marker = page.Next
	}
	if want := []string{"B", "a", "b", "c", "d"}; !slices.Equal(ids, want) {
		t.Errorf("pages %q, want %q", ids, want)
	}
	tag := "x"
	page := must(s.Services(ctx, tenant, store.ServiceQuery{Limit: 10, Tag: &tag}))(t)
	ids = nil
	for _, v := range page.Values {
		ids = append(ids, v.ID)
	}
	if want := []string{"B", "a", "b", "d"}; !slices.Equal(ids, want) || page.Next != "" {
		t.Errorf("tag x: %q next %q, want %q", ids, page.Next, want)
	}
	check(t, s.DeleteService(ctx, tenant, "a"))
	evs, _ := feed(t, s, page.Marker)
	wantFeed(t, evs, "service.remove a")
}

// Configuration values are set, read, listed by prefix and deleted; a set
// that changes nothing appends no event (spec §7.8–§7.10).
func testConfig(t *testing.T, e *env) {
	s := e.store(t, store.Options{})
	check(t, s.SetConfig(ctx, tenant, "app/a", "1"))
	check(t, s.SetConfig(ctx, tenant, "app/a", "1"))
	check(t, s.SetConfig(ctx, tenant, "app/a", "2"))
	check(t, s.SetConfig(ctx, tenant, "app/b", "3"))
	check(t, s.SetConfig(ctx, tenant, "other", "4"))
	if v := must(s.Config(ctx, tenant, "app/a"))(t); v.ID != "app/a" || v.Value != "2" {
		t.Errorf("config %+v, want app/a = 2", v)
	}
	page := must(s.Configs(ctx, tenant, store.ConfigQuery{Prefix: "app/", Limit: 1}))(t)
	if len(page.Values) != 1 || page.Values[0].ID != "app/a" || page.Next != "app/b" {
		t.Errorf("first page %+v next %q, want app/a then app/b", page.Values, page.Next)
	}
	page = must(s.Configs(ctx, tenant, store.ConfigQuery{Prefix: "app/", Marker: page.Next, Limit: 1}))(t)
	if len(page.Values) != 1 || page.Values[0].ID != "app/b" || page.Next != "" {
		t.Errorf("second page %+v next %q, want app/b and no more", page.Values, page.Next)
	}
	check(t, s.DeleteConfig(ctx, tenant, "app/a"))
	_, err := s.Config(ctx, tenant, "app/a")
	wantNotFound(t, err, store.KindConfigValue, "app/a")
	wantNotFound(t, s.DeleteConfig(ctx, tenant, "app/a"), store.KindConfigValue, "app/a")
	evs, wire := feed(t, s, timeuuid.UUID{})
	wantFeed(t, evs, "configuration_value.update app/a", "configuration_value.update app/a",
		"configuration_value.update app/b", "configuration_value.update other", "configuration_value.remove app/a")
	if want := `{"old_value":"1","new_value":"2","configuration_value_id":"app/a"}`; len(wire) > 1 && string(wire[1].Payload) != want {
		t.Errorf("update payload %s, want %s", wire[1].Payload, want)
	}
}

// An account holds at most its limits of live objects; deleting one makes
// room again (spec §10.2).
func testLimits(t *testing.T, e *env) {
	s := e.store(t, store.Options{DefaultLimits: store.Limits{Services: 2, ConfigValues: 1}})
	create(t, s, tenant, "a", 60)
	create(t, s, tenant, "b", 60)
	var le *store.LimitError
	if _, err := s.CreateService(ctx, tenant, store.NewService{ID: "c", HeartbeatTimeout: 60}); !errors.As(err, &le) || le.Resource != store.ResourceService || le.Max != 2 {
		t.Errorf("third service: %v, want the service limit of 2", err)
	}
	check(t, s.SetConfig(ctx, tenant, "k", "v"))
	check(t, s.SetConfig(ctx, tenant, "k", "w"))
	if err := s.SetConfig(ctx, tenant, "l", "v"); !errors.As(err, &le) || le.Resource != store.ResourceConfigValue || le.Max != 1 {
		t.Errorf("second value: %v, want the configuration_value limit of 1", err)
	}
	check(t, s.DeleteService(ctx, tenant, "a"))
	create(t, s, tenant, "c", 60)
}

// Events come in commit order with increasing ids; a page starts at its
// From (inclusive), stops at Limit with Next the first left out, and a
// type filter applies before paging (spec §7.11).
func testEvents(t *testing.T, e *env) {
	s := e.store(t, store.Options{})
	for i := range 6 {
		if i%2 == 0 {
			create(t, s, tenant, fmt.Sprint("s", i), 60)
		} else {
			check(t, s.SetConfig(ctx, tenant, fmt.Sprint("k", i), "v"))
		}
	}
	all := must(s.Events(ctx, tenant, store.EventQuery{Limit: 100}))(t)
	if len(all.Values) != 6 || !all.Next.IsZero() {
		t.Fatalf("%d events next %v, want 6 and no next", len(all.Values), all.Next)
	}
	for i := 1; i < len(all.Values); i++ {
		if timeuuid.Compare(all.Values[i-1].ID, all.Values[i].ID) >= 0 {
			t.Errorf("event %d's id %v is not after %v", i, all.Values[i].ID, all.Values[i-1].ID)
		}
	}
	page := must(s.Events(ctx, tenant, store.EventQuery{From: all.Values[2].ID, Limit: 2}))(t)
	if len(page.Values) != 2 || page.Values[0].ID != all.Values[2].ID || page.Next != all.Values[4].ID {
		t.Errorf("page from event 2: %d events next %v, want events 2-3 and next %v", len(page.Values), page.Next, all.Values[4].ID)
	}
	page = must(s.Events(ctx, tenant, store.EventQuery{From: all.Values[1].ID, Limit: 1, Types: []registry.EventType{registry.ServiceJoin}}))(t)
	if len(page.Values) != 1 || page.Values[0].ID != all.Values[2].ID || page.Next != all.Values[4].ID {
		t.Errorf("joins from event 1: %+v next %v, want event 2 and next event 4", page.Values, page.Next)
	}
	// Quiet: the event at From, then on at Quiet.
	ids := func(p store.EventPage) []timeuuid.UUID {
		out := []timeuuid.UUID{}
		for _, ev := range p.Values {
			out = append(out, ev.ID)
		}
		return out
	}
	at := func(is ...int) []timeuuid.UUID {
		out := []timeuuid.UUID{}
		for _, i := range is {
			out = append(out, all.Values[i].ID)
		}
		return out
	}
	for _, c := range []struct {
		name string
		q    store.EventQuery
		want []timeuuid.UUID
		next timeuuid.UUID
	}{
		{"from event 1, on at event 3", store.EventQuery{From: all.Values[1].ID, Quiet: all.Values[3].ID, Limit: 100}, at(1, 3, 4, 5), timeuuid.UUID{}},
		{"from between events 1 and 2, on at event 3", store.EventQuery{From: all.Values[1].ID.Next(), Quiet: all.Values[3].ID, Limit: 100}, at(3, 4, 5), timeuuid.UUID{}},
		{"joins from event 0, on at event 3, one a page", store.EventQuery{From: all.Values[0].ID, Quiet: all.Values[3].ID, Limit: 1, Types: []registry.EventType{registry.ServiceJoin}}, at(0), all.Values[4].ID},
		{"from event 2, quiet before it", store.EventQuery{From: all.Values[2].ID, Quiet: all.Values[1].ID, Limit: 100}, at(2, 3, 4, 5), timeuuid.UUID{}},
		{"from event 1, on past the head", store.EventQuery{From: all.Values[1].ID, Quiet: all.Values[5].ID.Next(), Limit: 100}, at(1), timeuuid.UUID{}},
	} {
		page := must(s.Events(ctx, tenant, c.q))(t)
		if got := ids(page); !slices.Equal(got, c.want) || page.Next != c.next || page.Head != all.Values[5].ID {
			t.Errorf("%s: %v next %v head %v, want %v next %v head %v", c.name, got, page.Next, page.Head, c.want, c.next, all.Values[5].ID)
		}
	}
	// MaxBytes ends a page before the event that would pass it, after one
	// event at least; Head is the newest event.
	two := len(all.Values[0].JSON) + len(all.Values[1].JSON)
	page = must(s.Events(ctx, tenant, store.EventQuery{Limit: 100, MaxBytes: two + len(all.Values[2].JSON) - 1}))(t)
	if len(page.Values) != 2 || page.Next != all.Values[2].ID || page.Head != all.Values[5].ID {
		t.Errorf("a page of %d bytes at most: %d events next %v head %v, want 2, next event 2, head event 5", two+len(all.Values[2].JSON)-1, len(page.Values), page.Next, page.Head)
	}
	page = must(s.Events(ctx, tenant, store.EventQuery{Limit: 100, MaxBytes: 1}))(t)
	if len(page.Values) != 1 || page.Next != all.Values[1].ID {
		t.Errorf("a page of 1 byte at most: %d events next %v, want the first event alone", len(page.Values), page.Next)
	}
	changed := must(s.Changed(ctx, tenant))(t)
	select {
	case <-changed:
		t.Fatal("Changed is closed before a commit")
	default:
	}
	check(t, s.SetConfig(ctx, tenant, "k1", "w"))
	select {
	case <-changed:
	case <-time.After(30 * time.Second):
		t.Fatal("Changed is not closed after a commit")
	}
	if h := must(s.Head(ctx, tenant))(t); timeuuid.Compare(h, all.Values[5].ID) <= 0 {
		t.Errorf("head %v is not past the earlier events", h)
	}
	// Past the events a store may read at first, a page bounded in bytes
	// still runs to its limit or its bytes.
	for i := range 150 {
		check(t, s.SetConfig(ctx, tenant, fmt.Sprint("many-", i), "v"))
	}
	every := must(s.Events(ctx, tenant, store.EventQuery{Limit: 1000}))(t)
	if got := must(s.Events(ctx, tenant, store.EventQuery{Limit: 1000, MaxBytes: 1 << 20}))(t); len(got.Values) != len(every.Values) || !got.Next.IsZero() {
		t.Errorf("%d of %d events in a page of 1 MiB at most (next %v); want them all", len(got.Values), len(every.Values), got.Next)
	}
	bytes := 0
	for _, ev := range every.Values[:120] {
		bytes += len(ev.JSON)
	}
	if got := must(s.Events(ctx, tenant, store.EventQuery{Limit: 1000, MaxBytes: bytes}))(t); len(got.Values) != 120 || got.Next != every.Values[120].ID {
		t.Errorf("a page of the first 120 events' bytes: %d events next %v; want 120, next event 120", len(got.Values), got.Next)
	}
}

// A read of an account without events gives the account's creation as
// the feed's marker (design item 3): the first event, committed after the
// read, is in the feed from it, though the clock stepped back meanwhile
// (a restart after a power loss, before NTP steps it).
func testFirstEvent(t *testing.T, e *env) {
	s := e.store(t, store.Options{})
	marker := must(s.Services(ctx, tenant, store.ServiceQuery{Limit: 10}))(t).Marker
	e.clock.Add(-5 * time.Second)
	create(t, s, tenant, "web", 60)
	e.clock.Add(10 * time.Second)
	page := must(s.Events(ctx, tenant, store.EventQuery{From: marker, CheckExpired: true, Limit: 10}))(t)
	if len(page.Values) != 1 || page.Values[0].Type != registry.ServiceJoin {
		t.Fatalf("the feed from the marker %v of a read before the first event holds %d events; want the join (the head: %v)", marker, len(page.Values), page.Head)
	}
}

// A heartbeat consumes its token and returns the next; repeating the
// token just consumed returns the same next token; any other is refused
// (spec §7.7).
func testHeartbeats(t *testing.T, e *env) {
	s := e.store(t, store.Options{})
	tok0 := create(t, s, tenant, "web", 10)
	e.clock.Add(5 * time.Second)
	tok1 := must(s.Heartbeat(ctx, tenant, "web", tok0))(t)
	if tok1 == tok0 {
		t.Fatal("a heartbeat returned the token it consumed")
	}
	if again := must(s.Heartbeat(ctx, tenant, "web", tok0))(t); again != tok1 {
		t.Errorf("repeated heartbeat returned %s, want %s again", again, tok1)
	}
	tok2 := must(s.Heartbeat(ctx, tenant, "web", tok1))(t)
	_, err := s.Heartbeat(ctx, tenant, "web", tok0)
	wantNotFound(t, err, store.KindHeartbeatMarker, tok0)
	_, err = s.Heartbeat(ctx, tenant, "web", "not-a-token")
	wantNotFound(t, err, store.KindHeartbeatMarker, "not-a-token")
	seen := e.clock.Now()
	if got := must(s.Service(ctx, tenant, "web"))(t); !got.LastSeen.Equal(seen) {
		t.Errorf("last seen %v, want %v", got.LastSeen, seen)
	}
	// Heartbeats keep the service past its first deadline.
	e.clock.Add(8 * time.Second)
	must(s.Service(ctx, tenant, "web"))(t)
	must(s.Heartbeat(ctx, tenant, "web", tok2))(t)
	evs, _ := feed(t, s, timeuuid.UUID{})
	wantFeed(t, evs, "service.join web")
}

// The reads spec §8.3 lists time out the services past their deadline
// before they read, each once however many readers race, with the
// deadline as the event's timestamp; no read sees a due service.
func testTimeouts(t *testing.T, e *env) {
	s := e.store(t, store.Options{})
	create(t, s, tenant, "svc0", 3)
	e.clock.Add(time.Second)
	create(t, s, tenant, "svc1", 3)
	deadline1 := e.clock.Now().Add(3 * time.Second)
	e.clock.Add(4 * time.Second)
	reads := []func() error{
		func() error {
			_, err := s.Service(ctx, tenant, "svc1")
			if err == nil {
				return errors.New("store.Service returned a due service")
			}
			var nf *store.NotFoundError
			if errors.As(err, &nf) {
				return nil
			}
			return err
		},
		func() error {
			page, err := s.Services(ctx, tenant, store.ServiceQuery{Limit: 10})
			if err == nil && len(page.Values) > 0 {
				return fmt.Errorf("store.Services listed %d due services", len(page.Values))
			}
			return err
		},
		func() error {
			page, err := s.Events(ctx, tenant, store.EventQuery{Limit: 10})
			if err == nil && len(page.Values) != 4 {
				return fmt.Errorf("store.Events read %d events, want both joins and both timeouts", len(page.Values))
			}
			return err
		},
	}
	var wg sync.WaitGroup
	for i := range 24 {
		wg.Go(func() {
			if err := reads[i%len(reads)](); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	evs, wire := feed(t, s, timeuuid.UUID{})
	wantFeed(t, evs, "service.join svc0", "service.join svc1", "service.timeout svc0", "service.timeout svc1")
	if len(wire) == 4 && wire[3].Timestamp != deadline1.UnixMilli() {
		t.Errorf("timeout timestamp %d, want the deadline %d", wire[3].Timestamp, deadline1.UnixMilli())
	}
	page := must(s.Services(ctx, tenant, store.ServiceQuery{Limit: 10}))(t)
	if len(page.Values) != 0 {
		t.Errorf("%d services listed after their timeout", len(page.Values))
	}
	// The id is free again.
	create(t, s, tenant, "svc0", 3)
}

// eventually waits for cond, which background work makes true.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for stop := time.Now().Add(60 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(stop) {
			t.Fatalf("%s: not within a minute", what)
		}
	}
}

// Past MaxEvents the oldest events go, and a marker before them expires
// (design item 9).
func testMaxEvents(t *testing.T, e *env) {
	s := e.store(t, store.Options{MaxEvents: 5})
	run(t, s)
	for i := range 12 {
		check(t, s.SetConfig(ctx, tenant, "k", fmt.Sprint(i)))
	}
	eventually(t, "the event cap", func() bool {
		page := must(s.Events(ctx, tenant, store.EventQuery{Limit: 100}))(t)
		return len(page.Values) <= 5
	})
	page := must(s.Events(ctx, tenant, store.EventQuery{Limit: 100}))(t)
	if len(page.Values) == 0 {
		t.Fatal("the cap deleted every event")
	}
	if _, err := s.Events(ctx, tenant, store.EventQuery{CheckExpired: true, Limit: 10}); !errors.Is(err, store.ErrMarkerExpired) {
		t.Errorf("a marker before the deleted events: %v, want ErrMarkerExpired", err)
	}
	if _, err := s.Events(ctx, tenant, store.EventQuery{From: page.Values[0].ID, CheckExpired: true, Limit: 10}); err != nil {
		t.Errorf("a marker at the oldest event kept: %v", err)
	}
}

// Past MaxEventBytes the oldest events go as past MaxEvents: an update
// event holds the old and the new value, so 30 updates of 500-byte values
// hold about 30 KB.
func testMaxEventBytes(t *testing.T, e *env) {
	const most = 8000
	s := e.store(t, store.Options{MaxEvents: -1, MaxEventBytes: most})
	run(t, s)
	for i := range 30 {
		check(t, s.SetConfig(ctx, tenant, "k", strings.Repeat(fmt.Sprint(i%10), 500)))
	}
	held := func() (n, size int) {
		page := must(s.Events(ctx, tenant, store.EventQuery{Limit: 1000}))(t)
		for _, ev := range page.Values {
			size += len(ev.JSON)
		}
		return len(page.Values), size
	}
	eventually(t, "the cap on bytes", func() bool {
		_, size := held()
		return size <= most
	})
	if n, size := held(); n < 3 {
		t.Errorf("%d events of %d bytes kept; want the newest that fit in %d", n, size, most)
	}
	if _, err := s.Events(ctx, tenant, store.EventQuery{CheckExpired: true, Limit: 10}); !errors.Is(err, store.ErrMarkerExpired) {
		t.Errorf("a marker before the deleted events: %v, want ErrMarkerExpired", err)
	}
}

// Events older than the retention window go, newer ones stay, and a marker
// before them expires (spec §9.3).
func testRetention(t *testing.T, e *env) {
	s := e.store(t, store.Options{Retention: 16 * time.Second, MaxEvents: -1})
	check(t, s.SetConfig(ctx, tenant, "old", "v"))
	e.clock.Add(time.Minute)
	check(t, s.SetConfig(ctx, tenant, "new", "v"))
	run(t, s)
	eventually(t, "retention", func() bool {
		page := must(s.Events(ctx, tenant, store.EventQuery{Limit: 100}))(t)
		return len(page.Values) == 1
	})
	evs, _ := feed(t, s, timeuuid.UUID{})
	wantFeed(t, evs, "configuration_value.update new")
	if _, err := s.Events(ctx, tenant, store.EventQuery{CheckExpired: true, Limit: 10}); !errors.Is(err, store.ErrMarkerExpired) {
		t.Errorf("a marker before the deleted events: %v, want ErrMarkerExpired", err)
	}
}

// testRevocations: a user's revocation is merged with the one recorded
// (the later of each time), kept for users of any name, and left out once
// every token it covers has expired (Until).
func testRevocations(t *testing.T, e *env) {
	s, ok := e.store(t, store.Options{}).(store.Identity)
	if !ok {
		t.Fatal("the store keeps no identity state (store.Identity)")
	}
	t0 := e.clock.Now()
	odd := "ops/dé ploy%2F"
	check(t, s.RevokeUser(ctx, "deploy", store.Revocation{Tenants: map[string]time.Time{"1": t0}}))
	check(t, s.RevokeUser(ctx, "deploy", store.Revocation{Tenants: map[string]time.Time{"1": t0.Add(-time.Minute), "2": t0},
		Retired: map[string]time.Time{"0a1b2c3d": t0.Add(time.Hour)}, Printless: t0.Add(time.Hour)}))
	check(t, s.RevokeUser(ctx, odd, store.Revocation{Printless: t0.Add(time.Second)}))
	check(t, s.RevokeUser(ctx, odd, store.Revocation{Printless: t0}))
	want := map[string]store.Revocation{
		"deploy": {Tenants: map[string]time.Time{"1": t0, "2": t0}, Retired: map[string]time.Time{"0a1b2c3d": t0.Add(time.Hour)}, Printless: t0.Add(time.Hour)},
		odd:      {Printless: t0.Add(time.Second)},
	}
	sameRevocations(t, "recorded", must(s.Revocations(ctx))(t), want)
	// A token lifetime and half an hour later: odd's record is past its
	// Until, and deploy's parts made at t0 are dropped (Pruned).
	e.clock.Add(store.MaxTokenTTL + 30*time.Minute)
	delete(want, odd)
	want["deploy"] = store.Revocation{Retired: map[string]time.Time{"0a1b2c3d": t0.Add(time.Hour)}, Printless: t0.Add(time.Hour)}
	sameRevocations(t, "a token lifetime later", must(s.Revocations(ctx))(t), want)
}

func sameRevocations(t *testing.T, when string, got, want map[string]store.Revocation) {
	t.Helper()
	ok := len(got) == len(want)
	for u, w := range want {
		g, found := got[u]
		ok = ok && found && g.Equal(w)
	}
	if !ok {
		t.Errorf("revocations %s: %v, want %v", when, got, want)
	}
}

// testAuthMode: the first mode is recorded and kept; a later call in the
// other mode gets the first (a server then refuses to start).
func testAuthMode(t *testing.T, e *env) {
	s, ok := e.store(t, store.Options{}).(store.Identity)
	if !ok {
		t.Fatal("the store keeps no identity state (store.Identity)")
	}
	if got := must(s.AuthMode(ctx, store.AuthUsers))(t); got != store.AuthUsers {
		t.Fatalf("the first mode: %q recorded, want %q", got, store.AuthUsers)
	}
	for _, mode := range []string{store.AuthDev, store.AuthUsers} {
		if got := must(s.AuthMode(ctx, mode))(t); got != store.AuthUsers {
			t.Errorf("asked with %q: %q, want the first, %q", mode, got, store.AuthUsers)
		}
	}
}
