package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"unicode/utf16"

	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/server/store"
)

// The validation rules and messages of spec §5. Each check returns the
// validator's message ("details"), or "" when the value passes.

var (
	// The spec's patterns are JavaScript's, with /i: ASCII letters in
	// either case. Go's (?i) would also take the Kelvin sign (U+212A) for
	// k and the long s (U+017F) for s. The service id's
	// (^[a-zA-Z0-9_\-\.]{3,65}$) is plainID, after the length.
	markerPattern = regexp.MustCompile(`^[a-zA-Z0-9\-:_\.\/]{0,255}$`)
	intPattern    = regexp.MustCompile(`^-?(?:0|[1-9][0-9]*)$`)
)

// jsLength counts s in UTF-16 code units, as JavaScript does (spec §5.1).
func jsLength(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}

func lengthMessage(s string, lo, hi int) string {
	if n := jsLength(s); n < lo || n > hi {
		return fmt.Sprintf("String is not in range (%d..%d)", lo, hi)
	}
	return ""
}

// checkServiceID is the service id rule, also used for the tag query
// parameter: length 3..65, then [a-z0-9_.-].
func checkServiceID(s string) string {
	if m := lengthMessage(s, 3, 65); m != "" {
		return m
	}
	if !plainID(s) {
		return "Invalid characters"
	}
	return ""
}

// plainID reports whether s is all ASCII letters, digits, '_', '-' and
// '.': the service id pattern of spec §5, without a regexp (every
// heartbeat checks its id).
func plainID(s string) bool {
	for i := range len(s) {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-', c == '.':
		default:
			return false
		}
	}
	return true
}

// checkConfigID is the configuration id rule: length 3..500, then the
// namespace pattern.
func checkConfigID(s string) string {
	if m := lengthMessage(s, 3, 500); m != "" {
		return m
	}
	// Which part breaks the pattern (the original says only "Invalid
	// characters", also for a segment that is too short).
	return registry.ConfigIDProblem(s)
}

// jsonKind is the JSON type of a raw value by its first byte.
func jsonKind(raw json.RawMessage) byte {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return 0
	}
	switch c := raw[0]; c {
	case '"', '[', '{', 'n', 't', 'f':
		return c
	}
	return '0' // a number
}

// jsonString decodes a string value, or returns "Not a string".
func jsonString(raw json.RawMessage) (string, string) {
	if jsonKind(raw) != '"' {
		return "", "Not a string"
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", "Not a string"
	}
	return s, ""
}

// itemCount is JavaScript's Object.keys(v).length, which the original
// checks before the type (spec §5.2).
func itemCount(raw json.RawMessage) int {
	switch jsonKind(raw) {
	case '[':
		var a []json.RawMessage
		json.Unmarshal(raw, &a)
		return len(a)
	case '{':
		var m map[string]json.RawMessage
		json.Unmarshal(raw, &m)
		return len(m)
	case '"':
		s, _ := jsonString(raw)
		return jsLength(s)
	}
	return 0
}

func checkServiceIDField(raw json.RawMessage) (string, string) {
	s, msg := jsonString(raw)
	if msg != "" {
		return "", msg
	}
	return s, checkServiceID(s)
}

// checkTags: if not null, item count 0..10, an array, each item a string
// that keeps checkTag.
func checkTags(raw json.RawMessage) ([]string, string) {
	if jsonKind(raw) == 'n' {
		return []string{}, ""
	}
	if n := itemCount(raw); n > 10 {
		return nil, "Object needs to have between 0 and 10 items"
	}
	if jsonKind(raw) != '[' {
		return nil, "Not an array"
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, "Not an array"
	}
	tags := make([]string, 0, len(items))
	for _, it := range items {
		s, msg := jsonString(it)
		if msg == "" {
			msg = checkTag(s)
		}
		if msg != "" {
			return nil, msg
		}
		tags = append(tags, s)
	}
	return tags, ""
}

// checkMetadata: if not null, key count 0..20, a hash, each key and each
// value a string of 1..255 characters, checked in the order sent.
func checkMetadata(raw json.RawMessage) (map[string]string, string) {
	if jsonKind(raw) == 'n' {
		return map[string]string{}, ""
	}
	if n := itemCount(raw); n > 20 {
		return nil, "Object needs to have between 0 and 20 items"
	}
	if jsonKind(raw) != '{' {
		return nil, "Not a hash"
	}
	pairs, err := orderedObject(raw)
	if err != nil {
		return nil, "Not a hash"
	}
	md := make(map[string]string, len(pairs))
	for _, p := range pairs {
		if msg := lengthMessage(p.key, 1, 255); msg != "" {
			return nil, "Key " + p.key + ": " + msg
		}
		v, msg := jsonString(p.value)
		if msg == "" {
			msg = lengthMessage(v, 1, 255)
		}
		if msg != "" {
			return nil, "Value for key '" + p.key + "': " + msg
		}
		md[p.key] = v
	}
	return md, ""
}

type rawPair struct {
	key   string
	value json.RawMessage
}

// orderedObject returns an object's members in the order sent; a repeated
// key keeps its last value, as JSON.parse does.
func orderedObject(raw json.RawMessage) ([]rawPair, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // {
		return nil, err
	}
	var pairs []rawPair
	index := map[string]int{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if i, ok := index[key]; ok {
			pairs[i].value = v
			continue
		}
		index[key] = len(pairs)
		pairs = append(pairs, rawPair{key, v})
	}
	return pairs, nil
}

// checkTimeout: an integer (an integer-valued number or an integer string),
// then 3..120 (spec §5.1, §13 item 19).
func checkTimeout(raw json.RawMessage) (int, string) {
	var n float64
	switch jsonKind(raw) {
	case '0':
		f, err := strconv.ParseFloat(string(bytes.TrimSpace(raw)), 64)
		if err != nil || f != math.Trunc(f) || math.Abs(f) >= 1e21 {
			return 0, "Invalid integer"
		}
		n = f
	case '"':
		s, _ := jsonString(raw)
		if !intPattern.MatchString(s) {
			return 0, "Invalid integer"
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, "Invalid integer"
		}
		n = f
	default:
		return 0, "Invalid integer"
	}
	if n < 3 || n > 120 {
		return 0, "Value out of range (3..120)"
	}
	return int(n), ""
}

// validateNewService is the full check of a create body (spec §5.1), in
// schema order, stopping at the first failure. Unknown keys are ignored.
func validateNewService(b body) (store.NewService, *fault) {
	var ns store.NewService
	if b.null {
		return ns, badRequest("Empty Request Body")
	}
	raw, ok := b.fields["id"]
	if !ok {
		return ns, invalidField("id", "Missing required key (id)")
	}
	var msg string
	if ns.ID, msg = checkServiceIDField(raw); msg != "" {
		return ns, invalidField("id", msg)
	}
	ns.Tags = []string{}
	if raw, ok := b.fields["tags"]; ok {
		if ns.Tags, msg = checkTags(raw); msg != "" {
			return ns, invalidField("tags", msg)
		}
	}
	ns.Metadata = map[string]string{}
	if raw, ok := b.fields["metadata"]; ok {
		if ns.Metadata, msg = checkMetadata(raw); msg != "" {
			return ns, invalidField("metadata", msg)
		}
	}
	raw, ok = b.fields["heartbeat_timeout"]
	if !ok {
		return ns, invalidField("heartbeat_timeout", "Missing required key (heartbeat_timeout)")
	}
	if ns.HeartbeatTimeout, msg = checkTimeout(raw); msg != "" {
		return ns, invalidField("heartbeat_timeout", msg)
	}
	return ns, nil
}

// validateServiceUpdate is the partial check of an update body: only the
// keys sent are checked. An id must equal the path's (spec §7.5).
func validateServiceUpdate(b body, pathID string) (store.ServiceUpdate, *fault) {
	var u store.ServiceUpdate
	if b.null {
		return u, badRequest("Empty Request Body")
	}
	var msg string
	if raw, ok := b.fields["id"]; ok {
		var id string
		if id, msg = checkServiceIDField(raw); msg != "" {
			return u, invalidField("id", msg)
		}
		if id != pathID {
			return u, invalidField("id", "Attempted to mutate immutable field")
		}
	}
	if raw, ok := b.fields["tags"]; ok {
		tags, msg := checkTags(raw)
		if msg != "" {
			return u, invalidField("tags", msg)
		}
		u.Tags = &tags
	}
	if raw, ok := b.fields["metadata"]; ok {
		md, msg := checkMetadata(raw)
		if msg != "" {
			return u, invalidField("metadata", msg)
		}
		u.Metadata = &md
	}
	if raw, ok := b.fields["heartbeat_timeout"]; ok {
		t, msg := checkTimeout(raw)
		if msg != "" {
			return u, invalidField("heartbeat_timeout", msg)
		}
		u.HeartbeatTimeout = &t
	}
	return u, nil
}

// validateHeartbeat checks a heartbeat body: token, a string, a v1 UUID.
func validateHeartbeat(b body) (string, *fault) {
	if b.null {
		return "", badRequest("Empty Request Body")
	}
	raw, ok := b.fields["token"]
	if !ok {
		return "", invalidField("token", "Missing required key (token)")
	}
	tok, msg := jsonString(raw)
	if msg != "" {
		return "", invalidField("token", msg)
	}
	if err := timeuuid.Check(tok); err != nil {
		return "", invalidField("token", err.Error())
	}
	return tok, nil
}

// validateConfigBody checks a set-value body: an optional id (checked, then
// ignored) and a value of 1..1024 characters.
func validateConfigBody(b body) (string, *fault) {
	if b.null {
		return "", badRequest("Empty Request Body")
	}
	if raw, ok := b.fields["id"]; ok {
		id, msg := jsonString(raw)
		if msg == "" {
			msg = checkConfigID(id)
		}
		if msg != "" {
			return "", invalidField("id", msg)
		}
	}
	raw, ok := b.fields["value"]
	if !ok {
		return "", invalidField("value", "Missing required key (value)")
	}
	v, msg := jsonString(raw)
	if msg == "" {
		msg = lengthMessage(v, 1, 1024)
	}
	if msg != "" {
		return "", invalidField("value", msg)
	}
	return v, nil
}
