package server

import "testing"

// plainID, the fast path of the service id rule, never takes an id the
// rule's pattern refuses, whatever byte is in it.
func TestPlainIDAgreesWithPattern(t *testing.T) {
	for c := range 256 {
		s := "ab" + string([]byte{byte(c)})
		if plainID(s) && !serviceIDPattern.MatchString(s) {
			t.Errorf("byte %#x: plainID takes %q, which the pattern refuses", c, s)
		}
	}
}
