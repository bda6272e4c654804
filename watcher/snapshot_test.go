package watcher

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/svcreg/svcreg/registry"
)

func serviceEvent(t *testing.T, id string, typ registry.EventType, s registry.Service) registry.Event {
	t.Helper()
	p, err := json.Marshal(map[string]any{"id": s.ID, "heartbeat_timeout": s.HeartbeatTimeout, "tags": s.Tags, "metadata": s.Metadata})
	if err != nil {
		t.Fatal(err)
	}
	return registry.Event{ID: id, Type: typ, Payload: p}
}

func configEvent(t *testing.T, id string, typ registry.EventType, key string, value *string) registry.Event {
	t.Helper()
	p := map[string]any{"configuration_value_id": key, "old_value": nil}
	if value != nil {
		p["new_value"] = *value
	}
	b, _ := json.Marshal(p)
	return registry.Event{ID: id, Type: typ, Payload: b}
}

func TestSnapshotApply(t *testing.T) {
	seen := time.UnixMilli(1000)
	base := NewSnapshot([]registry.Service{
		{ID: "b", Tags: []string{"www"}, Metadata: map[string]string{"ip": "2"}, HeartbeatTimeout: 30, LastSeen: seen},
	}, []registry.ConfigValue{{ID: "/app/x", Value: "1"}}, "m0", time.Now())
	a := registry.Service{ID: "a", Tags: []string{"www"}, Metadata: map[string]string{"ip": "1"}, HeartbeatTimeout: 30}
	b2 := registry.Service{ID: "b", Tags: []string{"www"}, Metadata: map[string]string{"ip": "22"}, HeartbeatTimeout: 30}
	two := "2"

	next, changed, err := base.Apply([]registry.Event{
		serviceEvent(t, "e1", registry.ServiceJoin, a),
		serviceEvent(t, "e2", registry.ServiceUpdate, b2),
		configEvent(t, "e3", registry.ConfigValueUpdate, "/app/x", &two),
		configEvent(t, "e4", registry.ConfigValueUpdate, "/app/y", &two),
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !changed || next.Version != base.Version+1 || next.Marker != "e4" {
		t.Fatalf("changed=%v version %d marker %q", changed, next.Version, next.Marker)
	}
	if ids := next.Services(); len(ids) != 2 || ids[0].ID != "a" || ids[1].ID != "b" {
		t.Fatalf("services %v, want a, b sorted", ids)
	}
	if s, _ := next.Service("b"); s.Metadata["ip"] != "22" || !s.LastSeen.Equal(seen) {
		t.Fatalf("updated b = %+v; want the new metadata and the listed last_seen kept", s)
	}
	if v, _ := next.Config("/app/x"); v != "2" {
		t.Fatalf("/app/x = %q", v)
	}
	// The old snapshot is untouched.
	if s, _ := base.Service("b"); s.Metadata["ip"] != "2" || len(base.Services()) != 1 {
		t.Fatal("Apply changed the snapshot it was called on")
	}
	if v, _ := base.Config("/app/x"); v != "1" {
		t.Fatal("Apply changed the old snapshot's configuration")
	}

	// Replaying events the snapshot already reflects changes nothing.
	again, changed, err := next.Apply([]registry.Event{
		serviceEvent(t, "e1", registry.ServiceJoin, a),
		configEvent(t, "e4", registry.ConfigValueUpdate, "/app/y", &two),
		serviceEvent(t, "e5", registry.ServiceRemove, registry.Service{ID: "gone"}),
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if changed || again.Version != next.Version || again.Marker != "e5" {
		t.Fatalf("replay: changed=%v version %d marker %q; want no change, the marker moved", changed, again.Version, again.Marker)
	}

	last, _, err := again.Apply([]registry.Event{
		serviceEvent(t, "e6", registry.ServiceTimeout, a),
		serviceEvent(t, "e7", registry.ServiceRemove, b2),
		configEvent(t, "e8", registry.ConfigValueRemove, "/app/x", nil),
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(last.Services()) != 0 {
		t.Fatalf("services after timeout and remove: %v", last.Services())
	}
	if _, ok := last.Config("/app/x"); ok {
		t.Fatal("/app/x still there after its remove")
	}
	if got := last.ConfigValues("/app/"); len(got) != 1 || got[0].ID != "/app/y" {
		t.Fatalf("ConfigValues = %v", got)
	}
}

// TestZeroSnapshot: a zero Snapshot reads as empty and can be applied to.
func TestZeroSnapshot(t *testing.T) {
	var z Snapshot
	if len(z.Services()) != 0 || len(z.ServicesWithTag("www")) != 0 || len(z.ConfigValues("")) != 0 {
		t.Fatal("a zero snapshot is not empty")
	}
	next, changed, err := z.Apply([]registry.Event{serviceEvent(t, "e1", registry.ServiceJoin, registry.Service{ID: "a", Tags: []string{"www"}})}, time.Now())
	if err != nil || !changed || len(next.ServicesWithTag("www")) != 1 {
		t.Fatalf("Apply on a zero snapshot: changed=%v err=%v services %v", changed, err, next.Services())
	}
}
