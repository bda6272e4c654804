package watcher

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/svcreg/svcreg/registry"
)

// TestSnapshotApplyMatchesList applies random batches of random events
// (joins, updates, removes and timeouts of present and missing services,
// configuration sets and removes, replays) to a listed snapshot, and checks
// after every batch that the result equals a snapshot listed from the
// registry's state at that point: same services in the same order, the
// same lookups, the same tree shape. Snapshots taken along the way must not
// change afterwards.
func TestSnapshotApplyMatchesList(t *testing.T) {
	t.Parallel()
	for seed := range uint64(20) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 0x5eed))
			m := newModel(rng)
			snap := NewSnapshot(m.serviceList(), m.configList(), "m0", time.Unix(0, 0))
			type kept struct {
				snap     *Snapshot
				services []registry.Service
				config   []registry.ConfigValue
			}
			var old []kept
			for batch := range 200 {
				var events []registry.Event
				want := false
				for range 1 + rng.IntN(12) {
					ev, changed := m.randomEvent(t, fmt.Sprintf("e%d-%d", batch, len(events)))
					events = append(events, ev)
					want = want || changed
				}
				next, changed, err := snap.Apply(events, time.Unix(int64(batch), 0))
				if err != nil {
					t.Fatal(err)
				}
				if changed != want {
					t.Fatalf("batch %d: Apply says changed=%v, the registry's state changed=%v", batch, changed, want)
				}
				if wantVersion := snap.Version + map[bool]uint64{true: 1}[changed]; next.Version != wantVersion || next.Marker != events[len(events)-1].ID {
					t.Fatalf("batch %d: version %d marker %q", batch, next.Version, next.Marker)
				}
				snap = next
				if batch%7 == 0 {
					// Read the lazy views of some snapshots on the way.
					snap.ServicesWithTag("www")
					old = append(old, kept{snap, slices.Clone(snap.Services()), snap.ConfigValues("")})
				}
				listed := NewSnapshot(m.serviceList(), m.configList(), snap.Marker, time.Now())
				assertSameSnapshot(t, snap, listed, m)
				if snap.bytes != listed.bytes {
					t.Fatalf("batch %d: the snapshot counts %d bytes of registry text, the same listed %d", batch, snap.bytes, listed.bytes)
				}
			}
			for i, k := range old {
				if !reflect.DeepEqual(k.snap.Services(), k.services) || !reflect.DeepEqual(k.snap.ConfigValues(""), k.config) {
					t.Fatalf("snapshot %d changed after later events were applied", i)
				}
			}
		})
	}
}

// model is the registry's state as a test changes it.
type model struct {
	rng      *rand.Rand
	services map[string]registry.Service
	config   map[string]string
}

var (
	modelIDs  = []string{"a", "b", "web-1", "web-10", "web-2", "web-a", "x/y", "z", "é", "db-1", "db-2", "cache", "web-3", "web-4"}
	modelTags = []string{"www", "db", "blue", "green"}
	modelKeys = []string{"/a", "/a/b", "/a/c", "/b", "/b/x", "/c"}
)

func newModel(rng *rand.Rand) *model {
	m := &model{rng: rng, services: map[string]registry.Service{}, config: map[string]string{}}
	for _, id := range modelIDs {
		if rng.IntN(2) == 0 {
			s := m.randomService(id)
			s.LastSeen = time.UnixMilli(rng.Int64N(1e12)).UTC()
			m.services[id] = s
		}
	}
	for _, k := range modelKeys {
		if rng.IntN(2) == 0 {
			m.config[k] = fmt.Sprint(rng.IntN(3))
		}
	}
	return m
}

func (m *model) randomService(id string) registry.Service {
	s := registry.Service{ID: id, HeartbeatTimeout: 10 * (1 + m.rng.IntN(2)), Metadata: map[string]string{}}
	for _, tag := range modelTags {
		if m.rng.IntN(3) == 0 {
			s.Tags = append(s.Tags, tag)
		}
	}
	if m.rng.IntN(2) == 0 {
		s.Metadata["ip"] = fmt.Sprintf("10.0.0.%d", m.rng.IntN(3))
	}
	return s
}

// randomEvent changes the model (or not) and returns the event that says
// so, and whether the state changed.
func (m *model) randomEvent(t *testing.T, eventID string) (registry.Event, bool) {
	id := modelIDs[m.rng.IntN(len(modelIDs))]
	key := modelKeys[m.rng.IntN(len(modelKeys))]
	old, had := m.services[id]
	switch m.rng.IntN(6) {
	case 0, 1: // join or update, often with the same content (a replay)
		s := m.randomService(id)
		if had && m.rng.IntN(3) == 0 {
			s = old
		}
		typ := registry.ServiceJoin
		if had && m.rng.IntN(2) == 0 {
			typ = registry.ServiceUpdate
		}
		ev := serviceEvent(t, eventID, typ, s)
		// The registry lists a service as its events carry it.
		s, err := ev.Service()
		if err != nil {
			t.Fatal(err)
		}
		if had && sameService(old, s) {
			return ev, false
		}
		s.LastSeen = old.LastSeen
		m.services[id] = s
		return ev, true
	case 2: // remove or timeout, of a service that may be gone already
		typ := registry.ServiceRemove
		if m.rng.IntN(2) == 0 {
			typ = registry.ServiceTimeout
		}
		delete(m.services, id)
		return serviceEvent(t, eventID, typ, registry.Service{ID: id}), had
	case 3, 4:
		v := fmt.Sprint(m.rng.IntN(3))
		cur, ok := m.config[key]
		m.config[key] = v
		return configEvent(t, eventID, registry.ConfigValueUpdate, key, &v), !ok || cur != v
	default:
		_, ok := m.config[key]
		delete(m.config, key)
		return configEvent(t, eventID, registry.ConfigValueRemove, key, nil), ok
	}
}

// serviceList and configList are the registry's lists, in a random order.
func (m *model) serviceList() []registry.Service {
	out := slices.Collect(maps.Values(m.services))
	m.rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func (m *model) configList() []registry.ConfigValue {
	var out []registry.ConfigValue
	for k, v := range m.config {
		out = append(out, registry.ConfigValue{ID: k, Value: v})
	}
	m.rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func assertSameSnapshot(t *testing.T, got, listed *Snapshot, m *model) {
	t.Helper()
	if !reflect.DeepEqual(got.Services(), listed.Services()) {
		t.Fatalf("services\n got %#v\nlisted %#v", got.Services(), listed.Services())
	}
	if len(got.Services()) != len(m.services) || !sameContent(got, listed) {
		t.Fatalf("snapshot holds %d services, the registry %d", len(got.Services()), len(m.services))
	}
	for _, tag := range modelTags {
		if !reflect.DeepEqual(got.ServicesWithTag(tag), listed.ServicesWithTag(tag)) {
			t.Fatalf("servicesWithTag %q: %v, listed %v", tag, got.ServicesWithTag(tag), listed.ServicesWithTag(tag))
		}
	}
	for _, id := range modelIDs {
		s, ok := got.Service(id)
		want, wantOK := m.services[id]
		if ok != wantOK || !reflect.DeepEqual(s, want) {
			t.Fatalf("service %q = %+v, %v; the registry has %+v, %v", id, s, ok, want, wantOK)
		}
	}
	for _, k := range modelKeys {
		v, ok := got.Config(k)
		want, wantOK := m.config[k]
		if ok != wantOK || v != want {
			t.Fatalf("config %q = %q, %v; the registry has %q, %v", k, v, ok, want, wantOK)
		}
	}
	for _, prefix := range []string{"", "/a", "/a/", "/b/", "/d"} {
		if g, l := got.ConfigValues(prefix), listed.ConfigValues(prefix); !reflect.DeepEqual(g, l) {
			t.Fatalf("ConfigValues(%q) = %v, listed %v", prefix, g, l)
		}
	}
	checkTree(t, got.services)
	checkTree(t, got.config)
	if g, l := shape(got.services.root), shape(listed.services.root); g != l {
		t.Fatalf("tree shapes differ:\n got %s\nlisted %s", g, l)
	}
}

// checkTree checks the treap's invariants: keys in order, each node's
// priority at least its children's, the count right.
func checkTree[V any](t *testing.T, tr tree[V]) {
	t.Helper()
	n := 0
	var walk func(nd *node[V], lo, hi *string)
	walk = func(nd *node[V], lo, hi *string) {
		if nd == nil {
			return
		}
		n++
		if lo != nil && nd.key <= *lo || hi != nil && nd.key >= *hi {
			t.Fatalf("key %q out of order", nd.key)
		}
		if nd.prio != priority(nd.key) {
			t.Fatalf("key %q has a wrong priority", nd.key)
		}
		for _, c := range []*node[V]{nd.left, nd.right} {
			if c != nil && c.prio > nd.prio {
				t.Fatalf("key %q has a child of higher priority", nd.key)
			}
		}
		walk(nd.left, lo, &nd.key)
		walk(nd.right, &nd.key, hi)
	}
	walk(tr.root, nil, nil)
	if n != tr.len() {
		t.Fatalf("tree counts %d keys, holds %d", tr.len(), n)
	}
}

func shape[V any](n *node[V]) string {
	if n == nil {
		return "."
	}
	return "(" + shape(n.left) + " " + n.key + " " + shape(n.right) + ")"
}

// TestSnapshotApplyStopsAtUndecodableEvent: an event whose payload does not
// decode must not be skipped silently.
func TestSnapshotApplyStopsAtUndecodableEvent(t *testing.T) {
	base := NewSnapshot(nil, nil, "m0", time.Unix(0, 0))
	good := serviceEvent(t, "e1", registry.ServiceJoin, registry.Service{ID: "a", HeartbeatTimeout: 10})
	for _, bad := range []registry.Event{
		{ID: "e2", Type: registry.ServiceJoin, Payload: []byte(`{"id":17}`)},
		{ID: "e2", Type: registry.ServiceRemove, Payload: []byte(`[`)},
		{ID: "e2", Type: registry.ConfigValueUpdate, Payload: []byte(`{"configuration_value_id":["x"]}`)},
	} {
		after := serviceEvent(t, "e3", registry.ServiceJoin, registry.Service{ID: "b", HeartbeatTimeout: 10})
		next, changed, err := base.Apply([]registry.Event{good, bad, after}, time.Unix(1, 0))
		var de *DecodeError
		if !errors.As(err, &de) || de.Event.ID != "e2" {
			t.Fatalf("%s: err = %v, want a *DecodeError for e2", bad.Payload, err)
		}
		if !changed || next.Marker != "e1" {
			t.Fatalf("%s: changed=%v marker %q; want the event before the bad one applied", bad.Payload, changed, next.Marker)
		}
		if _, ok := next.Service("b"); ok {
			t.Fatalf("%s: the event after the bad one was applied", bad.Payload)
		}
	}
}

// TestNewSnapshotDuplicateIDs: of a list's services with the same id, the
// last one counts, as if they had been applied in order.
func TestNewSnapshotDuplicateIDs(t *testing.T) {
	s := NewSnapshot([]registry.Service{{ID: "b"}, {ID: "a", HeartbeatTimeout: 1}, {ID: "c"}, {ID: "a", HeartbeatTimeout: 2}},
		[]registry.ConfigValue{{ID: "/x", Value: "1"}, {ID: "/x", Value: "2"}}, "m", time.Now())
	checkTree(t, s.services)
	checkTree(t, s.config)
	if a, _ := s.Service("a"); len(s.Services()) != 3 || a.HeartbeatTimeout != 2 {
		t.Fatalf("services %+v", s.Services())
	}
	if v, _ := s.Config("/x"); v != "2" {
		t.Fatalf("/x = %q", v)
	}
}

// A decode error names the event by its id and type quoted when they hold
// what a line of text should not: a newline in an id cannot pass for
// another line of the CLI's errors or a log.
func TestDecodeErrorQuotesTheRegistrysText(t *testing.T) {
	e := &DecodeError{Event: registry.Event{ID: "x\nsvcreg: all good", Type: "service.join\x1b[2J"}, Err: errors.New("bad payload")}
	got := e.Error()
	if strings.ContainsAny(got, "\n\x1b") || !strings.Contains(got, `"x\nsvcreg: all good"`) {
		t.Errorf("DecodeError: %q", got)
	}
	plain := (&DecodeError{Event: registry.Event{ID: "abc", Type: "service.join"}, Err: errors.New("bad payload")}).Error()
	if plain != "event abc (service.join): bad payload" {
		t.Errorf("DecodeError of plain text: %q", plain)
	}
}

// A list that repeats an id (a proxy repeating a page) holds it once, and
// counts its bytes once: once removed, nothing is left counted.
func TestNewSnapshotCountsRepeatedIDsOnce(t *testing.T) {
	a := registry.Service{ID: "a", Metadata: map[string]string{"k": "0123456789"}}
	s := NewSnapshot([]registry.Service{a, a}, []registry.ConfigValue{{ID: "c", Value: "v"}, {ID: "c", Value: "v"}}, "m", time.Now())
	next, _, err := s.Apply([]registry.Event{
		{ID: "e1", Type: registry.ServiceRemove, Payload: []byte(`{"id":"a"}`)},
		{ID: "e2", Type: registry.ConfigValueRemove, Payload: []byte(`{"configuration_value_id":"c","old_value":"v"}`)},
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if next.bytes != 0 {
		t.Errorf("the emptied snapshot counts %d bytes", next.bytes)
	}
}
