package store

import "github.com/svcreg/svcreg/registry"

// EncodeStoredEvent is an event as both stores keep it: its JSON prefixed
// with its type (one length byte, then the type), so that type filters need
// not decode it.
func EncodeStoredEvent(ev Event) []byte {
	b := make([]byte, 0, 1+len(ev.Type)+len(ev.JSON))
	b = append(b, byte(len(ev.Type)))
	b = append(b, ev.Type...)
	return append(b, ev.JSON...)
}

// DecodeStoredEvent splits a stored event into its type and its JSON (which
// aliases v); ok is false if v is too short to hold what it says.
func DecodeStoredEvent(v []byte) (typ registry.EventType, json []byte, ok bool) {
	if len(v) < 1 || len(v) < 1+int(v[0]) {
		return "", nil, false
	}
	n := int(v[0])
	return eventType(v[1 : 1+n]), v[1+n:], true
}

// eventType returns the event type named by b without allocating for the
// known types.
func eventType(b []byte) registry.EventType {
	for _, t := range registry.EventTypes {
		if string(b) == string(t) {
			return t
		}
	}
	return registry.EventType(b)
}
