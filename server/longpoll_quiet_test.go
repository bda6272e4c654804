package server_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/server/store"
)

// A parked long-poll that waited past events it does not ask for is
// answered without reading them again: when its wait ends, and when an
// event it asks for comes. Its group's reads go on where the dispatcher's
// shared reads found nothing for it. Before, each expiry read the feed
// from the poll's own marker, outside the account's read turns: an
// account that parked thousands of polls and then wrote events they do
// not ask for made each expiry scan all of those, all at once (on the
// etcd store, seconds of another account's reads).
func TestLongPollReadsNoEventTwice(t *testing.T) { onEachStore(t, testLongPollReadsNoEventTwice) }

func testLongPollReadsNoEventTwice(t *testing.T, kind string) {
	t.Parallel()
	base, spy := startWrapped(t, kind, func(st store.Store) *feedSpy { return &feedSpy{Store: st} })
	c := devLogin(t, base, "quiet-polls")
	c.setConfig("first", "v")
	marker := c.do("GET", "/services", nil).want(200).header.Get("X-Registry-Marker")
	timeouts := c.longPoll("?wait=15&type=service.timeout&marker=" + marker)
	removes := c.longPoll("?wait=60&type=configuration_value.remove&marker=" + marker)
	stillWaiting(t, timeouts)
	stillWaiting(t, removes)

	const hidden = 20
	for i := range hidden - 1 {
		c.setConfig(fmt.Sprintf("key-%02d", i), "v")
	}
	// A poll of every type, answered by the last write's wake-up, which
	// also finds the last write is no news for the two polls above.
	head := c.do("GET", "/services", nil).want(200).header.Get("X-Registry-Marker")
	barrier := c.longPoll("?wait=60&marker=" + head)
	stillWaiting(t, barrier)
	c.setConfig("last", "v")
	if got := summary(answer(t, barrier)); !slices.Equal(got, []string{"configuration_value.update last"}) {
		t.Fatalf("the poll of every type got %q", got)
	}
	evs := c.events("?limit=100&marker=" + marker)
	if len(evs) < hidden || summary(evs[len(evs)-1:])[0] != "configuration_value.update last" {
		t.Fatalf("events from the marker: %q, want the %d written", summary(evs), hidden)
	}
	lastHidden, err := timeuuid.Parse(evs[len(evs)-1].ID)
	if err != nil {
		t.Fatal(err)
	}

	// The wait of the first ends.
	if got := answer(t, timeouts); len(got) != 0 {
		t.Fatalf("the poll of timeouts got %q, want nothing", summary(got))
	}
	if q := spy.last(t, registry.ServiceTimeout); timeuuid.Compare(q.Quiet, lastHidden) <= 0 {
		t.Errorf("the expired poll read from %v on at %v: not past the events it waited past (the last %v)", q.From, q.Quiet, lastHidden)
	}
	// An event the second asks for comes.
	c.do("DELETE", "/configuration/first", nil).want(204)
	if got := summary(answer(t, removes)); !slices.Equal(got, []string{"configuration_value.remove first"}) {
		t.Fatalf("the poll of removals got %q", got)
	}
	if q := spy.last(t, registry.ConfigValueRemove); timeuuid.Compare(q.Quiet, lastHidden) <= 0 {
		t.Errorf("the woken poll read from %v on at %v: not past the events it waited past (the last %v)", q.From, q.Quiet, lastHidden)
	}
}

// A long-poll with a marker and one without share no answer, though their
// queries start at the same place (an account younger than the default
// window, whose empty feed's marker is its creation): only the one with a
// marker asks whether events it needs were deleted, and gets 410 when the
// event cap deleted some while it waited, at the commit that wakes it
// (a wake-up's read that found the marker expired was taken for a store
// that failed, and the poll waited on).
func TestLongPollsWithAndWithoutAMarkerAnswerApart(t *testing.T) {
	onEachStore(t, testLongPollsWithAndWithoutAMarkerAnswerApart)
}

func testLongPollsWithAndWithoutAMarkerAnswerApart(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind, MaxEvents: 5})
	c := newAPI(t, srv)
	marker := c.do("GET", "/services", nil).want(200).header.Get("X-Registry-Marker")
	without := c.longPoll("?wait=60&type=configuration_value.remove")
	stillWaiting(t, without)
	with := c.longPoll("?wait=300&type=configuration_value.remove&marker=" + marker)
	stillWaiting(t, with)
	for i := range 8 {
		c.setConfig(fmt.Sprintf("key-%d", i), "v")
	}
	for end := time.Now().Add(20 * time.Second); len(c.events("")) > 5; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("the event cap kept %d events, want 5", len(c.events("")))
		}
	}
	c.do("DELETE", "/configuration/key-7", nil).want(204)
	if got := summary(answer(t, without)); !slices.Equal(got, []string{"configuration_value.remove key-7"}) {
		t.Errorf("the long-poll without a marker got %q", got)
	}
	// Answered by the commit's wake-up, not at the end of its wait.
	select {
	case p := <-with:
		if p.err != nil {
			t.Fatal(p.err)
		}
		p.r.fault(410, "markerExpired", "", unspecified{})
	case <-time.After(30 * time.Second):
		t.Fatal("the long-poll with an expired marker was not answered by the commit that woke it")
	}
}
