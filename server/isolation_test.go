package server_test

import (
	"slices"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/server/store"
)

// spec §3.4: tenants never see each other's services, configuration,
// events or long-polls, and each has limits of its own.
func TestTenantIsolation(t *testing.T) { onEachStore(t, testTenantIsolation) }

func testTenantIsolation(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind, Limits: store.Limits{Services: 2, ConfigValues: 2}})

	t.Run("services", func(t *testing.T) {
		t.Parallel()
		a, b := newUser(t, srv, t.Name()+"-a"), newUser(t, srv, t.Name()+"-b")
		ta := a.createBody(map[string]any{"id": "shared", "tags": []string{"a"}, "heartbeat_timeout": 30})
		a.create("only-a", 30)
		b.do("GET", "/services/only-a", nil).notFound("Service", "only-a")
		if svcs, _ := list[service](b.do("GET", "/services", nil)); len(svcs) != 0 {
			t.Errorf("b lists %+v", svcs)
		}
		if svcs, _ := list[service](b.do("GET", "/services?tag=a", nil)); len(svcs) != 0 {
			t.Errorf("b's tag list %+v", svcs)
		}
		b.do("PUT", "/services/only-a", map[string]any{}).notFound("Service", "only-a")
		b.do("DELETE", "/services/only-a", nil).notFound("Service", "only-a")
		b.heartbeat("only-a", ta).notFound("Service", "only-a")

		// The same id in b is another service; a's token does not work on it.
		tb := b.createBody(map[string]any{"id": "shared", "tags": []string{"b"}, "heartbeat_timeout": 60})
		b.heartbeat("shared", ta).notFound("HeartbeatMarker", ta)
		b.do("DELETE", "/services/shared", nil).want(204)
		if s := a.service("shared"); !slices.Equal(s.Tags, []string{"a"}) {
			t.Errorf("a's shared service after b's delete: %+v", s)
		}
		a.nextToken("shared", ta)
		a.heartbeat("shared", tb).notFound("HeartbeatMarker", tb)

		// a is at its limit of two; b is not.
		a.do("POST", "/services", map[string]any{"id": "a-3", "heartbeat_timeout": 30}).
			fault(400, "limitReached", "Resource limit has been reached", "Limit for resource service has been reached. Maximum allowed objects: 2")
		b.create("b-1", 30)
		b.create("b-2", 30)
	})
	t.Run("configuration", func(t *testing.T) {
		t.Parallel()
		a, b := newUser(t, srv, t.Name()+"-a"), newUser(t, srv, t.Name()+"-b")
		a.setConfig("/app/key", "a")
		a.setConfig("only-a", "a")
		b.do("GET", "/configuration/only-a", nil).notFound("ConfigurationValue", "only-a")
		b.do("DELETE", "/configuration/only-a", nil).notFound("ConfigurationValue", "only-a")
		for _, p := range []string{"/configuration", "/configuration/app/"} {
			if vals, _ := list[configValue](b.do("GET", p, nil)); len(vals) != 0 {
				t.Errorf("b's GET %s: %+v", p, vals)
			}
		}
		b.setConfig("/app/key", "b")
		b.setConfig("b-1", "b")
		var got configValue
		a.do("GET", "/configuration//app/key", nil).want(200).json(&got)
		if got.Value != "a" {
			t.Errorf("a's value %q after b's set", got.Value)
		}
	})
	t.Run("events", func(t *testing.T) {
		t.Parallel()
		// A server of its own, for a clock of its own: moving the shared
		// one would time out the other subtests' services.
		clock := new(testserver.Clock)
		srv := testserver.Start(t, testserver.Options{Store: kind, Clock: clock})
		a, b := newUser(t, srv, t.Name()+"-a"), newUser(t, srv, t.Name()+"-b")
		a.create("svc-a", 30)
		a.setConfig("key-a", "v")
		b.create("svc-b", 120)
		clock.Advance(31 * time.Second) // svc-a times out, svc-b does not
		if got, want := summary(b.events("")), []string{"service.join svc-b"}; !slices.Equal(got, want) {
			t.Errorf("b's events %q, want %q", got, want)
		}
		if got, want := summary(a.events("")), []string{"service.join svc-a", "configuration_value.update key-a", "service.timeout svc-a"}; !slices.Equal(got, want) {
			t.Errorf("a's events %q, want %q", got, want)
		}
	})
	t.Run("long-polls", func(t *testing.T) {
		t.Parallel()
		a, b := newUser(t, srv, t.Name()+"-a"), newUser(t, srv, t.Name()+"-b")
		a.create("svc-a", 30)
		b.create("svc-b", 30)
		pollA := a.longPoll("?marker=" + a.events("")[0].ID + "&wait=30")
		pollB := b.longPoll("?marker=" + b.events("")[0].ID + "&wait=30")
		b.setConfig("key-b", "v")
		stillWaiting(t, pollA)
		if got, want := summary(answer(t, pollB)), []string{"service.join svc-b", "configuration_value.update key-b"}; !slices.Equal(got, want) {
			t.Errorf("b's long-poll %q, want %q", got, want)
		}
		a.setConfig("key-a", "v")
		if got, want := summary(answer(t, pollA)), []string{"service.join svc-a", "configuration_value.update key-a"}; !slices.Equal(got, want) {
			t.Errorf("a's long-poll %q, want %q", got, want)
		}
	})
}
