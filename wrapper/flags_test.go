package wrapper_test

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/svcreg/svcreg/wrapper"
)

func TestHeartbeatTimeout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		interval time.Duration
		want     int
	}{
		{1 * time.Second, 3},
		{1500 * time.Millisecond, 5}, // ceil(4.5)
		{2500 * time.Millisecond, 8}, // ceil(7.5)
		{10 * time.Second, 30},
		{40 * time.Second, 120},
		{500 * time.Millisecond, 3}, // held to the registry's minimum
		{time.Minute, 120},          // and maximum
	} {
		if got := wrapper.HeartbeatTimeout(tc.interval); got != tc.want {
			t.Errorf("HeartbeatTimeout(%v) = %d, want %d", tc.interval, got, tc.want)
		}
	}
}

func TestParseArgs(t *testing.T) {
	t.Setenv("SVCREG_URL", "http://registry.example/v1.0")
	for _, tc := range []struct {
		name string
		args []string
		want wrapper.Config // Service, Interval, flags and Command are compared
	}{
		{
			name: "the original usage",
			args: []string{"--id=web1", "--tags=www,api", "--metadata=ip=10.0.0.1,port=80", "--interval=5", "--abort-on-failure", "/usr/bin/app", "--port", "80"},
			want: wrapper.Config{Interval: 5 * time.Second, AbortOnFailure: true, Command: []string{"/usr/bin/app", "--port", "80"}},
		},
		{
			name: "flags with a space, --, a duration",
			args: []string{"--id", "web1", "--tags", "www", "--interval", "2.5s", "--no-deregister", "--grace-period", "3s", "--", "app", "-v"},
			want: wrapper.Config{Interval: 2500 * time.Millisecond, NoDeregister: true, GracePeriod: 3 * time.Second, Command: []string{"app", "-v"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := wrapper.ParseArgs("service-registry-wrapper", tc.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Service.ID != "web1" {
				t.Errorf("id = %q", cfg.Service.ID)
			}
			if cfg.Interval != tc.want.Interval || cfg.Service.HeartbeatTimeout != wrapper.HeartbeatTimeout(tc.want.Interval) {
				t.Errorf("interval %v, timeout %d; want %v, %d", cfg.Interval, cfg.Service.HeartbeatTimeout, tc.want.Interval, wrapper.HeartbeatTimeout(tc.want.Interval))
			}
			if cfg.AbortOnFailure != tc.want.AbortOnFailure || cfg.NoDeregister != tc.want.NoDeregister {
				t.Errorf("abort %v, no-deregister %v; want %v, %v", cfg.AbortOnFailure, cfg.NoDeregister, tc.want.AbortOnFailure, tc.want.NoDeregister)
			}
			if tc.want.GracePeriod != 0 && cfg.GracePeriod != tc.want.GracePeriod {
				t.Errorf("grace period %v, want %v", cfg.GracePeriod, tc.want.GracePeriod)
			}
			if !reflect.DeepEqual(cfg.Command, tc.want.Command) {
				t.Errorf("command %q, want %q", cfg.Command, tc.want.Command)
			}
			if cfg.Registry.URL != "http://registry.example/v1.0" {
				t.Errorf("--url from $SVCREG_URL = %q", cfg.Registry.URL)
			}
		})
	}

	// Repeated --tags and --metadata, blanks, "=" in a value.
	cfg, err := wrapper.ParseArgs("w", []string{"--id=web1", "--tags= www , ,api", "--tags=db", "--metadata=url=http://h/?a=b", "--metadata", " port=80,", "app"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"www", "api", "db"}; !reflect.DeepEqual(cfg.Service.Tags, want) {
		t.Errorf("tags %q, want %q", cfg.Service.Tags, want)
	}
	if want := map[string]string{"url": "http://h/?a=b", "port": "80"}; !reflect.DeepEqual(cfg.Service.Metadata, want) {
		t.Errorf("metadata %q, want %q", cfg.Service.Metadata, want)
	}
}

// --ca-cert names the CA file, over $SVCREG_CA_CERT.
func TestParseArgsCACert(t *testing.T) {
	t.Setenv("SVCREG_URL", "https://registry.example/v1.0")
	t.Setenv("SVCREG_CA_CERT", "/etc/ssl/env-ca.pem")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--id=web1", "app"}, "/etc/ssl/env-ca.pem"},
		{[]string{"--id=web1", "--ca-cert", "/etc/ssl/flag-ca.pem", "app"}, "/etc/ssl/flag-ca.pem"},
		{[]string{"--id=web1", "--ca-cert=ca.pem", "app"}, "ca.pem"},
	} {
		cfg, err := wrapper.ParseArgs("w", tc.args, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Registry.CACert != tc.want {
			t.Errorf("ParseArgs(%q): CA file %q, want %q", tc.args, cfg.Registry.CACert, tc.want)
		}
	}
}

func TestParseArgsHelp(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	_, err := wrapper.ParseArgs("service-registry-wrapper", []string{"--help"}, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{
		"service-registry-wrapper --id=ID", "ceil(3 x --interval)",
		"--abort-on-failure", "--interval interval", "--metadata list", "--no-deregister", "--url URL", "--ca-cert file", "$SVCREG_CA_CERT",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, out.String())
		}
	}
	if n := strings.Count(out.String(), "Usage:"); n != 1 {
		t.Errorf("the usage is printed %d times:\n%s", n, out.String())
	}
}

func TestParseArgsKeepsSecretsOutOfTheUsage(t *testing.T) {
	t.Setenv("SVCREG_API_KEY", "s3cret-key")
	t.Setenv("SVCREG_PASSWORD", "s3cret-password")
	t.Setenv("SVCREG_TOKEN", "s3cret-token")
	var out strings.Builder
	wrapper.ParseArgs("w", []string{"--help"}, &out)
	if strings.Contains(out.String(), "s3cret") {
		t.Errorf("the usage shows a secret from the environment:\n%s", out.String())
	}
}

func TestParseArgsUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"app"}, "--id is required"},
		{[]string{"--id=ab", "app"}, "--id"},
		{[]string{"--id=web/1", "app"}, "--id"},
		{[]string{"--id=web1", "--metadata=novalue", "app"}, "--metadata"},
		{[]string{"--id=web1", "--metadata==v", "app"}, "--metadata"},
		{[]string{"--id=web1", "--metadata=k=", "app"}, "--metadata"},
		{[]string{"--id=web1", "--tags=" + strings.Repeat("x", 56), "app"}, "--tags"},
		{[]string{"--id=web1", "--interval=0", "app"}, "--interval"},
		{[]string{"--id=web1", "--interval=40.5", "app"}, "--interval"},
		{[]string{"--id=web1", "--interval=NaN", "app"}, "--interval"},
		{[]string{"--id=web1", "--grace-period=0s", "app"}, "--grace-period"},
		{[]string{"--id=web1", "--log-level=loud", "app"}, "--log-level"},
		{[]string{"--id=web1", "--id"}, "--id"},
		{[]string{"--id=web1"}, "no command"},
	} {
		_, err := wrapper.ParseArgs("w", tc.args, io.Discard)
		var ue *wrapper.UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseArgs(%q) = %v, want a usage error naming %s", tc.args, err, tc.want)
		}
	}
}

// The README's wrapper example parses: it cannot drift from the flags.
func TestREADMEExample(t *testing.T) {
	t.Setenv("SVCREG_URL", "http://127.0.0.1:8420/v1.0")
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Wrapping a process: service-registry-wrapper and svcreg wrap\n")
	if !ok {
		t.Fatal("README.md has no wrapper section")
	}
	_, block, ok := strings.Cut(section, "\n```sh\n")
	if !ok {
		t.Fatal("the README's wrapper section has no ```sh block")
	}
	block, _, _ = strings.Cut(block, "\n```\n")
	block = strings.ReplaceAll(block, "\\\n", " ")
	n := 0
	for _, line := range strings.Split(block, "\n") {
		args := strings.Fields(strings.TrimSuffix(strings.TrimSpace(line), "&"))
		if len(args) == 0 || args[0] != "service-registry-wrapper" {
			continue
		}
		n++
		cfg, err := wrapper.ParseArgs(args[0], args[1:], io.Discard)
		if err != nil {
			t.Errorf("README: %q: %v", line, err)
		} else if cfg.Command[0] != "python3" {
			t.Errorf("README: %q: command %q", line, cfg.Command)
		}
	}
	if n == 0 {
		t.Error("the README's wrapper example runs no service-registry-wrapper")
	}
}

// A Config built without ParseArgs and without a command is a usage
// mistake, not a panic; a nil Logger logs nothing. Nothing is run, so
// this test process takes no signals and adopts no children.
func TestRunWithoutCommand(t *testing.T) {
	t.Parallel()
	if got := wrapper.Run(t.Context(), wrapper.Config{Interval: 10 * time.Second}, wrapper.Deps{}); got != wrapper.ExitUsage {
		t.Errorf("Run without a command = %d, want ExitUsage (%d)", got, wrapper.ExitUsage)
	}
}

// Tags and metadata that are each within their limits but together make a
// create body the registry refuses (413) are a usage error, not a
// registration that fails for as long as the command runs.
func TestParseArgsServiceTooLarge(t *testing.T) {
	t.Setenv("SVCREG_URL", "http://registry.example/v1.0")
	pairs := func(n int) string {
		var p []string
		for i := range n {
			p = append(p, fmt.Sprintf("key%02d=%s", i, strings.Repeat("v", 250)))
		}
		return "--metadata=" + strings.Join(p, ",")
	}
	if _, err := wrapper.ParseArgs("w", []string{"--id=web1", pairs(18), "app"}, io.Discard); err != nil {
		t.Errorf("18 metadata values of 250 bytes: %v", err)
	}
	_, err := wrapper.ParseArgs("w", []string{"--id=web1", pairs(20), "app"}, io.Discard)
	var ue *wrapper.UsageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--metadata") || !strings.Contains(err.Error(), "5000") {
		t.Errorf("20 metadata values of 250 bytes: %v, want a usage error naming --metadata and the registry's 5000 bytes", err)
	}
}
