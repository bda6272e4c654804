package store

import (
	"strconv"
	"time"

	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/registry"
)

// ServiceRecord is a service as stored, without its heartbeat state.
type ServiceRecord struct {
	ID               string            `json:"id"`
	Tags             []string          `json:"tags"`
	Metadata         map[string]string `json:"metadata"`
	HeartbeatTimeout int               `json:"heartbeat_timeout"`
	// Incarnation tells apart services that reuse an id after a delete; a
	// heartbeat token is bound to one incarnation.
	Incarnation uint64 `json:"incarnation"`
}

// Normalize stores nil tags and metadata as empty (spec §6.1).
func (r *ServiceRecord) Normalize() {
	if r.Tags == nil {
		r.Tags = []string{}
	}
	if r.Metadata == nil {
		r.Metadata = map[string]string{}
	}
}

// Service returns the record as an API service.
func (r ServiceRecord) Service(lastSeen time.Time) registry.Service {
	return registry.Service{ID: r.ID, Tags: r.Tags, Metadata: r.Metadata, HeartbeatTimeout: r.HeartbeatTimeout, LastSeen: lastSeen}
}

// Apply returns the record with u applied and whether anything changed.
func (r ServiceRecord) Apply(u ServiceUpdate) (ServiceRecord, bool) {
	out := r
	changed := false
	if u.Tags != nil {
		out.Tags = *u.Tags
		changed = changed || !equalStrings(r.Tags, out.Tags)
	}
	if u.Metadata != nil {
		out.Metadata = *u.Metadata
		changed = changed || !equalMaps(r.Metadata, out.Metadata)
	}
	if u.HeartbeatTimeout != nil {
		out.HeartbeatTimeout = *u.HeartbeatTimeout
		changed = changed || r.HeartbeatTimeout != out.HeartbeatTimeout
	}
	out.Normalize()
	return out, changed
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// servicePayload is a service event's payload, keys in the original's order
// (spec §6.3).
type servicePayload struct {
	ID               string            `json:"id"`
	HeartbeatTimeout int               `json:"heartbeat_timeout"`
	Tags             []string          `json:"tags"`
	Metadata         map[string]string `json:"metadata"`
}

type configUpdatePayload struct {
	OldValue *string `json:"old_value"`
	NewValue string  `json:"new_value"`
	ID       string  `json:"configuration_value_id"`
}

type configRemovePayload struct {
	OldValue string `json:"old_value"`
	ID       string `json:"configuration_value_id"`
}

// ServiceEvent encodes a service.* event.
func ServiceEvent(id timeuuid.UUID, ts time.Time, typ registry.EventType, r ServiceRecord) Event {
	r.Normalize()
	return encodeEvent(id, ts, typ, servicePayload{ID: r.ID, HeartbeatTimeout: r.HeartbeatTimeout, Tags: r.Tags, Metadata: r.Metadata})
}

// ConfigUpdateEvent encodes configuration_value.update; old is nil on the
// first set.
func ConfigUpdateEvent(id timeuuid.UUID, ts time.Time, key string, old *string, value string) Event {
	return encodeEvent(id, ts, registry.ConfigValueUpdate, configUpdatePayload{OldValue: old, NewValue: value, ID: key})
}

// ConfigRemoveEvent encodes configuration_value.remove.
func ConfigRemoveEvent(id timeuuid.UUID, ts time.Time, key, old string) Event {
	return encodeEvent(id, ts, registry.ConfigValueRemove, configRemovePayload{OldValue: old, ID: key})
}

func encodeEvent(id timeuuid.UUID, ts time.Time, typ registry.EventType, payload any) Event {
	p, err := MarshalJSON(payload)
	if err != nil {
		// The payloads are plain structs of strings and ints.
		panic("store: encode event payload: " + err.Error())
	}
	b := make([]byte, 0, 96+len(p))
	b = append(b, `{"id":"`...)
	b = append(b, id.String()...)
	b = append(b, `","timestamp":`...)
	b = strconv.AppendInt(b, ts.UnixMilli(), 10)
	b = append(b, `,"type":"`...)
	b = append(b, typ...)
	b = append(b, `","payload":`...)
	b = append(b, p...)
	b = append(b, '}')
	return Event{ID: id, Type: typ, JSON: b}
}

// Matches reports whether an event of type t passes the filter types.
func Matches(types []registry.EventType, t registry.EventType) bool {
	if types == nil {
		return true
	}
	for _, x := range types {
		if x == t {
			return true
		}
	}
	return false
}
