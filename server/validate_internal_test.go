package server

import (
	"regexp"
	"testing"
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
