// Package registryflags holds the command-line flags that say how to reach
// the registry (--url, --username, …), their SVCREG_* environment
// fallbacks, and the checks that make a registry.Config of them.
package registryflags

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/svcreg/svcreg/registry"
)

// flags lists each connection flag once: its name, its environment
// variable, its usage, the registry.Config field it sets, and whether it is
// a secret (the proof of identity: a token, an API key or a password).
var flags = []struct {
	name, env, usage string
	field            func(*registry.Config) *string
	secret           bool
}{
	{"url", "SVCREG_URL", "registry API `URL`, e.g. http://127.0.0.1:8420/v1.0, or the URLs of several nodes separated by commas\n(requests go to the first, and move to the next when one fails)", func(c *registry.Config) *string { return &c.URL }, false},
	{"auth-url", "SVCREG_AUTH_URL", "identity `URL` (Keystone v2); default: the registry's own, the scheme and host of --url (of the URL in use, with several) with /v2.0;\nset, it is one URL, and logins do not fail over", func(c *registry.Config) *string { return &c.AuthURL }, false},
	{"token", "SVCREG_TOKEN", "static API `token` (with --tenant) instead of credentials", func(c *registry.Config) *string { return &c.Token }, true},
	{"tenant", "SVCREG_TENANT", "tenant `id`", func(c *registry.Config) *string { return &c.Tenant }, false},
	{"username", "SVCREG_USERNAME", "`user` name for the identity endpoint", func(c *registry.Config) *string { return &c.Username }, false},
	{"api-key", "SVCREG_API_KEY", "API `key` of --username", func(c *registry.Config) *string { return &c.APIKey }, true},
	{"password", "SVCREG_PASSWORD", "`password` of --username (instead of --api-key)", func(c *registry.Config) *string { return &c.Password }, true},
	{"region", "SVCREG_REGION", "us or uk: use the Rackspace identity endpoint of that region", func(c *registry.Config) *string { return &c.Region }, false},
	{"ca-cert", "SVCREG_CA_CERT", "PEM `file` of the CA certificates to trust for HTTPS to the registry and identity URLs,\ninstead of the system's (for a private or self-signed CA)", func(c *registry.Config) *string { return &c.CACert }, false},
}

// Register adds the connection flags to fs: --url, --auth-url, --token,
// --tenant, --username, --api-key, --password, --region, --ca-cert. Parsing sets the
// fields of c that are given on the command line; Resolve then puts them
// over a config file's settings and the SVCREG_* environment.
func Register(fs *flag.FlagSet, c *registry.Config) {
	for _, f := range flags {
		usage := f.usage + " ($" + f.env + ")"
		if f.secret {
			// /proc/PID/cmdline is readable by every local user.
			usage += ";\non the command line every local user sees it (ps): prefer $" + f.env
		}
		fs.StringVar(f.field(c), f.name, "", usage)
	}
}

// Resolve returns base (a config file's settings, or the zero Config) with
// the connection flags given on fs's command line, as parsed into given,
// put over it, and its empty fields then filled from the environment: a
// flag wins over the file, and the file over the environment.
//
// The secrets (token, API key, password) go together: a source that gives
// one of them replaces the secrets of the weaker sources, so that
// --password on the command line wins over an api_key in the file or
// SVCREG_API_KEY instead of conflicting with it. Two secrets from one
// source still conflict (Check says so).
func Resolve(base registry.Config, fs *flag.FlagSet, given registry.Config) registry.Config {
	visited := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { visited[fl.Name] = true })
	secretGiven := false
	for _, f := range flags {
		secretGiven = secretGiven || (f.secret && visited[f.name])
	}
	for _, f := range flags {
		switch {
		case visited[f.name]:
			*f.field(&base) = *f.field(&given)
		case f.secret && secretGiven:
			*f.field(&base) = ""
		}
	}
	return FromEnv(base)
}

// FromEnv fills c's empty connection fields from the SVCREG_* environment.
// The secrets are taken from the environment only when c has none.
func FromEnv(c registry.Config) registry.Config {
	hasSecret := false
	for _, f := range flags {
		hasSecret = hasSecret || (f.secret && *f.field(&c) != "")
	}
	for _, f := range flags {
		if p := f.field(&c); *p == "" && !(f.secret && hasSecret) {
			*p = os.Getenv(f.env)
		}
	}
	return c
}

// Check says what is missing or conflicting in c, in the flags' and the
// variables' names. It leaves AuthURL alone: without --auth-url or
// --region, credentials go to the identity endpoint of the registry
// itself (see registry.Config.AuthURL), never to another host.
func Check(c registry.Config) error {
	switch {
	case c.URL == "":
		return errors.New("no registry URL: give --url or set SVCREG_URL (e.g. http://127.0.0.1:8420/v1.0)")
	case c.Token != "" && c.Tenant == "":
		return errors.New("--token needs --tenant (or SVCREG_TENANT)")
	case c.Token == "" && c.Username == "":
		return errors.New("no credentials: give --username with --api-key or --password, or --token with --tenant (or the SVCREG_* variables)")
	case c.Token == "" && c.APIKey == "" && c.Password == "":
		return errors.New("--username needs --api-key or --password")
	case c.APIKey != "" && c.Password != "":
		// Either would be ignored without a word: refuse instead.
		return errors.New("conflicting credentials: an API key (--api-key or SVCREG_API_KEY) and a password (--password or SVCREG_PASSWORD) are both set; give one")
	case c.Token != "" && (c.APIKey != "" || c.Password != ""):
		return errors.New("conflicting credentials: a static token (--token or SVCREG_TOKEN) and an API key or password are both set; give one")
	}
	return nil
}

// LogFailover returns a registry.Config.OnFailover that logs each move of
// the client from one registry URL to the next as a warning on log; a
// URL's failures within a minute of its last warning at debug level, as
// while every node is down each retry moves the client round them all.
func LogFailover(log *slog.Logger) func(from, to string, err error) {
	var mu sync.Mutex
	warned := map[string]time.Time{} // by URL: one per node
	return func(from, to string, err error) {
		mu.Lock()
		level := slog.LevelDebug
		if time.Since(warned[from]) >= time.Minute {
			level, warned[from] = slog.LevelWarn, time.Now()
		}
		mu.Unlock()
		log.Log(context.Background(), level, "registry "+from+" failed; using "+to, "err", err)
	}
}

// NewClient checks c and returns a client for it.
func NewClient(c registry.Config) (*registry.Client, error) {
	if err := Check(c); err != nil {
		return nil, err
	}
	return registry.New(c)
}
