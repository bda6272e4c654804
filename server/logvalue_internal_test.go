package server

import "testing"

// A token sent in the query is not written to the log.
func TestWithoutToken(t *testing.T) {
	for in, want := range map[string]string{
		"/v1.0/7777/services": "/v1.0/7777/services",
		"/v1.0/7777/events?marker=m&x-auth-token=secret&wait=5": "/v1.0/7777/events?marker=m&x-auth-token=REDACTED&wait=5",
		"/v1.0/7777/services?X-Auth-Token=secret":               "/v1.0/7777/services?X-Auth-Token=REDACTED",
		"/v1.0/7777/services?x-auth-%74oken=secret":             "/v1.0/7777/services?x-auth-%74oken=REDACTED",
		"/v1.0/7777/services?limit=5%20":                        "/v1.0/7777/services?limit=5%20",
	} {
		if got := withoutToken(in); got != want {
			t.Errorf("withoutToken(%q) = %q, want %q", in, got, want)
		}
	}
}
