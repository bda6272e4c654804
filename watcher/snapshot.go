package watcher

import (
	"maps"
	"slices"
	"strings"
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

	services map[string]registry.Service
	config   map[string]string
	sorted   []registry.Service // services sorted by id
}

// NewSnapshot builds a synced snapshot from full lists.
func NewSnapshot(services []registry.Service, config []registry.ConfigValue, marker string, at time.Time) *Snapshot {
	s := &Snapshot{Marker: marker, Synced: true, SyncedAt: at, ChangedAt: at,
		services: make(map[string]registry.Service, len(services)), config: make(map[string]string, len(config))}
	for _, svc := range services {
		s.services[svc.ID] = svc
	}
	for _, cv := range config {
		s.config[cv.ID] = cv.Value
	}
	s.sort()
	return s
}

func (s *Snapshot) sort() {
	s.sorted = slices.SortedFunc(maps.Values(s.services), func(a, b registry.Service) int { return strings.Compare(a.ID, b.ID) })
}

// Services returns every live service, sorted by id. Do not modify it.
func (s *Snapshot) Services() []registry.Service {
	if s == nil {
		return nil
	}
	return s.sorted
}

// Service returns one service.
func (s *Snapshot) Service(id string) (registry.Service, bool) {
	if s == nil {
		return registry.Service{}, false
	}
	svc, ok := s.services[id]
	return svc, ok
}

// Config returns one configuration value.
func (s *Snapshot) Config(id string) (string, bool) {
	if s == nil {
		return "", false
	}
	v, ok := s.config[id]
	return v, ok
}

// ConfigValues returns the configuration values whose id begins with
// prefix, sorted by id.
func (s *Snapshot) ConfigValues(prefix string) []registry.ConfigValue {
	if s == nil {
		return nil
	}
	var out []registry.ConfigValue
	for id, v := range s.config {
		if strings.HasPrefix(id, prefix) {
			out = append(out, registry.ConfigValue{ID: id, Value: v})
		}
	}
	slices.SortFunc(out, func(a, b registry.ConfigValue) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Apply returns the snapshot with events applied in order, and whether they
// changed anything. Events are applied idempotently: a join of a service
// already present replaces it, a remove of a missing one is a no-op, so a
// watcher may replay events the lists already reflect.
func (s *Snapshot) Apply(events []registry.Event, at time.Time) (*Snapshot, bool) {
	if len(events) == 0 {
		return s, false
	}
	next := &Snapshot{Marker: s.Marker, Synced: s.Synced, SyncedAt: s.SyncedAt, ChangedAt: s.ChangedAt, Version: s.Version,
		services: s.services, config: s.config, sorted: s.sorted}
	servicesCopied, configCopied, changed := false, false, false
	for _, ev := range events {
		next.Marker = ev.ID
		switch ev.Type {
		case registry.ServiceJoin, registry.ServiceUpdate, registry.ServiceRemove, registry.ServiceTimeout:
			svc, err := ev.Service()
			if err != nil {
				continue
			}
			old, had := next.services[svc.ID]
			if ev.Type == registry.ServiceRemove || ev.Type == registry.ServiceTimeout {
				if !had {
					continue
				}
			} else if had && sameService(old, svc) {
				continue
			}
			if !servicesCopied {
				next.services, servicesCopied = maps.Clone(next.services), true
			}
			if ev.Type == registry.ServiceRemove || ev.Type == registry.ServiceTimeout {
				delete(next.services, svc.ID)
			} else {
				svc.LastSeen = old.LastSeen // events carry no last_seen
				next.services[svc.ID] = svc
			}
			changed = true
		case registry.ConfigValueUpdate, registry.ConfigValueRemove:
			c, err := ev.ConfigChange()
			if err != nil {
				continue
			}
			old, had := next.config[c.ID]
			if ev.Type == registry.ConfigValueRemove && !had || c.NewValue != nil && had && old == *c.NewValue {
				continue
			}
			if !configCopied {
				next.config, configCopied = maps.Clone(next.config), true
			}
			if ev.Type == registry.ConfigValueRemove {
				delete(next.config, c.ID)
			} else if c.NewValue != nil {
				next.config[c.ID] = *c.NewValue
			}
			changed = true
		}
	}
	if changed {
		next.Version++
		next.ChangedAt = at
		if servicesCopied {
			next.sort()
		}
	}
	return next, changed
}

func sameService(a, b registry.Service) bool {
	return a.ID == b.ID && a.HeartbeatTimeout == b.HeartbeatTimeout && slices.Equal(a.Tags, b.Tags) && maps.Equal(a.Metadata, b.Metadata)
}
