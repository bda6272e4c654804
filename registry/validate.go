package registry

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf16"
)

// The rules the registry checks ids and fields against (spec §5), so that a
// program can check before it sends and say which rule a value breaks.
const (
	// ConfigIDRules describes a configuration id, for help texts.
	ConfigIDRules = `A key is 3..500 characters: up to ten namespace segments, each "/"
and 3..50 of a-z, 0-9, _ and -, then (optionally) a name of 3..170 of
a-z, 0-9, _, - and . (letters in any case). Examples: cassandra.port,
/production/cassandra/listen_ip.`

	MinHeartbeatTimeout = 3   // seconds
	MaxHeartbeatTimeout = 120 // seconds
)

// configIDPattern is the spec's JavaScript pattern with /i: ASCII letters
// in either case (Go's (?i) would also take the Kelvin sign and the long s).
var configIDPattern = regexp.MustCompile(`^(\/[a-zA-Z0-9_\-]{3,50}\/?){0,10}([a-zA-Z0-9_\-\.]{3,170})?$`)

// CheckConfigID returns nil if id is a valid configuration id, else an
// error that says which rule it breaks.
func CheckConfigID(id string) error {
	if n := len(utf16.Encode([]rune(id))); n < 3 || n > 500 {
		return fmt.Errorf("String is not in range (3..500): the key %q has %d characters", id, n)
	}
	if msg := ConfigIDProblem(id); msg != "" {
		return fmt.Errorf("%s", msg)
	}
	return nil
}

// ConfigIDProblem says which rule of a configuration id's pattern id
// breaks, or "" if it matches. It does not check the overall length.
func ConfigIDProblem(id string) string {
	if configIDPattern.MatchString(id) {
		return ""
	}
	if !strings.HasPrefix(id, "/") {
		if strings.Contains(id, "/") {
			return fmt.Sprintf("Invalid key %q: a namespaced key begins with / (as in /production/cassandra)", id)
		}
		return keyProblem(id)
	}
	parts := strings.Split(id[1:], "/")
	namespaces, key := parts[:len(parts)-1], parts[len(parts)-1]
	if len(namespaces) > 10 {
		return fmt.Sprintf("Invalid key: %d namespace segments, at most 10", len(namespaces))
	}
	for _, ns := range namespaces {
		if !allOf(ns, false) {
			return fmt.Sprintf("Invalid characters in the namespace segment %q: a-z, 0-9, _ and - only", ns)
		}
		if len(ns) < 3 || len(ns) > 50 {
			return fmt.Sprintf("The namespace segment %q is not in range (3..50)", ns)
		}
	}
	if p := keyProblem(key); key != "" && p != "" {
		return p
	}
	return "Invalid characters"
}

// keyProblem checks the name after the namespaces.
func keyProblem(key string) string {
	if !allOf(key, true) {
		return fmt.Sprintf("Invalid characters in the key name %q: a-z, 0-9, _, - and . only", key)
	}
	if len(key) < 3 || len(key) > 170 {
		return fmt.Sprintf("The key name %q is not in range (3..170)", key)
	}
	return ""
}

// allOf reports whether s holds only a-z (any case), 0-9, _ and -, and
// dots if dot.
func allOf(s string, dot bool) bool {
	for _, c := range s {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		case c == '.' && dot:
		default:
			return false
		}
	}
	return true
}
