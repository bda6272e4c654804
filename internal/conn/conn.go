// Package conn holds the registry connection settings the svcreg commands
// share: flags, their SVCREG_* environment fallbacks, and the client they
// make.
package conn

import (
	"errors"
	"flag"
	"os"

	"github.com/svcreg/svcreg/registry"
)

// Settings say how to reach and authenticate with the registry.
type Settings struct {
	URL      string // the API base URL, ending in /v1.0
	AuthURL  string // the identity endpoint, ending in /v2.0
	Token    string // a static token (needs Tenant)
	Tenant   string
	Username string
	APIKey   string
	Password string
	Region   string // "us" or "uk": the Rackspace identity endpoints
}

// Environment variables, each the fallback of a flag.
var envNames = map[string]string{
	"url":      "SVCREG_URL",
	"auth-url": "SVCREG_AUTH_URL",
	"token":    "SVCREG_TOKEN",
	"tenant":   "SVCREG_TENANT",
	"username": "SVCREG_USERNAME",
	"api-key":  "SVCREG_API_KEY",
	"password": "SVCREG_PASSWORD",
	"region":   "SVCREG_REGION",
}

// Register adds the connection flags to fs: --url, --auth-url, --token,
// --tenant, --username, --api-key, --password, --region. Each defaults to
// its SVCREG_* environment variable.
func (s *Settings) Register(fs *flag.FlagSet) {
	str := func(dst *string, name, usage string) {
		env := envNames[name]
		fs.StringVar(dst, name, os.Getenv(env), usage+" ($"+env+")")
	}
	str(&s.URL, "url", "registry API `URL`, e.g. http://127.0.0.1:8420/v1.0")
	str(&s.AuthURL, "auth-url", "identity `URL` (Keystone v2); default: the registry's own, the scheme and host of --url with /v2.0")
	str(&s.Token, "token", "static API `token` (with --tenant) instead of credentials")
	str(&s.Tenant, "tenant", "tenant `id`")
	str(&s.Username, "username", "`user` name for the identity endpoint")
	str(&s.APIKey, "api-key", "API `key` of --username")
	str(&s.Password, "password", "`password` of --username (instead of --api-key)")
	str(&s.Region, "region", "us or uk: use the Rackspace identity endpoint of that region")
}

// FromEnv fills the empty settings from the SVCREG_* environment.
func (s Settings) FromEnv() Settings {
	for name, dst := range map[string]*string{
		"url": &s.URL, "auth-url": &s.AuthURL, "token": &s.Token, "tenant": &s.Tenant,
		"username": &s.Username, "api-key": &s.APIKey, "password": &s.Password, "region": &s.Region,
	} {
		if *dst == "" {
			*dst = os.Getenv(envNames[name])
		}
	}
	return s
}

// Config checks the settings and returns the client configuration. Without
// --auth-url or --region, credentials go to the identity endpoint of the
// registry itself (see registry.Config.AuthURL), never to another host.
func (s Settings) Config() (registry.Config, error) {
	c := registry.Config{URL: s.URL, Token: s.Token, Tenant: s.Tenant, Username: s.Username,
		APIKey: s.APIKey, Password: s.Password, Region: s.Region, AuthURL: s.AuthURL}
	switch {
	case s.URL == "":
		return c, errors.New("no registry URL: give --url or set SVCREG_URL (e.g. http://127.0.0.1:8420/v1.0)")
	case s.Token != "" && s.Tenant == "":
		return c, errors.New("--token needs --tenant (or SVCREG_TENANT)")
	case s.Token == "" && s.Username == "":
		return c, errors.New("no credentials: give --username with --api-key or --password, or --token with --tenant (or the SVCREG_* variables)")
	case s.Token == "" && s.APIKey == "" && s.Password == "":
		return c, errors.New("--username needs --api-key or --password")
	case s.APIKey != "" && s.Password != "":
		// Either would be ignored without a word: refuse instead.
		return c, errors.New("conflicting credentials: an API key (--api-key or SVCREG_API_KEY) and a password (--password or SVCREG_PASSWORD) are both set; give one")
	case s.Token != "" && (s.APIKey != "" || s.Password != ""):
		return c, errors.New("conflicting credentials: a static token (--token or SVCREG_TOKEN) and an API key or password are both set; give one")
	}
	return c, nil
}

// Client returns a client for the settings.
func (s Settings) Client() (*registry.Client, error) {
	c, err := s.Config()
	if err != nil {
		return nil, err
	}
	return registry.New(c)
}
