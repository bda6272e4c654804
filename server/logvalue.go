package server

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/svcreg/svcreg/internal/printable"
)

// maxLogValue bounds a value from a request or from registry data in a log
// line, so that no client can write long lines into the server's log.
const maxLogValue = 256

// logValue is s, cut to maxLogValue bytes with a note of its full length.
func logValue(s string) string { return cutNoted(s, maxLogValue) }

// cutNoted is s cut to at most max bytes, at the start of a character,
// with a note of its full length.
func cutNoted(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return printable.Prefix(s, max) + "…(" + strconv.Itoa(len(s)) + " bytes)"
}

// loggedURI is r's URI as the log shows it: in the origin form, as the
// server routes it (a request line in the absolute form loses its scheme,
// host and any credentials), without tokens.
func loggedURI(r *http.Request) string { return withoutToken(originForm(r)) }

// withoutToken is a request URI as logged: an x-auth-token in its query
// (the API takes one there as well as in the header), and the token in the
// path of /v2.0/tokens/{token} (revoked, or validated), are credentials,
// and are replaced by "REDACTED". uri is in the origin form (loggedURI).
func withoutToken(uri string) string {
	path, query, ok := strings.Cut(uri, "?")
	if p, cut := pathWithoutToken(path); cut {
		path, uri = p, p
		if ok {
			uri += "?" + query
		}
	}
	if !ok || !strings.Contains(strings.ToLower(query), "x-auth-token") && !strings.Contains(query, "%") {
		return uri
	}
	params := strings.Split(query, "&")
	for i, p := range params {
		name, _, _ := strings.Cut(p, "=")
		if n, err := url.QueryUnescape(name); strings.EqualFold(name, "x-auth-token") || err == nil && strings.EqualFold(n, "x-auth-token") {
			params[i] = name + "=REDACTED"
		}
	}
	return path + "?" + strings.Join(params, "&")
}

// tokensPath is the identity API's tokens collection; a token follows it.
const tokensPath = "/v2.0/tokens/"

// pathWithoutToken is path with the token of /v2.0/tokens/{token} replaced
// by REDACTED, and whether it held one. A path of the tokens collection
// put together wrong by a client (its base URL with a slash too many,
// "/v2.0//tokens/…", "/v2.0/./tokens/…" or "/v2.0/tokens//…"; none,
// "/v2.0/tokens…"; an escaped one, "/v2.0/tokens%2F…"; or tokens twice,
// "/v2.0/tokens/tokens/…") may hold a token all the same, answered 404:
// what follows "tokens" is left out whole.
func pathWithoutToken(path string) (string, bool) {
	const name = "tokens"
	// Lowered byte for byte: strings.ToLower writes a byte that is not
	// UTF-8 as three, and the index would not be path's.
	i := strings.Index(asciiLower(path), "/"+name)
	if i < 0 {
		return path, false
	}
	// The segments before it, but empty ones and ".": "v2.0" alone.
	segs := slices.DeleteFunc(strings.Split(path[:i], "/"), func(s string) bool { return s == "" || s == "." })
	if len(segs) != 1 || !strings.EqualFold(segs[0], "v2.0") {
		return path, false
	}
	head, rest := path[:i+1+len(name)], path[i+1+len(name):]
	switch {
	case rest == "" || rest == "/":
		return path, false
	case strings.EqualFold(path[:i], "/v2.0") && strings.HasPrefix(rest, "/") && !strings.HasPrefix(rest, "//"):
		// The API's own form: what follows the token is kept where it
		// is Keystone's endpoints, and left out with it otherwise (it
		// may be the token: /v2.0/tokens/tokens/{token}, from a client
		// whose identity URL ends in /tokens, or /v2.0/tokens/./{token}).
		p := head + "/REDACTED"
		if _, after, _ := strings.Cut(rest[1:], "/"); strings.EqualFold(strings.TrimSuffix(after, "/"), "endpoints") {
			p += "/" + after
		}
		return p, true
	}
	return head + "REDACTED", true
}

// asciiLower is s with its ASCII capitals lowered, and every other byte
// as it is: of s's length.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
