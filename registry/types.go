package registry

import (
	"encoding/json"
	"fmt"
	"time"
)

// Service is a service as the registry stores it (spec §6.1).
type Service struct {
	ID       string
	Tags     []string
	Metadata map[string]string
	// HeartbeatTimeout is the number of seconds the registry waits for a
	// heartbeat before it times the service out (3..120).
	HeartbeatTimeout int
	// LastSeen is the time of the last successful heartbeat; zero until the
	// first one.
	LastSeen time.Time
}

type serviceJSON struct {
	ID               string            `json:"id"`
	Tags             []string          `json:"tags"`
	Metadata         map[string]string `json:"metadata"`
	HeartbeatTimeout int               `json:"heartbeat_timeout"`
	LastSeen         *int64            `json:"last_seen"`
}

// MarshalJSON encodes s in the wire form: tags and metadata are never null,
// last_seen is milliseconds since the epoch or null.
func (s Service) MarshalJSON() ([]byte, error) {
	w := serviceJSON{ID: s.ID, Tags: s.Tags, Metadata: s.Metadata, HeartbeatTimeout: s.HeartbeatTimeout}
	if w.Tags == nil {
		w.Tags = []string{}
	}
	if w.Metadata == nil {
		w.Metadata = map[string]string{}
	}
	if !s.LastSeen.IsZero() {
		ms := s.LastSeen.UnixMilli()
		w.LastSeen = &ms
	}
	return json.Marshal(w)
}

// UnmarshalJSON decodes the wire form. A service of more than
// MaxServiceItems tags and metadata pairs is refused without decoding
// them: the API keeps 10 tags and 20 pairs, and each item costs the
// client some 40 bytes of memory however short it is on the wire (a
// list page of null tags would decode to ten times its size).
func (s *Service) UnmarshalJSON(b []byte) error {
	if len(b) > smallService {
		if n := nestedItems(b); n > MaxServiceItems {
			return fmt.Errorf("a service of more than %d tags and metadata pairs (%d): the API keeps at most 10 tags and 20 pairs; refused without decoding them", MaxServiceItems, n)
		}
	}
	var w serviceJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*s = Service{ID: w.ID, Tags: w.Tags, Metadata: w.Metadata, HeartbeatTimeout: w.HeartbeatTimeout}
	if s.Tags == nil {
		s.Tags = []string{}
	}
	if s.Metadata == nil {
		s.Metadata = map[string]string{}
	}
	if w.LastSeen != nil {
		s.LastSeen = time.UnixMilli(*w.LastSeen)
	}
	return nil
}

// MaxServiceItems is the most tags and metadata pairs, together, a
// service the client decodes may hold: fifty times what the API keeps.
const MaxServiceItems = 1024

// smallService is the size in bytes under which a service's JSON is
// decoded without counting its items: it cannot hold more than about
// MaxServiceItems of them.
const smallService = 4 << 10

// nestedItems counts the items of the arrays and objects directly within
// the JSON object b (valid JSON, as encoding/json checks a value before
// it calls UnmarshalJSON): a service's tags and metadata pairs, and those
// of keys it does not know.
func nestedItems(b []byte) int {
	depth, n := 0, 0
	inString, escaped, empty := false, false, true
	for _, c := range b {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			depth++
			empty = true
			continue
		case c == ']' || c == '}':
			if depth == 2 && !empty {
				n++ // the last item, which no comma follows
			}
			depth--
		case c == ',':
			if depth == 2 {
				n++
			}
		}
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			empty = false
		}
	}
	return n
}

// HasTag reports whether the service carries tag (exact, case-sensitive).
func (s Service) HasTag(tag string) bool {
	for _, t := range s.Tags {
		if t == tag {
			return true
		}
	}
	return false
}

// ConfigValue is one configuration value (spec §6.2). A namespaced id begins
// with "/", as in "/production/cassandra/listen_ip".
type ConfigValue struct {
	ID    string `json:"id"`
	Value string `json:"value"`
}

// EventType names a kind of event in the feed.
type EventType string

// The event types. ServiceUpdate is an svcreg extension: it is emitted when
// PUT /services/{id} changes a service.
const (
	ServiceJoin       EventType = "service.join"
	ServiceRemove     EventType = "service.remove"
	ServiceTimeout    EventType = "service.timeout"
	ServiceUpdate     EventType = "service.update"
	ConfigValueUpdate EventType = "configuration_value.update"
	ConfigValueRemove EventType = "configuration_value.remove"
)

// EventTypes lists every event type the registry emits. It is read-only:
// write to a copy (slices.Clone) to change it.
var EventTypes = []EventType{ServiceJoin, ServiceRemove, ServiceTimeout, ServiceUpdate, ConfigValueUpdate, ConfigValueRemove}

// Event is one entry of the events feed (spec §6.3).
type Event struct {
	// ID is a version-1 time UUID; the feed is ordered by its time.
	ID string
	// Timestamp is when the event happened; for service.timeout it is the
	// service's deadline.
	Timestamp time.Time
	Type      EventType
	// Payload is the raw JSON payload; use Service or ConfigChange to decode it.
	Payload json.RawMessage
}

type eventJSON struct {
	ID        string          `json:"id"`
	Timestamp int64           `json:"timestamp"`
	Type      EventType       `json:"type"`
	Payload   json.RawMessage `json:"payload"`
}

// MarshalJSON encodes e in the wire form.
func (e Event) MarshalJSON() ([]byte, error) {
	p := e.Payload
	if p == nil {
		p = json.RawMessage("{}")
	}
	return json.Marshal(eventJSON{ID: e.ID, Timestamp: e.Timestamp.UnixMilli(), Type: e.Type, Payload: p})
}

// UnmarshalJSON decodes the wire form.
func (e *Event) UnmarshalJSON(b []byte) error {
	var w eventJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*e = Event{ID: w.ID, Timestamp: time.UnixMilli(w.Timestamp), Type: w.Type, Payload: w.Payload}
	return nil
}

// IsService reports whether the event is about a service.
func (e Event) IsService() bool {
	switch e.Type {
	case ServiceJoin, ServiceRemove, ServiceTimeout, ServiceUpdate:
		return true
	}
	return false
}

// Service decodes the payload of a service event: the service as it was
// stored when the event happened (LastSeen is always zero).
func (e Event) Service() (Service, error) {
	if !e.IsService() {
		return Service{}, fmt.Errorf("registry: %s event has no service payload", ShownText(string(e.Type)))
	}
	var s Service
	if err := json.Unmarshal(e.Payload, &s); err != nil {
		return Service{}, fmt.Errorf("registry: decode %s payload: %w", e.Type, answerError(err))
	}
	if s.ID == "" { // {} or null: no service the registry could hold
		return Service{}, fmt.Errorf("registry: %s payload names no service", e.Type)
	}
	return s, nil
}

// ConfigChange is the payload of a configuration event.
type ConfigChange struct {
	ID string `json:"configuration_value_id"`
	// OldValue is nil when the value was first set.
	OldValue *string `json:"old_value"`
	// NewValue is nil for configuration_value.remove.
	NewValue *string `json:"new_value,omitempty"`
}

// ConfigChange decodes the payload of a configuration event.
func (e Event) ConfigChange() (ConfigChange, error) {
	if e.Type != ConfigValueUpdate && e.Type != ConfigValueRemove {
		return ConfigChange{}, fmt.Errorf("registry: %s event has no configuration payload", ShownText(string(e.Type)))
	}
	var c ConfigChange
	if err := json.Unmarshal(e.Payload, &c); err != nil {
		return ConfigChange{}, fmt.Errorf("registry: decode %s payload: %w", e.Type, answerError(err))
	}
	if c.ID == "" {
		return ConfigChange{}, fmt.Errorf("registry: %s payload names no configuration value", e.Type)
	}
	return c, nil
}

// Limits is the answer of GET /limits (spec §6.6).
type Limits struct {
	// Resource maps "service" and "configuration_value" to the most objects
	// of that kind the account may hold.
	Resource map[string]int `json:"resource"`
	// Rate maps a path regex to its rate-limit rule.
	Rate map[string]RateLimit `json:"rate"`
}

// RateLimit is one rate-limit rule and its use.
type RateLimit struct {
	Limit  int    `json:"limit"`
	Used   int    `json:"used"`
	Window string `json:"window"`
}
