package registry_test

import (
	"testing"

	"github.com/svcreg/svcreg/registry"
)

// PublicURL leaves out what can hold credentials, URL by URL.
func TestPublicURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"http://u:p@h:1/v1.0?x-auth-token=t#f": "http://h:1/v1.0",
		"http://h/v1.0":                        "http://h/v1.0",
		"http://h/v1.0?":                       "http://h/v1.0",
		"://bad":                               "",
		// Each URL of a list, a password with a comma included.
		"http://a:1,http://u:p@b:2/v1.0?t=x": "http://a:1,http://b:2/v1.0",
		"http://a, http://u:p,q@b":           "http://a,http://b",
	} {
		if got := registry.PublicURL(in); got != want {
			t.Errorf("PublicURL(%q) = %q, want %q", in, got, want)
		}
	}
}
