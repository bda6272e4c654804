package server_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testserver"
)

// One account cannot fill the disk with events: past the cap, the oldest
// are deleted as retention deletes them, and a marker from before them gets
// 410 markerExpired (design item 4), which the watcher answers by
// re-listing. The etcd store enforces the cap within seconds of the writes.
func TestEventCapKeepsTheNewest(t *testing.T) { onEachStore(t, testEventCapKeepsTheNewest) }

func testEventCapKeepsTheNewest(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind, MaxEvents: 5})
	c := newAPI(t, srv)
	other := newUser(t, srv, t.Name()+"-other")
	other.setConfig("mine", "v")
	old := c.do("GET", "/services", nil).want(200).header.Get("X-Registry-Marker")
	for i := range 8 {
		c.setConfig(fmt.Sprintf("key-%d", i), "v")
	}
	want := []string{"configuration_value.update key-3", "configuration_value.update key-4",
		"configuration_value.update key-5", "configuration_value.update key-6", "configuration_value.update key-7"}
	var got []string
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if got = summary(c.events("")); slices.Equal(got, want) {
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events kept: %q, want the newest 5 %q", got, want)
	}
	c.do("GET", "/events?marker="+old, nil).fault(410, "markerExpired", "", unspecified{})

	// A marker at the oldest event kept still reads the feed.
	first := c.events("")[0].ID
	if got := summary(c.events("?marker=" + first)); !slices.Equal(got, want) {
		t.Errorf("events from the oldest kept: %q, want %q", got, want)
	}
	// Another account's events are its own.
	if got := summary(other.events("")); !slices.Equal(got, []string{"configuration_value.update mine"}) {
		t.Errorf("the other account's events: %q", got)
	}

	// The count survives a restart: the next write still deletes one.
	srv.Restart()
	clientOf(srv.URL).CloseIdleConnections()
	c.setConfig("key-8", "v")
	want = append(want[1:], "configuration_value.update key-8")
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if got = summary(c.events("")); slices.Equal(got, want) {
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("events kept after a restart and a write: %q, want %q", got, want)
	}
}

// Writes are limited per account, as a token bucket: a burst, then a
// steady rate. Beyond it a write gets the rate-limit fault (spec §3.3) with
// Retry-After; heartbeats, reads and other accounts are not held back.
func TestWriteRateLimit(t *testing.T) { onEachStore(t, testWriteRateLimit) }

func testWriteRateLimit(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind, WriteRate: 0.001, WriteBurst: 4})
	c := newAPI(t, srv)
	tok := c.create("svc-1", 30)
	c.setConfig("key-1", "v")
	c.do("PUT", "/services/svc-1", map[string]any{"tags": []string{"a"}}).want(204)
	c.do("DELETE", "/configuration/key-1", nil).want(204)

	for _, w := range []struct{ method, path string }{
		{"POST", "/services"}, {"PUT", "/services/svc-1"}, {"DELETE", "/services/svc-1"},
		{"PUT", "/configuration/key-2"}, {"DELETE", "/configuration/key-1"},
	} {
		r := c.do(w.method, w.path, map[string]any{"id": "svc-2", "heartbeat_timeout": 30, "value": "v"})
		r.fault(400, "rateLimitReached", "Rate limit has been reached.", unspecified{})
		if got := r.header.Get("Retry-After"); got == "" || got == "0" {
			t.Errorf("%s %s: Retry-After %q, want the seconds until a write is allowed", w.method, w.path, got)
		}
	}
	c.heartbeat("svc-1", tok).want(200)
	c.do("GET", "/services/svc-1", nil).want(200)
	other := newUser(t, srv, t.Name()+"-other")
	other.setConfig("key-1", "v")
}
