package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/server/store"
)

// maxBodySize is the body limit: a body of this many bytes or more is
// refused with 413 (spec §2.3 step 1; the comparison is >=). The client
// checks a registration against it before it sends one.
const maxBodySize = registry.MaxRequestBody

// request is what the API middleware learned of a request before routing.
type request struct {
	r      *http.Request
	txnID  string
	tenant string
	// account is the tenant's, created on first use (spec §3.4) before
	// routing.
	account store.Account
	// routePath is the raw path after /v1.0 and the tenant, e.g. "/services".
	routePath string
	params    []string // raw route parameters, percent-decoded by the handler
	query     query
	body      body
	// rateUsed is how many requests the rate-limit rule counted in its
	// window before this one; rateAt, if not 0, is the bucket it counted
	// this one in (rateLimiter.take).
	rateUsed int
	rateAt   int64
	// parkedScheme, if set, is the scheme of a parked long-poll's
	// request, worked out when it parked (scheme).
	parkedScheme string
	// token is the token the request was authenticated with: a
	// long-poll checks it again before it answers (stillValid).
	token string
}

// baseURL is {scheme}://{host} of the request (spec §2.5, §13 item 21): the
// X-Forwarded-Proto header if it says http or https (its first value, in
// any case), else https on TLS, else http; the Host header as sent, port
// included. Another X-Forwarded-Proto is not a scheme a client could
// follow, and answers that copy it would be as long as it.
func (rq *request) baseURL() string {
	return rq.scheme() + "://" + rq.r.Host
}

// scheme is baseURL's scheme: "http" or "https".
func (rq *request) scheme() string {
	if rq.parkedScheme != "" {
		return rq.parkedScheme
	}
	if p := rq.r.Header.Get("X-Forwarded-Proto"); p != "" {
		p, _, _ = strings.Cut(p, ",")
		switch p = strings.TrimSpace(p); {
		case strings.EqualFold(p, "http"):
			return "http"
		case strings.EqualFold(p, "https"):
			return "https"
		}
	}
	if rq.r.TLS != nil {
		return "https"
	}
	return "http"
}

// hrefPrefix is next_href up to its query (spec §6.5), with the effective
// tenant (spec §13 item 22).
func (rq *request) hrefPrefix() string {
	return rq.baseURL() + "/v1.0/" + rq.tenant + rq.routePath + "?"
}

// objectURL is the Location of an object: {base}/v1.0/{tenant}{objectPath}.
func (rq *request) objectURL(objectPath string) string {
	return rq.baseURL() + "/v1.0/" + rq.tenant + objectPath
}

// body is a parsed request body: an object's fields as raw JSON, or null.
type body struct {
	fields map[string]json.RawMessage
	null   bool
	raw    json.RawMessage
}

// readBody applies the body checks of spec §2.3, in order: size, content
// type, JSON. They run before authentication and routing.
func readBody(r *http.Request) (body, *fault, bool) {
	if r.ContentLength >= maxBodySize {
		return body{}, nil, true
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBodySize))
	if err != nil {
		return body{}, badRequest("Failed to read request body: " + err.Error()), false
	}
	if len(data) >= maxBodySize {
		return body{}, nil, true
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		t, _, perr := mime.ParseMediaType(ct)
		if perr != nil {
			t = strings.ToLower(strings.TrimSpace(strings.SplitN(ct, ";", 2)[0]))
		}
		if t != "application/json" {
			return body{}, badRequest("Unsupported content type: " + echoed(t)), false
		}
	}
	b, f := parseBody(data)
	return b, f, false
}

// parseBody parses a JSON body; an empty body is {}.
func parseBody(data []byte) (body, *fault) {
	if len(bytes.TrimSpace(data)) == 0 {
		return body{fields: map[string]json.RawMessage{}}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return body{}, badRequest("Failed to parse request body: " + err.Error())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return body{}, badRequest("Failed to parse request body: unexpected data after the JSON value")
	}
	b := body{raw: raw, fields: map[string]json.RawMessage{}}
	switch raw[0] {
	case 'n':
		b.null = true
	case '{':
		if err := json.Unmarshal(raw, &b.fields); err != nil {
			return body{}, badRequest("Failed to parse request body: " + err.Error())
		}
	}
	return b, nil
}

// query is the query string as ordered pairs, decoded leniently: a bad
// escape leaves the text as sent.
type query []queryPair

type queryPair struct{ key, value string }

// maxQueryParams is the most parameters (parts between '&' that are not
// empty) a request's query may have; the API reads six at most.
const maxQueryParams = 256

// queryParams counts the parameters of a raw query as parseQuery finds
// them, without parsing them.
func queryParams(raw string) int {
	n := 0
	for part := range strings.SplitSeq(raw, "&") {
		if part != "" {
			n++
		}
	}
	return n
}

func parseQuery(raw string) query {
	var q query
	for _, part := range strings.Split(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		q = append(q, queryPair{unescapeLenient(k), unescapeLenient(v)})
	}
	return q
}

func unescapeLenient(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

// values returns every value of key, in order.
func (q query) values(key string) []string {
	var vs []string
	for _, p := range q {
		if p.key == key {
			vs = append(vs, p.value)
		}
	}
	return vs
}

// get returns key's values joined by "," (as a repeated parameter reads in
// the original's messages), and whether key was present.
func (q query) get(key string) (string, bool) {
	vs := q.values(key)
	return strings.Join(vs, ","), vs != nil
}

// with returns the query encoded with key set to value, replacing its first
// occurrence or appended at the end (spec §6.5 next_href).
func (q query) with(key, value string) string {
	var b strings.Builder
	set := false
	for _, p := range q {
		if p.key == key {
			if set {
				continue
			}
			p.value, set = value, true
		}
		appendPair(&b, p)
	}
	if !set {
		appendPair(&b, queryPair{key, value})
	}
	return b.String()
}

func appendPair(b *strings.Builder, p queryPair) {
	if b.Len() > 0 {
		b.WriteByte('&')
	}
	b.WriteString(url.QueryEscape(p.key))
	b.WriteByte('=')
	b.WriteString(url.QueryEscape(p.value))
}

// decodeParam percent-decodes a route parameter like JavaScript's
// decodeURIComponent: a bad escape or invalid UTF-8 is "URI malformed".
func decodeParam(s string) (string, *fault) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	u, err := url.PathUnescape(s)
	if err != nil || !utf8.ValidString(u) {
		return "", badRequest("URI malformed")
	}
	return u, nil
}

// writeJSON writes v as the JSON answer with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := store.MarshalJSON(v)
	if err != nil {
		http.Error(w, "encode response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	writeRawJSON(w, status, data)
}

// jsonType and noSniff are header values every JSON answer shares (net/http
// only reads them), rather than a slice allocated for each, heartbeats'
// included.
var (
	jsonType   = []string{"application/json; charset=UTF-8"}
	noSniff    = []string{"nosniff"}
	noStoreHdr = []string{"no-store"}
)

func writeRawJSON(w http.ResponseWriter, status int, data []byte) {
	h := w.Header()
	h["Content-Type"] = jsonType
	// Registry text in a JSON answer (a requested path echoed in a 404,
	// say) is never read as HTML by a browser that sniffs.
	h["X-Content-Type-Options"] = noSniff
	// An account's data, asked for with a token in X-Auth-Token, which a
	// shared cache does not take for credentials (it does
	// Authorization): never kept by one, to be served to another client.
	h["Cache-Control"] = noStoreHdr
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(status)
	w.Write(data)
}
