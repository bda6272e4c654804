package registryflags

import (
	"bytes"
	"errors"
	"flag"
	"log/slog"
	"reflect"
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
		{"several registry URLs", registry.Config{URL: "http://h1:8420,http://h2:8420/v1.0", Username: "u", APIKey: "k"}, ""},
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

func TestFlagsFallBackToEnvironment(t *testing.T) {
	clearEnv(t)
	t.Setenv("SVCREG_URL", "http://env/v1.0")
	t.Setenv("SVCREG_USERNAME", "env-user")
	var c registry.Config
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	Register(fs, &c)
	if err := fs.Parse([]string{"--username", "flag-user"}); err != nil {
		t.Fatal(err)
	}
	if got := Resolve(registry.Config{}, fs, c); got.URL != "http://env/v1.0" || got.Username != "flag-user" {
		t.Fatalf("config %+v: want the URL from the environment and the user from the flag", got)
	}
	t.Setenv("SVCREG_API_KEY", "k")
	if got := FromEnv(registry.Config{}); got.APIKey != "k" || got.URL != "http://env/v1.0" {
		t.Fatalf("FromEnv = %+v", got)
	}
}

func clearEnv(t *testing.T) {
	for _, f := range flags {
		t.Setenv(f.env, "")
	}
}

// A flag given on the command line wins over the config file, and the
// file over the environment; secrets (token, API key, password) go
// together, so a stronger source's secret replaces a weaker one's instead
// of conflicting with it.
func TestResolvePrecedence(t *testing.T) {
	for _, tc := range []struct {
		name  string
		file  registry.Config
		env   map[string]string
		args  []string
		want  registry.Config
		check string // what Check says, if anything
	}{
		{
			name: "flag over file over environment",
			file: registry.Config{URL: "http://file/v1.0", Username: "file-user", APIKey: "file-key"},
			env:  map[string]string{"SVCREG_URL": "http://env/v1.0", "SVCREG_TENANT": "env-tenant", "SVCREG_USERNAME": "env-user"},
			args: []string{"--username", "flag-user", "--region", "uk"},
			want: registry.Config{URL: "http://file/v1.0", Username: "flag-user", APIKey: "file-key", Region: "uk", Tenant: "env-tenant"},
		},
		{
			name: "the CA file: the file's over SVCREG_CA_CERT",
			file: registry.Config{URL: "https://file/v1.0", Token: "t", Tenant: "1", CACert: "file-ca.pem"},
			env:  map[string]string{"SVCREG_CA_CERT": "env-ca.pem"},
			want: registry.Config{URL: "https://file/v1.0", Token: "t", Tenant: "1", CACert: "file-ca.pem"},
		},
		{
			name: "the CA file: --ca-cert over the file's",
			file: registry.Config{URL: "https://file/v1.0", Token: "t", Tenant: "1", CACert: "file-ca.pem"},
			env:  map[string]string{"SVCREG_CA_CERT": "env-ca.pem", "SVCREG_URL": "https://env/v1.0"},
			args: []string{"--ca-cert", "flag-ca.pem"},
			want: registry.Config{URL: "https://file/v1.0", Token: "t", Tenant: "1", CACert: "flag-ca.pem"},
		},
		{
			name: "the CA file: SVCREG_CA_CERT when neither flag nor file gives one",
			file: registry.Config{URL: "https://file/v1.0", Token: "t", Tenant: "1"},
			env:  map[string]string{"SVCREG_CA_CERT": "env-ca.pem"},
			want: registry.Config{URL: "https://file/v1.0", Token: "t", Tenant: "1", CACert: "env-ca.pem"},
		},
		{
			name: "--password replaces the file's api_key",
			file: registry.Config{URL: "http://file/v1.0", Username: "u", APIKey: "file-key"},
			args: []string{"--password", "pw"},
			want: registry.Config{URL: "http://file/v1.0", Username: "u", Password: "pw"},
		},
		{
			name: "--password replaces SVCREG_API_KEY",
			env:  map[string]string{"SVCREG_URL": "http://env/v1.0", "SVCREG_USERNAME": "u", "SVCREG_API_KEY": "env-key"},
			args: []string{"--password", "pw"},
			want: registry.Config{URL: "http://env/v1.0", Username: "u", Password: "pw"},
		},
		{
			name: "--token replaces the file's password",
			file: registry.Config{URL: "http://file/v1.0", Username: "u", Password: "file-pw", Tenant: "7"},
			args: []string{"--token", "tok"},
			want: registry.Config{URL: "http://file/v1.0", Username: "u", Token: "tok", Tenant: "7"},
		},
		{
			name: "the file's password wins over SVCREG_API_KEY",
			file: registry.Config{URL: "http://file/v1.0", Username: "u", Password: "file-pw"},
			env:  map[string]string{"SVCREG_API_KEY": "env-key", "SVCREG_TOKEN": "env-token"},
			want: registry.Config{URL: "http://file/v1.0", Username: "u", Password: "file-pw"},
		},
		{
			name: "environment secrets when neither flags nor file give one",
			file: registry.Config{URL: "http://file/v1.0", Username: "u"},
			env:  map[string]string{"SVCREG_API_KEY": "env-key"},
			want: registry.Config{URL: "http://file/v1.0", Username: "u", APIKey: "env-key"},
		},
		{
			name:  "two secrets on the command line still conflict",
			file:  registry.Config{URL: "http://file/v1.0", Username: "u"},
			args:  []string{"--api-key", "k", "--password", "pw"},
			want:  registry.Config{URL: "http://file/v1.0", Username: "u", APIKey: "k", Password: "pw"},
			check: "conflicting credentials: an API key",
		},
		{
			name:  "two secrets in the environment still conflict",
			env:   map[string]string{"SVCREG_URL": "http://env/v1.0", "SVCREG_USERNAME": "u", "SVCREG_API_KEY": "k", "SVCREG_PASSWORD": "pw"},
			want:  registry.Config{URL: "http://env/v1.0", Username: "u", APIKey: "k", Password: "pw"},
			check: "conflicting credentials: an API key",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var given registry.Config
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			Register(fs, &given)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			got := Resolve(tc.file, fs, given)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Resolve = %+v, want %+v", got, tc.want)
			}
			err := Check(got)
			switch {
			case tc.check == "" && err != nil:
				t.Fatalf("Check: %v", err)
			case tc.check != "" && (err == nil || !strings.Contains(err.Error(), tc.check)):
				t.Fatalf("Check = %v, want %q", err, tc.check)
			}
		})
	}
}

// A move to the next registry URL is one warning that names both; the
// same URL failing again soon after (every node down, a retry going round
// them all) is logged at debug level.
func TestLogFailover(t *testing.T) {
	var b bytes.Buffer
	logf := LogFailover(slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})))
	logf("http://a:8420", "http://b:8420", errors.New("connection refused"))
	logf("http://b:8420", "http://a:8420", errors.New("connection refused"))
	logf("http://a:8420", "http://b:8420", errors.New("connection refused"))
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	want := []string{
		`level=WARN msg="registry http://a:8420 failed; using http://b:8420" err="connection refused"`,
		`level=WARN msg="registry http://b:8420 failed; using http://a:8420"`,
		`level=DEBUG msg="registry http://a:8420 failed; using http://b:8420"`,
	}
	if len(lines) != len(want) {
		t.Fatalf("logged %q, want %d lines", lines, len(want))
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d: %q, want it to hold %q", i+1, lines[i], w)
		}
	}
}

// The secret flags' help says that a secret on the command line is every
// local user's to read, and names the variable to use instead; the
// others' does not.
func TestSecretFlagsPointToTheEnvironment(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	Register(fs, &registry.Config{})
	for _, f := range flags {
		warned := strings.Contains(fs.Lookup(f.name).Usage, "every local user sees it (ps): prefer $"+f.env)
		if warned != f.secret {
			t.Errorf("--%s: usage %q; secret %v", f.name, fs.Lookup(f.name).Usage, f.secret)
		}
	}
}
