package watcher

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/svcreg/svcreg/registry"
)

// Snapshot is the registry's state as the watcher last saw it. A Snapshot
// is immutable: applying events returns a new one, so a renderer may hold it
// while the watcher moves on.
type Snapshot struct {
	// Marker is the feed position the snapshot reflects: the id of the last
	// event applied, or the X-Registry-Marker of the lists it was built from.
	Marker string
	// Synced is true once the snapshot was built from a full list of
	// services and configuration; a renderer must not install from an
	// unsynced snapshot.
	Synced bool
	// SyncedAt is when the last full list was taken.
	SyncedAt time.Time
	// ChangedAt is when the watcher last applied a change (a list or an
	// event) that changed the snapshot.
	ChangedAt time.Time
	// Version counts the changes, so that consumers can tell snapshots apart.
	Version uint64

	services tree[registry.Service]
	config   tree[string]
	view     *serviceView // shared with the snapshot before when services did not change
	// bytes is how many bytes of registry text the snapshot holds: ids,
	// tags, metadata and values (serviceBytes for a service's).
	bytes int64
}

// serviceView holds the sorted lists of a set of services, built on first
// use: a render reads them, the events before it never pay for them.
type serviceView struct {
	once  sync.Once
	all   []registry.Service
	mu    sync.Mutex
	byTag map[string][]registry.Service
}

// NewSnapshot builds a synced snapshot from full lists.
func NewSnapshot(services []registry.Service, config []registry.ConfigValue, marker string, at time.Time) *Snapshot {
	se := make([]entry[registry.Service], len(services))
	for i, svc := range services {
		se[i] = entry[registry.Service]{svc.ID, svc}
	}
	ce := make([]entry[string], len(config))
	for i, cv := range config {
		ce[i] = entry[string]{cv.ID, cv.Value}
	}
	s := &Snapshot{Marker: marker, Synced: true, SyncedAt: at, ChangedAt: at, view: &serviceView{},
		services: buildTree(se), config: buildTree(ce)}
	// Counted from the trees, which keep one of each id a list repeats.
	s.services.withPrefix("", func(_ string, svc registry.Service) { s.bytes += serviceBytes(svc) })
	s.config.withPrefix("", func(id, v string) { s.bytes += int64(len(id) + len(v)) })
	return s
}

// serviceBytes is how many bytes of registry text svc holds.
func serviceBytes(svc registry.Service) int64 {
	n := len(svc.ID)
	for _, t := range svc.Tags {
		n += len(t)
	}
	for k, v := range svc.Metadata {
		n += len(k) + len(v)
	}
	return int64(n)
}

// Services returns every live service, sorted by id. The list is built on
// the first call and shared by every caller: do not modify it.
func (s *Snapshot) Services() []registry.Service {
	if s == nil {
		return nil
	}
	v := s.lists()
	v.once.Do(func() { v.all = s.services.values() })
	return v.all
}

// lists returns the snapshot's lazily built lists; a zero Snapshot has
// none to share.
func (s *Snapshot) lists() *serviceView {
	if s.view == nil {
		return &serviceView{}
	}
	return s.view
}

// ServicesWithTag returns the services carrying tag, sorted by id. Each
// tag's list is built on first use and shared: do not modify it.
func (s *Snapshot) ServicesWithTag(tag string) []registry.Service {
	if s == nil {
		return nil
	}
	v := s.lists()
	all := s.Services()
	v.mu.Lock()
	defer v.mu.Unlock()
	list, ok := v.byTag[tag]
	if !ok {
		for _, svc := range all {
			if slices.Contains(svc.Tags, tag) {
				list = append(list, svc)
			}
		}
		if v.byTag == nil {
			v.byTag = map[string][]registry.Service{}
		}
		v.byTag[tag] = list
	}
	return list
}

// Service returns one service.
func (s *Snapshot) Service(id string) (registry.Service, bool) {
	if s == nil {
		return registry.Service{}, false
	}
	return s.services.get(id)
}

// Config returns one configuration value.
func (s *Snapshot) Config(id string) (string, bool) {
	if s == nil {
		return "", false
	}
	return s.config.get(id)
}

// ConfigValues returns the configuration values whose id begins with
// prefix, sorted by id.
func (s *Snapshot) ConfigValues(prefix string) []registry.ConfigValue {
	if s == nil {
		return nil
	}
	var out []registry.ConfigValue
	s.config.withPrefix(prefix, func(id, v string) { out = append(out, registry.ConfigValue{ID: id, Value: v}) })
	return out
}

// DecodeError is an event whose payload could not be decoded: the
// snapshot cannot follow the feed past it.
type DecodeError struct {
	Event registry.Event
	Err   error
}

func (e *DecodeError) Error() string {
	// The id and type are the registry's: quoted and cut, so that a
	// newline or a control character in them cannot pass for other lines
	// of a log or of the CLI's errors.
	return fmt.Sprintf("event %s (%s): %v", registry.ShownText(e.Event.ID), registry.ShownText(string(e.Event.Type)), e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// Apply returns the snapshot with events applied in order, and whether they
// changed anything. Events are applied idempotently: a join of a service
// already present replaces it, a remove of a missing one is a no-op, so a
// watcher may replay events the lists already reflect. Events of types it
// does not know are skipped.
//
// The cost is that of the events: the new snapshot shares all but
// O(log n) nodes per change with s, and its sorted lists are built only if
// someone reads them.
//
// An event whose payload does not decode stops Apply: it returns the
// snapshot with the events before it applied and a *DecodeError. The
// snapshot then no longer follows the registry; list it again.
func (s *Snapshot) Apply(events []registry.Event, at time.Time) (*Snapshot, bool, error) {
	if len(events) == 0 {
		return s, false, nil
	}
	next := &Snapshot{Marker: s.Marker, Synced: s.Synced, SyncedAt: s.SyncedAt, ChangedAt: s.ChangedAt, Version: s.Version,
		services: s.services, config: s.config, view: s.view, bytes: s.bytes}
	servicesChanged, changed := false, false
	var err error
	for _, ev := range events {
		var c bool
		switch ev.Type {
		case registry.ServiceJoin, registry.ServiceUpdate, registry.ServiceRemove, registry.ServiceTimeout:
			c, err = next.applyService(ev)
			servicesChanged = servicesChanged || c
		case registry.ConfigValueUpdate, registry.ConfigValueRemove:
			c, err = next.applyConfig(ev)
		}
		if err != nil {
			break
		}
		next.Marker = ev.ID
		changed = changed || c
	}
	if changed {
		next.Version++
		next.ChangedAt = at
		if servicesChanged {
			next.view = &serviceView{}
		}
	}
	return next, changed, err
}

func (s *Snapshot) applyService(ev registry.Event) (bool, error) {
	svc, err := ev.Service()
	if err != nil {
		return false, &DecodeError{Event: ev, Err: err}
	}
	old, had := s.services.get(svc.ID)
	if ev.Type == registry.ServiceRemove || ev.Type == registry.ServiceTimeout {
		if !had {
			return false, nil
		}
		s.services = s.services.without(svc.ID)
		s.bytes -= serviceBytes(old)
		return true, nil
	}
	if had && sameService(old, svc) {
		return false, nil
	}
	svc.LastSeen = old.LastSeen // events carry no last_seen
	s.services = s.services.with(svc.ID, svc)
	s.bytes += serviceBytes(svc)
	if had {
		s.bytes -= serviceBytes(old)
	}
	return true, nil
}

func (s *Snapshot) applyConfig(ev registry.Event) (bool, error) {
	c, err := ev.ConfigChange()
	if err != nil {
		return false, &DecodeError{Event: ev, Err: err}
	}
	old, had := s.config.get(c.ID)
	switch {
	case ev.Type == registry.ConfigValueRemove:
		if !had {
			return false, nil
		}
		s.config = s.config.without(c.ID)
		s.bytes -= int64(len(c.ID) + len(old))
	case c.NewValue == nil || had && old == *c.NewValue:
		return false, nil
	default:
		s.config = s.config.with(c.ID, *c.NewValue)
		s.bytes += int64(len(c.ID) + len(*c.NewValue))
		if had {
			s.bytes -= int64(len(c.ID) + len(old))
		}
	}
	return true, nil
}

func sameService(a, b registry.Service) bool {
	return a.ID == b.ID && a.HeartbeatTimeout == b.HeartbeatTimeout && slices.Equal(a.Tags, b.Tags) && maps.Equal(a.Metadata, b.Metadata)
}
