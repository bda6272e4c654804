package server

import (
	"net/url"
	"strconv"
	"strings"
	"unicode"
)

// maxLogValue bounds a value from a request or from registry data in a log
// line, so that no client can write long lines into the server's log.
const maxLogValue = 256

// logValue is s, cut to maxLogValue bytes with a note of its full length.
func logValue(s string) string {
	if len(s) <= maxLogValue {
		return s
	}
	return s[:maxLogValue] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}

// withoutToken is a request URI as logged: an x-auth-token in its query
// (the API takes one there as well as in the header), and the token in the
// path of /v2.0/tokens/{token} (revoked, or validated), are credentials,
// and are replaced by "REDACTED", in the absolute form of the request line
// (http://host/path) too.
func withoutToken(uri string) string {
	if scheme, rest, ok := strings.Cut(uri, ":"); ok && !strings.HasPrefix(uri, "/") && isScheme(scheme) {
		// http://host/path, or http:/path (which Go's server takes too).
		prefix := scheme + ":"
		if after, ok := strings.CutPrefix(rest, "//"); ok {
			i := strings.IndexAny(after, "/?")
			if i < 0 {
				return uri
			}
			prefix, rest = prefix+"//"+after[:i], after[i:]
		}
		return prefix + withoutToken(rest)
	}
	path, query, ok := strings.Cut(uri, "?")
	if len(path) > len(tokensPath) && hasPathPrefixFold(path, tokensPath[:len(tokensPath)-1]) && path[len(tokensPath)-1] == '/' {
		_, rest, _ := strings.Cut(path[len(tokensPath):], "/")
		if path = path[:len(tokensPath)] + "REDACTED"; rest != "" {
			path += "/" + rest
		}
		uri = path
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

// isScheme reports whether s is a URI scheme (RFC 3986 3.1).
func isScheme(s string) bool {
	if s == "" || !unicode.IsLetter(rune(s[0])) {
		return false
	}
	return strings.IndexFunc(s, func(r rune) bool {
		return r > unicode.MaxASCII || !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '+' && r != '-' && r != '.'
	}) < 0
}

// tokensPath is the identity API's tokens collection; a token follows it.
const tokensPath = "/v2.0/tokens/"
