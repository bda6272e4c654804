package registryflags

import (
	"slices"
	"strings"

	"github.com/svcreg/svcreg/registry"
)

// urlEnv are the variables that name the registry's URLs, whose user
// information (http://user:password@host) the client sends as credentials
// and whose query may hold a token.
var urlEnv = []string{"SVCREG_URL", "SVCREG_AUTH_URL"}

// ShownEnv is what a program svcreg starts, or a template, may see of the
// environment variable name=v: nothing of a secret (SVCREG_TOKEN,
// SVCREG_API_KEY, SVCREG_PASSWORD: ok is false), and the registry's URLs as
// the status page shows them, without their user information, query or
// fragment (none at all if one of them does not parse).
func ShownEnv(name, v string) (string, bool) {
	for _, f := range flags {
		if f.secret && f.env == name {
			return "", false
		}
	}
	if slices.Contains(urlEnv, name) && v != "" {
		// registry.PublicURL leaves a URL that does not parse out as an
		// empty one: then none is shown.
		p := registry.PublicURL(v)
		if slices.Contains(strings.Split(p, ","), "") {
			return "", false
		}
		return p, true
	}
	return v, true
}

// WithoutCredentials is environ (as os.Environ gives it) as ShownEnv shows
// it: the environment of a command svcreg starts. It is never nil, as a nil
// exec.Cmd.Env is the parent's whole environment.
func WithoutCredentials(environ []string) []string {
	env := []string{}
	for _, kv := range environ {
		name, v, _ := strings.Cut(kv, "=")
		if v, ok := ShownEnv(name, v); ok {
			env = append(env, name+"="+v)
		}
	}
	return env
}
