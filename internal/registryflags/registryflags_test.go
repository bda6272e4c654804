package registryflags

import (
	"flag"
	"strings"
	"testing"

	"github.com/svcreg/svcreg/registry"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    registry.Config
		err  string
	}{
		{"credentials: the registry's own identity endpoint", registry.Config{URL: "http://h:8420", Username: "u", APIKey: "k"}, ""},
		{"explicit auth URL", registry.Config{URL: "http://h/v1.0", AuthURL: "http://id/v2.0", Username: "u", Password: "p"}, ""},
		{"region picks Rackspace identity", registry.Config{URL: "http://h/v1.0", Region: "uk", Username: "u", APIKey: "k"}, ""},
		{"static token", registry.Config{URL: "http://h/v1.0", Token: "t", Tenant: "7777"}, ""},
		{"no URL", registry.Config{Username: "u", APIKey: "k"}, "no registry URL"},
		{"token without tenant", registry.Config{URL: "http://h/v1.0", Token: "t"}, "--token needs --tenant"},
		{"nothing", registry.Config{URL: "http://h/v1.0"}, "no credentials"},
		{"user without secret", registry.Config{URL: "http://h/v1.0", Username: "u"}, "needs --api-key or --password"},
		{"API key and password", registry.Config{URL: "http://h/v1.0", Username: "u", APIKey: "k", Password: "p"}, "conflicting credentials: an API key"},
		{"token and API key", registry.Config{URL: "http://h/v1.0", Token: "t", Tenant: "1", Username: "u", APIKey: "k"}, "conflicting credentials: a static token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.c)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// Without --auth-url the client derives the registry's own
			// identity endpoint; the flags never make one up.
			c, err := NewClient(tc.c)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
		})
	}
}

func TestFlagsDefaultToEnvironment(t *testing.T) {
	t.Setenv("SVCREG_URL", "http://env/v1.0")
	t.Setenv("SVCREG_USERNAME", "env-user")
	var c registry.Config
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	Register(fs, &c)
	if err := fs.Parse([]string{"--username", "flag-user"}); err != nil {
		t.Fatal(err)
	}
	if c.URL != "http://env/v1.0" || c.Username != "flag-user" {
		t.Fatalf("config %+v: want the URL from the environment and the user from the flag", c)
	}
	t.Setenv("SVCREG_API_KEY", "k")
	if got := FromEnv(registry.Config{}); got.APIKey != "k" || got.URL != "http://env/v1.0" {
		t.Fatalf("FromEnv = %+v", got)
	}
}

// A flag given on the command line wins over the config file, and the
// file over the environment.
func TestOverPrecedence(t *testing.T) {
	for _, f := range flags {
		t.Setenv(f.env, "")
	}
	t.Setenv("SVCREG_URL", "http://env/v1.0")
	t.Setenv("SVCREG_TENANT", "env-tenant")
	t.Setenv("SVCREG_USERNAME", "env-user")
	var given registry.Config
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	Register(fs, &given)
	if err := fs.Parse([]string{"--username", "flag-user", "--region", "uk"}); err != nil {
		t.Fatal(err)
	}
	file := registry.Config{URL: "http://file/v1.0", Username: "file-user", APIKey: "file-key"}
	got := Over(file, fs, given)
	want := registry.Config{URL: "http://file/v1.0", Username: "flag-user", APIKey: "file-key", Region: "uk", Tenant: "env-tenant"}
	if got != want {
		t.Fatalf("Over = %+v, want %+v", got, want)
	}
}
