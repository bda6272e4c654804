package registryflags

import (
	"slices"
	"testing"
)

func TestShownEnv(t *testing.T) {
	for _, name := range []string{"SVCREG_API_KEY", "SVCREG_PASSWORD", "SVCREG_TOKEN"} {
		if got, ok := ShownEnv(name, "s3cret"); ok {
			t.Errorf("%s shown as %q", name, got)
		}
	}
	if got, ok := ShownEnv("SVCREG_USERNAME", "dev"); !ok || got != "dev" {
		t.Errorf("SVCREG_USERNAME shown as %q (%v)", got, ok)
	}
	// A comma in a password does not end its URL, for the client: nor
	// here. A URL this cannot read is not shown at all.
	for in, want := range map[string]string{
		"http://dev:8420,s3cret@reg.example/v1.0":                    "http://reg.example/v1.0",
		"http://tok,en@reg.example/v1.0, http://u:p@n2.example/v1.0": "http://reg.example/v1.0,http://n2.example/v1.0",
		"http://dev:p@ss@h.example/v1.0":                             "http://h.example/v1.0",
		"https://reg.example/v1.0?x-auth-token=t#f":                  "https://reg.example/v1.0",
	} {
		if got, ok := ShownEnv("SVCREG_URL", in); !ok || got != want {
			t.Errorf("SVCREG_URL=%s shown as %q (%v), want %q", in, got, ok, want)
		}
	}
	if got, ok := ShownEnv("SVCREG_AUTH_URL", "http://a,b@id.example/v2.0"); !ok || got != "http://id.example/v2.0" {
		t.Errorf("SVCREG_AUTH_URL shown as %q (%v)", got, ok)
	}
	if got, ok := ShownEnv("SVCREG_URL", "http://u:p@[bad/v1.0"); ok {
		t.Errorf("a URL that does not parse shown as %q", got)
	}
}

func TestWithoutCredentials(t *testing.T) {
	// An environment of nothing but credentials leaves an empty one, not
	// nil (which exec takes for the parent's).
	if env := WithoutCredentials([]string{"SVCREG_API_KEY=k", "SVCREG_TOKEN=t"}); env == nil || len(env) != 0 {
		t.Errorf("environment without credentials: %q (nil: %v), want empty", env, env == nil)
	}
	got := WithoutCredentials([]string{"HOME=/root", "SVCREG_PASSWORD=p", "SVCREG_URL=http://u:p@h.example/v1.0", "EMPTY="})
	if want := []string{"HOME=/root", "SVCREG_URL=http://h.example/v1.0", "EMPTY="}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
