package server

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"
)

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
		"/v2.0/tokens":  "/v2.0/tokens",
		"/v2.0/tokens/": "/v2.0/tokens/",
		// Put together wrong, with a token in it all the same.
		"/v2.0/tokensd02278a2":                            "/v2.0/tokensREDACTED",
		"/v2.0/tokens%2Fd02278a2":                         "/v2.0/tokensREDACTED",
		"/v2.0/tokens//d02278a2":                          "/v2.0/tokensREDACTED",
		"/v2.0//tokens/d02278a2":                          "/v2.0//tokensREDACTED",
		"//V2.0/Tokens/d02278a2?a=1":                      "//V2.0/TokensREDACTED?a=1",
		"/v2.0/tokens/d02278a2/":                          "/v2.0/tokens/REDACTED",
		"/v1.0/7777/services/tokens-1":                    "/v1.0/7777/services/tokens-1",
		"/ui/tokens":                                      "/ui/tokens",
		"/v1.0/7777/services?x-auth-token=secret&u=a://b": "/v1.0/7777/services?x-auth-token=REDACTED&u=a://b",
		// After a tokens path's segment, or a "." segment: a client whose
		// identity URL ends in /tokens revokes at
		// /v2.0/tokens/tokens/{token}, and what follows the token in the
		// API's own form is kept only where it is Keystone's endpoints.
		"/v2.0/tokens/tokens/d02278a2":             "/v2.0/tokens/REDACTED",
		"/v2.0/Tokens/tokens/d02278a2?belongsTo=1": "/v2.0/Tokens/REDACTED?belongsTo=1",
		"/v2.0/tokens/./d02278a2":                  "/v2.0/tokens/REDACTED",
		"/v2.0/tokens/../tokens/d02278a2":          "/v2.0/tokens/REDACTED",
		"/v2.0/./tokens/d02278a2":                  "/v2.0/./tokensREDACTED",
		"/v2.0/tokens/d02278a2/Endpoints/":         "/v2.0/tokens/REDACTED/Endpoints/",
	} {
		if got := withoutToken(in); got != want {
			t.Errorf("withoutToken(%q) = %q, want %q", in, got, want)
		}
	}
}

// The URI logged is the request's origin form: a request line in the
// absolute form (RFC 9112 3.2.2), which the server routes by its path,
// has its token left out as the origin form has, and no scheme, host or
// credentials of its own.
func TestLoggedURI(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:8420/v2.0/tokens/d02278a2-4367": "/v2.0/tokens/REDACTED",
		"HTTPS://h/V2.0/Tokens/d02278a2?belongsTo=1":      "/V2.0/Tokens/REDACTED?belongsTo=1",
		"http://u:pw@h/v2.0/tokens/d02278a2":              "/v2.0/tokens/REDACTED",
		"http://h/v1.0/7777/services?x-auth-token=secret": "/v1.0/7777/services?x-auth-token=REDACTED",
		"http:/v2.0/tokens/d02278a2":                      "/v2.0/tokens/REDACTED",
		"http:/v1.0/7777/services?x-auth-token=secret":    "/v1.0/7777/services?x-auth-token=REDACTED",
		"http://h/?x-auth-token=secret&u=a://b":           "/?x-auth-token=REDACTED&u=a://b",
		"/v2.0/tokens/d02278a2":                           "/v2.0/tokens/REDACTED",
	} {
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + in + " HTTP/1.1\r\nHost: h\r\n\r\n")))
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if got := loggedURI(r); got != want {
			t.Errorf("loggedURI(%q) = %q, want %q", in, got, want)
		}
	}
}

// A long value is cut at the start of a character: a log line of a
// client's UTF-8 text stays UTF-8.
func TestLogValueCutsAtACharacter(t *testing.T) {
	s := strings.Repeat("€", maxLogValue) // three bytes each: 256 is not a character's start
	got := logValue(s)
	if !utf8.ValidString(got) {
		t.Errorf("logValue split a character: %q", got)
	}
	if want := strings.Repeat("€", maxLogValue/3) + "…(768 bytes)"; got != want {
		t.Errorf("logValue = %q, want %q", got, want)
	}
}
