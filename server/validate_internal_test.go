package server

import (
	"regexp"
	"slices"
	"testing"

	"github.com/svcreg/svcreg/registry"
)

// plainID takes exactly what the spec's service id pattern takes (at its
// length), whatever byte is in the id.
func TestPlainIDAgreesWithPattern(t *testing.T) {
	pattern := regexp.MustCompile(`^[a-zA-Z0-9_\-\.]{3,65}$`)
	for c := range 256 {
		s := "ab" + string([]byte{byte(c)})
		if plainID(s) != pattern.MatchString(s) {
			t.Errorf("byte %#x: plainID(%q) = %v, the pattern %v", c, s, plainID(s), pattern.MatchString(s))
		}
	}
	for _, s := range []string{"\u212Aab", "\u017Fab", "éab", "a/b"} {
		if plainID(s) || pattern.MatchString(s) {
			t.Errorf("%q taken", s)
		}
	}
}

// What ?type= accepts does not follow writes to registry.EventTypes, an
// exported slice a program that embeds the server could change. Not
// parallel: it writes to the slice while no other test runs.
func TestEventTypesFixedAtStart(t *testing.T) {
	saved := slices.Clone(registry.EventTypes)
	defer copy(registry.EventTypes, saved)
	registry.EventTypes[0] = "bogus.type"
	if _, ok := eventType("bogus.type"); ok {
		t.Error("eventType accepts a type written into registry.EventTypes")
	}
	if got, ok := eventType(string(registry.ServiceJoin)); !ok || got != registry.ServiceJoin {
		t.Errorf("eventType(service.join) = %q, %v", got, ok)
	}
}
