package conn

import (
	"flag"
	"strings"
	"testing"
)

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		s       Settings
		authURL string
		err     string
	}{
		{"credentials: the registry's own identity endpoint", Settings{URL: "http://h:8420", Username: "u", APIKey: "k"}, "", ""},
		{"explicit auth URL", Settings{URL: "http://h/v1.0", AuthURL: "http://id/v2.0", Username: "u", Password: "p"}, "http://id/v2.0", ""},
		{"region picks Rackspace identity", Settings{URL: "http://h/v1.0", Region: "uk", Username: "u", APIKey: "k"}, "", ""},
		{"static token", Settings{URL: "http://h/v1.0", Token: "t", Tenant: "7777"}, "", ""},
		{"no URL", Settings{Username: "u", APIKey: "k"}, "", "no registry URL"},
		{"token without tenant", Settings{URL: "http://h/v1.0", Token: "t"}, "", "--token needs --tenant"},
		{"nothing", Settings{URL: "http://h/v1.0"}, "", "no credentials"},
		{"user without secret", Settings{URL: "http://h/v1.0", Username: "u"}, "", "needs --api-key or --password"},
		{"API key and password", Settings{URL: "http://h/v1.0", Username: "u", APIKey: "k", Password: "p"}, "", "conflicting credentials: an API key"},
		{"token and API key", Settings{URL: "http://h/v1.0", Token: "t", Tenant: "1", Username: "u", APIKey: "k"}, "", "conflicting credentials: a static token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.s.Config()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || c.AuthURL != tc.authURL {
				t.Fatalf("AuthURL %q, err %v; want %q", c.AuthURL, err, tc.authURL)
			}
		})
	}
}

func TestFlagsDefaultToEnvironment(t *testing.T) {
	t.Setenv("SVCREG_URL", "http://env/v1.0")
	t.Setenv("SVCREG_USERNAME", "env-user")
	var s Settings
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	s.Register(fs)
	if err := fs.Parse([]string{"--username", "flag-user"}); err != nil {
		t.Fatal(err)
	}
	if s.URL != "http://env/v1.0" || s.Username != "flag-user" {
		t.Fatalf("settings %+v: want the URL from the environment and the user from the flag", s)
	}
	t.Setenv("SVCREG_API_KEY", "k")
	if got := (Settings{}).FromEnv(); got.APIKey != "k" || got.URL != "http://env/v1.0" {
		t.Fatalf("FromEnv = %+v", got)
	}
}
