package server_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/internal/timeuuid"
)

// checkToken checks that token is a lower-case v1 UUID whose time is the
// deadline: issue time plus timeout, the issue falling between before and
// after (spec §8.1).
func checkToken(t *testing.T, token string, before, after time.Time, timeout time.Duration) {
	t.Helper()
	u, err := timeuuid.Parse(token)
	if err != nil || len(token) != 36 || token != strings.ToLower(token) {
		t.Errorf("token %q is not a lower-case v1 UUID (%v)", token, err)
		return
	}
	lo, hi := timeuuid.Ticks(before.Add(timeout)), timeuuid.Ticks(after.Add(timeout))
	if u.Ticks() < lo || u.Ticks() > hi {
		t.Errorf("token time %v, want the deadline in [%v, %v]", u.Time(), before.Add(timeout), after.Add(timeout))
	}
}

// spec §7.7 and §8.1: every heartbeat consumes the outstanding token and
// returns a new one whose time is the new deadline, computed with the
// service's current timeout.
func TestHeartbeatTokens(t *testing.T) { onEachStore(t, testHeartbeatTokens) }

func testHeartbeatTokens(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	before := time.Now()
	token := c.create("svc-1", 30)
	checkToken(t, token, before, time.Now(), 30*time.Second)

	seen := map[string]bool{token: true}
	for range 3 {
		before := time.Now()
		next := c.nextToken("svc-1", token)
		checkToken(t, next, before, time.Now(), 30*time.Second)
		if seen[next] {
			t.Errorf("heartbeat returned the token %s again", next)
		}
		seen[next] = true
		token = next
	}
	c.do("PUT", "/services/svc-1", map[string]any{"heartbeat_timeout": 120}).want(204)
	before = time.Now()
	token = c.nextToken("svc-1", token)
	checkToken(t, token, before, time.Now(), 120*time.Second)
}

// spec §7.7 steps 3 and 4: the service is checked before the token; an
// unknown, used or re-cased token is a 404 naming the token as sent.
func TestHeartbeatNotFound(t *testing.T) { onEachStore(t, testHeartbeatNotFound) }

func testHeartbeatNotFound(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	t0 := c.create("svc-1", 30)
	t1 := c.nextToken("svc-1", t0)
	t2 := c.nextToken("svc-1", t1)

	// A token valid for svc-1 on a service that does not exist.
	c.heartbeat("svc-2", t2).notFound("Service", "svc-2")
	// A token never issued.
	c.heartbeat("svc-1", "6ba7b810-9dad-11d1-80b4-00c04fd430c8").notFound("HeartbeatMarker", "6ba7b810-9dad-11d1-80b4-00c04fd430c8")
	// A token used two heartbeats ago (design item 6 keeps only the last
	// one repeatable).
	c.heartbeat("svc-1", t0).notFound("HeartbeatMarker", t0)
	// The outstanding token in upper case: lookup is exact (spec §5.3).
	c.heartbeat("svc-1", strings.ToUpper(t2)).notFound("HeartbeatMarker", strings.ToUpper(t2))
	// None of that used up the outstanding token.
	c.nextToken("svc-1", t2)
}

// spec §13 item 4 and design item 6: concurrent heartbeats with one token
// all get the same next token, so a service never has two outstanding.
func TestHeartbeatSameTokenInParallel(t *testing.T) { onEachStore(t, testHeartbeatSameTokenInParallel) }

func testHeartbeatSameTokenInParallel(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	t0 := c.create("svc-1", 30)
	replies := make([]*reply, 10)
	errs := make([]error, 10)
	parallel(10, func(i int) {
		replies[i], errs[i] = c.try("POST", "/services/svc-1/heartbeat", map[string]string{"token": t0})
	})
	tokens := map[string]bool{}
	for i, r := range replies {
		if errs[i] != nil {
			t.Fatalf("heartbeat %d: %v", i, errs[i])
		}
		var out struct {
			Token string `json:"token"`
		}
		r.want(200).json(&out)
		tokens[out.Token] = true
	}
	if len(tokens) != 1 {
		t.Fatalf("parallel heartbeats with one token returned %d different tokens", len(tokens))
	}
	for t1 := range tokens {
		c.nextToken("svc-1", t1)
	}
}

// spec §8.2: with the reaper off, a heartbeat after the deadline but before
// any rectifying read succeeds and the service lives on without an event.
// Configuration reads and writes and /limits do not rectify (spec §8.3).
func TestLateHeartbeat(t *testing.T) { onEachStore(t, testLateHeartbeat) }

func testLateHeartbeat(t *testing.T, kind string) {
	t.Parallel()
	clock := new(testserver.Clock)
	srv := testserver.Start(t, testserver.Options{Store: kind, Clock: clock, ReapInterval: -1})
	c := newAPI(t, srv)
	token := c.create("svc-1", 3)
	token = c.nextToken("svc-1", token)
	clock.Advance(4 * time.Second)
	c.do("GET", "/configuration", nil).want(200)
	c.setConfig("key-1", "v")
	c.do("GET", "/configuration/key-1", nil).want(200)
	c.do("GET", "/limits", nil).want(200)
	c.nextToken("svc-1", token)
	c.service("svc-1")
	if got, want := summary(c.events("")), []string{"service.join svc-1", "configuration_value.update key-1"}; !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
}

// spec §8.3 "exactly once": two services with timeout 30 and no heartbeats;
// after the deadline, 149 parallel GET /events each see exactly join, join,
// timeout, timeout. With the reaper off the reads race to rectify; with it
// on they race the reaper.
func TestTimeoutsExactlyOnce(t *testing.T) { onEachStore(t, testTimeoutsExactlyOnce) }

func testTimeoutsExactlyOnce(t *testing.T, kind string) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		reaper time.Duration
	}{{"reaper off", -1}, {"reaper on", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := new(testserver.Clock)
			srv := testserver.Start(t, testserver.Options{Store: kind, Clock: clock, ReapInterval: tc.reaper})
			c := newAPI(t, srv)
			c.create("svc-0", 30)
			c.create("svc-1", 30)
			clock.Advance(31 * time.Second)
			const n = 149
			replies := make([]*reply, n)
			errs := make([]error, n)
			parallel(n, func(i int) { replies[i], errs[i] = c.try("GET", "/events", nil) })
			want := []string{"service.join svc-0", "service.join svc-1", "service.timeout svc-0", "service.timeout svc-1"}
			var first []event
			for i, r := range replies {
				if errs[i] != nil {
					t.Fatalf("GET %d: %v", i, errs[i])
				}
				evs, _ := list[event](r)
				if got := summary(evs); !slices.Equal(got, want) {
					t.Fatalf("GET %d: events %q, want %q", i, got, want)
				}
				if first == nil {
					first = evs
				} else if !slices.EqualFunc(evs, first, func(a, b event) bool { return a.ID == b.ID }) {
					t.Fatalf("GET %d: event ids differ from the first answer's", i)
				}
			}
		})
	}
}

// spec §8.3 "read-your-rectification": every one of 12 parallel GETs of a
// due service is 404, and lists leave due services out (reaper off).
func TestDueServiceReads(t *testing.T) { onEachStore(t, testDueServiceReads) }

func testDueServiceReads(t *testing.T, kind string) {
	t.Parallel()
	clock := new(testserver.Clock)
	srv := testserver.Start(t, testserver.Options{Store: kind, Clock: clock, ReapInterval: -1})

	t.Run("parallel gets", func(t *testing.T) {
		t.Parallel()
		c := newAPI(t, srv)
		c.create("svc-1", 3)
		clock.Advance(3500 * time.Millisecond)
		replies := make([]*reply, 12)
		errs := make([]error, 12)
		parallel(12, func(i int) { replies[i], errs[i] = c.try("GET", "/services/svc-1", nil) })
		for i, r := range replies {
			if errs[i] != nil {
				t.Fatalf("GET %d: %v", i, errs[i])
			}
			r.notFound("Service", "svc-1")
		}
		if got := summary(c.events("?type=service.timeout")); len(got) != 1 {
			t.Errorf("timeout events %q, want one", got)
		}
	})
	t.Run("lists", func(t *testing.T) {
		t.Parallel()
		c := newAPI(t, srv)
		c.create("due-1", 3)
		c.createBody(map[string]any{"id": "due-2", "tags": []string{"x"}, "heartbeat_timeout": 3})
		c.createBody(map[string]any{"id": "live", "tags": []string{"x"}, "heartbeat_timeout": 60})
		clock.Advance(3500 * time.Millisecond)
		svcs, _ := list[service](c.do("GET", "/services?tag=x", nil))
		if len(svcs) != 1 || svcs[0].ID != "live" {
			t.Errorf("tag list %+v, want live alone", svcs)
		}
		svcs, _ = list[service](c.do("GET", "/services", nil))
		if len(svcs) != 1 || svcs[0].ID != "live" {
			t.Errorf("list %+v, want live alone", svcs)
		}
	})
	t.Run("update and delete", func(t *testing.T) {
		t.Parallel()
		c := newAPI(t, srv)
		c.create("svc-1", 3)
		c.create("svc-2", 3)
		clock.Advance(3500 * time.Millisecond)
		c.do("PUT", "/services/svc-1", map[string]any{}).notFound("Service", "svc-1")
		c.do("DELETE", "/services/svc-2", nil).notFound("Service", "svc-2")
	})
}
