package server_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/server"
	"github.com/svcreg/svcreg/server/store"
)

// spec §7.11 step 4: the original compared a marker's time with the current
// time in milliseconds, so the highest time UUID a client can make for the
// current millisecond is "now" (200 []), and only a later millisecond is the
// future (400).
func TestEventsMarkerOfTheCurrentMillisecond(t *testing.T) {
	onEachStore(t, testEventsMarkerOfTheCurrentMillisecond)
}

func testEventsMarkerOfTheCurrentMillisecond(t *testing.T, kind string) {
	t.Parallel()
	// The server's clock stands half-way through a millisecond, after the
	// store creates the account (by its own clock) however slowly it
	// starts.
	ms := time.Now().Add(time.Minute).Truncate(time.Millisecond)
	base := startCustom(t, kind, func(st store.Store) server.Config {
		return server.Config{Store: st, Clock: func() time.Time { return ms.Add(500 * time.Microsecond) }}
	})
	c := devLogin(t, base, "marker-now")
	lastOfNow := timeuuid.New(timeuuid.Ticks(ms)+9999, 1<<62-1)
	if evs := c.events("?marker=" + lastOfNow.String()); len(evs) != 0 {
		t.Errorf("events after the last UUID of now: %v, want none", summary(evs))
	}
	firstOfNext := timeuuid.New(timeuuid.Ticks(ms)+10000, 0)
	c.do("GET", "/events?marker="+firstOfNext.String(), nil).badRequest("from parameter must be smaller than the current time")
}

// Design item 3: every change committed after a list is in the feed from
// the list's X-Registry-Marker, which for an account without events is
// its creation. With the clock behind the creation (a restart after a
// power loss, before NTP steps it), that marker is not "in the future":
// the first event's id will come after it.
func TestEmptyFeedMarkerWithTheClockBehindTheCreation(t *testing.T) {
	onEachStore(t, testEmptyFeedMarkerWithTheClockBehindTheCreation)
}

func testEmptyFeedMarkerWithTheClockBehindTheCreation(t *testing.T, kind string) {
	t.Parallel()
	var behind atomic.Int64
	base := startCustom(t, kind, func(st store.Store) server.Config {
		return server.Config{Store: st, Clock: func() time.Time { return time.Now().Add(-time.Duration(behind.Load())) }}
	})
	c := devLogin(t, base, "clock-behind")
	marker := c.do("GET", "/services", nil).want(200).header.Get("X-Registry-Marker")
	if marker == "" {
		t.Fatal("no X-Registry-Marker")
	}
	behind.Store(int64(5 * time.Second))
	if r := c.do("GET", "/events?marker="+marker, nil); r.code != 200 {
		t.Errorf("the feed from the empty account's own X-Registry-Marker %s, with the clock 5 s behind: %d %s; want 200 []", marker, r.code, r.body)
	}
}
