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
		// Revoked (or validated) in the path.
		"/v2.0/tokens/d02278a2-4367":                "/v2.0/tokens/REDACTED",
		"/V2.0/Tokens/d02278a2-4367?belongsTo=1":    "/V2.0/Tokens/REDACTED?belongsTo=1",
		"/v2.0/tokens/d02278a2-4367/endpoints":      "/v2.0/tokens/REDACTED/endpoints",
		"/v2.0/tokens/d02278a2?x-auth-token=secret": "/v2.0/tokens/REDACTED?x-auth-token=REDACTED",
		"/v2.0/tokens":      "/v2.0/tokens",
		"/v2.0/tokens/":     "/v2.0/tokens/",
		"/v2.0/tokensx/abc": "/v2.0/tokensx/abc",
		// The absolute form of the request line (RFC 9112 3.2.2).
		"http://127.0.0.1:8420/v2.0/tokens/d02278a2-4367": "http://127.0.0.1:8420/v2.0/tokens/REDACTED",
		"HTTPS://h/V2.0/Tokens/d02278a2?belongsTo=1":      "HTTPS://h/V2.0/Tokens/REDACTED?belongsTo=1",
		"http://h/v1.0/7777/services?x-auth-token=secret": "http://h/v1.0/7777/services?x-auth-token=REDACTED",
		"http://h?x-auth-token=secret":                    "http://h?x-auth-token=REDACTED",
		"http://h":                                        "http://h",
		"http:/v2.0/tokens/d02278a2":                      "http:/v2.0/tokens/REDACTED",
		"http:/v1.0/7777/services?x-auth-token=secret":    "http:/v1.0/7777/services?x-auth-token=REDACTED",
		"http://h?x-auth-token=secret&u=a://b":            "http://h?x-auth-token=REDACTED&u=a://b",
		"/v1.0/7777/services?x-auth-token=secret&u=a://b": "/v1.0/7777/services?x-auth-token=REDACTED&u=a://b",
	} {
		if got := withoutToken(in); got != want {
			t.Errorf("withoutToken(%q) = %q, want %q", in, got, want)
		}
	}
}
