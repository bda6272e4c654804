package server_test

import (
	"fmt"
	"io"
	"math/big"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/svcreg/svcreg/internal/testserver"
)

// spec §2.1: routes are served with and without the tenant prefix, match
// case-insensitively with an optional trailing slash, and are matched on
// the raw path, so "//" in a configuration id is never cleaned.
func TestRouting(t *testing.T) { onEachStore(t, testRouting) }

func testRouting(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	c.create("svc-1", 30)
	c.setConfig("/production/cassandra", "10.0.0.1")

	for _, tc := range []struct {
		name, method string
		path         string // under /v1.0; {t} stands for the tenant
		body         any
		code         int
		contains     string // text the answer's body holds
	}{
		{"tenant prefix", "GET", "/{t}/services", nil, 200, `"svc-1"`},
		{"upper case", "GET", "/{t}/SERVICES", nil, 200, `"svc-1"`},
		{"mixed case with id", "GET", "/{t}/Services/svc-1", nil, 200, `"svc-1"`},
		{"trailing slash on a list", "GET", "/{t}/services/", nil, 200, `"svc-1"`},
		{"trailing slash on an id", "GET", "/{t}/services/svc-1/", nil, 200, `"id":"svc-1"`},
		{"double slash in a configuration id", "GET", "/{t}/configuration//production/cassandra", nil, 200, `"10.0.0.1"`},
		{"limits by GET", "GET", "/{t}/limits", nil, 200, `"resource"`},
		{"limits by POST", "POST", "/{t}/limits", nil, 200, `"resource"`},
		{"events", "GET", "/{t}/events", nil, 200, `"values"`},
		{"heartbeat route", "POST", "/{t}/services/svc-1/heartbeat", map[string]string{"token": "6ba7b810-9dad-11d1-80b4-00c04fd430c8"}, 404, `HeartbeatMarker`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := c.in(t)
			r := c.raw(tc.method, "/v1.0"+strings.ReplaceAll(tc.path, "{t}", c.tenant), tc.body).want(tc.code)
			if !strings.Contains(string(r.body), tc.contains) {
				t.Errorf("body %s does not hold %s", r.body, tc.contains)
			}
		})
	}

	t.Run("without prefix, tenant from X-Tenant-Id", func(t *testing.T) {
		r := sendRequest(t, c.base, "GET", "/v1.0/services", nil, "X-Auth-Token", c.token, "X-Tenant-Id", c.tenant)
		vals, _ := list[service](r)
		if len(vals) != 1 || vals[0].ID != "svc-1" {
			t.Errorf("services %+v, want svc-1", vals)
		}
	})

	t.Run("Accept is ignored", func(t *testing.T) {
		r := sendRequest(t, c.base, "GET", "/v1.0/"+c.tenant+"/services/svc-1", nil, "X-Auth-Token", c.token, "Accept", "text/html")
		if r.want(200); !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
			t.Errorf("Content-Type %q, want JSON whatever Accept says", r.header.Get("Content-Type"))
		}
	})

	// Un-prefixed routes are tried first, so a tenant id that is also a
	// resource word resolves to the un-prefixed route.
	t.Run("ambiguous path resolves to the un-prefixed route", func(t *testing.T) {
		r := sendRequest(t, c.base, "GET", "/v1.0/services/events", nil, "X-Auth-Token", c.token, "X-Tenant-Id", c.tenant)
		r.notFound("Service", "events")
	})
}

// spec §2.1: anything else, including a known path with the wrong method,
// is a 404 whose details object names the request URL, query included.
func TestUnknownRoute(t *testing.T) { onEachStore(t, testUnknownRoute) }

func testUnknownRoute(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	c.create("svc-1", 30)
	for _, tc := range []struct{ method, path string }{
		{"GET", "/random-url"},
		{"GET", "/random-url?a=b&c=%20d"},
		{"DELETE", "/services"},
		{"PUT", "/services"},
		{"GET", "/services/svc-1/heartbeat"},
		{"PATCH", "/services/svc-1"},
		{"POST", "/services/svc-1"},
		{"GET", "/services/svc-1/extra"},
		{"GET", "/services//"},
		{"POST", "/events"},
		{"PUT", "/configuration"},
		{"DELETE", "/limits"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			t.Parallel()
			c := c.in(t)
			uri := "/v1.0/" + c.tenant + tc.path
			c.raw(tc.method, uri, nil).fault(404, "notFoundError", "The page cannot be found.", map[string]any{"requested_path": uri})
		})
	}
}

// spec §2.1: a bad percent escape in a path parameter is 400 "URI
// malformed", with details like every other fault (the original left the
// key out, and the official Python client fails on that).
func TestBadPercentEscape(t *testing.T) { onEachStore(t, testBadPercentEscape) }

func testBadPercentEscape(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	token := map[string]string{"token": "6ba7b810-9dad-11d1-80b4-00c04fd430c8"}
	for _, tc := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/services/%80", nil},
		{"GET", "/services/abc%E0%A4", nil},
		{"PUT", "/services/%80", map[string]any{}},
		{"DELETE", "/services/abc%C3", nil},
		{"POST", "/services/%80/heartbeat", token},
		// Decoded when the route matches: before the body's or the
		// query's checks.
		{"POST", "/services/%80/heartbeat", map[string]string{"token": "x"}},
		{"POST", "/services/%80/heartbeat", map[string]string{}},
		{"GET", "/configuration/%80", nil},
		{"GET", "/configuration/ns%80/", nil},
		{"GET", "/configuration/%80?limit=abc", nil},
		{"GET", "/configuration/ns%80/?marker=%25", nil},
		{"PUT", "/configuration/key%C3", map[string]string{"value": "v"}},
		{"DELETE", "/configuration//ns/%FF", nil},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			t.Parallel()
			newAPI(t, srv).do(tc.method, tc.path, tc.body).fault(400, "badRequest", "URI malformed", "URI malformed")
		})
	}
}

// A "%" that is not an escape at all (%zz, a cut-off %8) is refused by
// net/http while it reads the request line, before any handler runs: the
// answer is still a 400, but net/http's plain one (a documented departure,
// docs/api.md "Paths").
func TestNotAnEscapeIsRefusedByHTTP(t *testing.T) { onEachStore(t, testNotAnEscapeIsRefusedByHTTP) }

func testNotAnEscapeIsRefusedByHTTP(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	for _, path := range []string{"/services/abc%zz", "/configuration//ns/%8", "/services/abc%E0%A4%A"} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			newAPI(t, srv).do("GET", path, nil).want(400)
		})
	}
}

// spec §2.2 and §2.3 step 2: only application/json, matched
// case-insensitively before ";"; a missing Content-Type counts as JSON. The
// check runs on every request, GET included, before authentication and
// routing; the message holds the type lower-cased.
func TestContentType(t *testing.T) { onEachStore(t, testContentType) }

func testContentType(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	for _, tc := range []struct {
		contentType string
		unsupported string // the type the fault names; "" when accepted
	}{
		{"", ""},
		{"application/json", ""},
		{"application/json; charset=utf-8", ""},
		{"APPLICATION/JSON", ""},
		{"Application/Json;charset=UTF-8", ""},
		{"text/plain", "text/plain"},
		{"Text/Plain; charset=utf-8", "text/plain"},
		{"application/x-www-form-urlencoded", "application/x-www-form-urlencoded"},
	} {
		t.Run(fmt.Sprintf("%q", tc.contentType), func(t *testing.T) {
			t.Parallel()
			c := newAPI(t, srv)
			get := c.do("GET", "/services", nil, "Content-Type", tc.contentType)
			post := c.do("POST", "/services", `{"id":"svc-1","heartbeat_timeout":30}`, "Content-Type", tc.contentType)
			// Before authentication and routing: no token, unknown path.
			early := sendRequest(t, c.base, "GET", "/v1.0/"+c.tenant+"/no-such-thing", nil, "Content-Type", tc.contentType)
			if tc.unsupported == "" {
				get.want(200)
				post.want(201)
				early.want(401)
				return
			}
			msg := "Unsupported content type: " + tc.unsupported
			get.badRequest(msg)
			post.badRequest(msg)
			early.badRequest(msg)
		})
	}
}

// spec §2.3 step 3: an empty body is {}, a body that is not JSON is 400
// "Failed to parse request body: …", and JSON null is 400 "Empty Request
// Body"; the parse runs before authentication and routing.
func TestRequestBodyParsing(t *testing.T) { onEachStore(t, testRequestBodyParsing) }

func testRequestBodyParsing(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	token := c.create("svc-1", 30)

	t.Run("not JSON", func(t *testing.T) {
		for _, body := range []string{`{`, `{"id":}`, `nonsense`, `{"id":"a"} trailing`} {
			r := c.do("POST", "/services", body)
			r.fault(400, "badRequest", "", prefixed("Failed to parse request body: "))
		}
	})
	t.Run("not JSON, before authentication and routing", func(t *testing.T) {
		r := sendRequest(t, c.base, "POST", "/v1.0/"+c.tenant+"/no-such-thing", `{"a":`)
		r.fault(400, "badRequest", "", prefixed("Failed to parse request body: "))
	})
	t.Run("empty body is an empty object", func(t *testing.T) {
		c.do("POST", "/services", "").invalid("id", "Missing required key (id)")
		c.do("PUT", "/services/svc-1", "").want(204)
	})
	t.Run("null", func(t *testing.T) {
		c.do("POST", "/services", "null").badRequest("Empty Request Body")
		c.do("PUT", "/services/svc-1", "null").badRequest("Empty Request Body")
		c.do("POST", "/services/svc-1/heartbeat", "null").badRequest("Empty Request Body")
		c.do("PUT", "/configuration/key-1", "null").badRequest("Empty Request Body")
		c.heartbeat("svc-1", token).want(200) // the null heartbeat used nothing up
	})
}

// spec §2.3 step 1: a body of 5000 bytes or more (by Content-Length or as
// streamed) is 413 with an empty body and Connection: close, before
// authentication and routing.
func TestBodySizeLimit(t *testing.T) { onEachStore(t, testBodySizeLimit) }

func testBodySizeLimit(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	// createBody is a valid create body of exactly n bytes.
	createBody := func(id string, n int) string {
		head, tail := `{"id":"`+id+`","heartbeat_timeout":30,"pad":"`, `"}`
		return head + strings.Repeat("a", n-len(head)-len(tail)) + tail
	}
	for _, tc := range []struct {
		name    string
		size    int
		chunked bool
		code    int
	}{
		{"4999 bytes", 4999, false, 201},
		{"5000 bytes", 5000, false, 413},
		{"5001 bytes", 5001, false, 413},
		{"4999 bytes chunked", 4999, true, 201},
		{"5000 bytes chunked", 5000, true, 413},
		{"20000 bytes chunked", 20000, true, 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newAPI(t, srv)
			body := createBody("svc-1", tc.size)
			if len(body) != tc.size {
				t.Fatalf("test body has %d bytes, want %d", len(body), tc.size)
			}
			var send any = body
			if tc.chunked {
				send = io.MultiReader(strings.NewReader(body))
			}
			r := c.do("POST", "/services", send).want(tc.code)
			if tc.code == 413 {
				r.tooLarge()
			}
		})
	}
	t.Run("unknown path without a token", func(t *testing.T) {
		t.Parallel()
		r := sendRequest(t, srv.URL, "POST", "/v1.0/12345/no-such-thing", createBody("svc-1", 5000))
		r.tooLarge()
	})
}

// spec §2.4: X-Response-Id on every response, different for each; JSON
// answers are application/json; 204 answers have no body and no
// Content-Length.
func TestResponseHeaders(t *testing.T) { onEachStore(t, testResponseHeaders) }

func testResponseHeaders(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	seen := map[string]string{}
	for _, tc := range []struct {
		name string
		r    func() *reply
		code int
	}{
		{"201 create", func() *reply {
			return c.do("POST", "/services", map[string]any{"id": "svc-1", "heartbeat_timeout": 30})
		}, 201},
		{"200 get", func() *reply { return c.do("GET", "/services/svc-1", nil) }, 200},
		{"200 list", func() *reply { return c.do("GET", "/services", nil) }, 200},
		{"204 update", func() *reply { return c.do("PUT", "/services/svc-1", map[string]any{}) }, 204},
		{"204 set value", func() *reply { return c.do("PUT", "/configuration/key-1", map[string]string{"value": "v"}) }, 204},
		{"204 delete", func() *reply { return c.do("DELETE", "/services/svc-1", nil) }, 204},
		{"400", func() *reply { return c.do("GET", "/services/ab", nil) }, 400},
		{"401", func() *reply { return sendRequest(t, c.base, "GET", "/v1.0/"+c.tenant+"/services", nil) }, 401},
		{"404", func() *reply { return c.do("GET", "/services/svc-1", nil) }, 404},
		{"413", func() *reply { return c.do("POST", "/services", strings.Repeat(" ", 6000)) }, 413},
	} {
		r := tc.r()
		if r.code != tc.code {
			t.Errorf("%s: status %d, want %d; body %s", tc.name, r.code, tc.code, r.body)
			continue
		}
		id := r.header.Get("X-Response-Id")
		if id == "" {
			t.Errorf("%s: no X-Response-Id", tc.name)
		} else if prev, dup := seen[id]; dup {
			t.Errorf("%s: X-Response-Id %q repeats the one of %s", tc.name, id, prev)
		}
		seen[id] = tc.name
		ct := r.header.Get("Content-Type")
		switch {
		case tc.code == 204:
			if len(r.body) != 0 || r.header.Get("Content-Length") != "" {
				t.Errorf("%s: body %q, Content-Length %q; want neither", tc.name, r.body, r.header.Get("Content-Length"))
			}
		case tc.code == 413:
		case tc.code == 201:
			if !strings.HasPrefix(ct, "application/json") {
				t.Errorf("%s: Content-Type %q, want application/json", tc.name, ct)
			}
		default:
			if !strings.EqualFold(ct, "application/json; charset=UTF-8") {
				t.Errorf("%s: Content-Type %q, want application/json; charset=UTF-8", tc.name, ct)
			}
		}
		if tc.code != 204 && tc.code != 413 && r.header.Get("Content-Length") != strconv.Itoa(len(r.body)) {
			t.Errorf("%s: Content-Length %q for a body of %d bytes", tc.name, r.header.Get("Content-Length"), len(r.body))
		}
	}
}

// X-Response-Id is opaque and unique, and tells nothing of the requests
// the server took between two: a counter would let any client watch
// every account's request rate (their heartbeats, their deploys).
func TestResponseIDsCountNothing(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: "bolt"})
	c := newAPI(t, srv)
	var ids []string
	for range 20 {
		ids = append(ids, sendRequest(t, c.base, "GET", "/nothing", nil).header.Get("X-Response-Id"))
	}
	seen := map[string]bool{}
	for i, id := range ids {
		prefix, suffix, _ := strings.Cut(id, "-")
		proc, suffix, _ := strings.Cut(suffix, "-")
		n, ok := new(big.Int).SetString(suffix, 16)
		if prefix != "svcreg" || len(proc) != 12 || len(suffix) != 32 || !ok || seen[id] {
			t.Fatalf("X-Response-Id %q: want svcreg-PROCESS-32 hex digits, each its own", id)
		}
		seen[id] = true
		if i > 0 {
			prev, _ := new(big.Int).SetString(ids[i-1][len(id)-32:], 16)
			if d := new(big.Int).Sub(n, prev); d.CmpAbs(big.NewInt(1<<32)) < 0 {
				t.Errorf("X-Response-Id %q after %q: %v apart, a count of the requests between", id, ids[i-1], d)
			}
		}
	}
}

// spec §2.5: Location on 201 create service and on the 204s of update
// service and set value, never on DELETE; it names the effective tenant and
// the id unchanged, and its last segment is what clients read.
func TestLocationHeader(t *testing.T) { onEachStore(t, testLocationHeader) }

func testLocationHeader(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})

	// location parses r's Location and checks its scheme, host and path.
	location := func(t *testing.T, r *reply, scheme, host, path string) {
		t.Helper()
		loc := r.header.Get("Location")
		u, err := url.Parse(loc)
		if err != nil || u.Scheme != scheme || u.Hostname() != host || u.EscapedPath() != path {
			t.Errorf("Location %q, want %s://%s…%s", loc, scheme, host, path)
		}
	}

	t.Run("create, update and delete a service", func(t *testing.T) {
		t.Parallel()
		c := newAPI(t, srv)
		r := c.do("POST", "/services", map[string]any{"id": "svc-1", "heartbeat_timeout": 30}).want(201)
		location(t, r, "http", "127.0.0.1", "/v1.0/"+c.tenant+"/services/svc-1")
		// The clients take the id from index 6 of the Location split on "/".
		if parts := strings.Split(r.header.Get("Location"), "/"); len(parts) != 7 || parts[4] != c.tenant || parts[6] != "svc-1" {
			t.Errorf("Location %q split on / is %q", r.header.Get("Location"), parts)
		}
		r = c.do("PUT", "/services/svc-1", map[string]any{"heartbeat_timeout": 15}).want(204)
		location(t, r, "http", "127.0.0.1", "/v1.0/"+c.tenant+"/services/svc-1")
		r = c.do("DELETE", "/services/svc-1", nil).want(204)
		if loc := r.header.Get("Location"); loc != "" {
			t.Errorf("DELETE service has Location %q", loc)
		}
	})
	t.Run("set and delete a value", func(t *testing.T) {
		t.Parallel()
		c := newAPI(t, srv)
		r := c.do("PUT", "/configuration/key-1", map[string]string{"value": "v"}).want(204)
		location(t, r, "http", "127.0.0.1", "/v1.0/"+c.tenant+"/configuration/key-1")
		r = c.do("PUT", "/configuration//production/cassandra", map[string]string{"value": "v"}).want(204)
		location(t, r, "http", "127.0.0.1", "/v1.0/"+c.tenant+"/configuration//production/cassandra")
		r = c.do("DELETE", "/configuration//production/cassandra", nil).want(204)
		if loc := r.header.Get("Location"); loc != "" {
			t.Errorf("DELETE value has Location %q", loc)
		}
	})
	t.Run("a storage prefix inside an id stays", func(t *testing.T) {
		t.Parallel()
		c := newAPI(t, srv)
		r := c.do("POST", "/services", map[string]any{"id": "srvfoobarsrvfoo", "heartbeat_timeout": 30}).want(201)
		location(t, r, "http", "127.0.0.1", "/v1.0/"+c.tenant+"/services/srvfoobarsrvfoo")
		r = c.do("PUT", "/configuration/cvfoobarcvfoo", map[string]string{"value": "v"}).want(204)
		location(t, r, "http", "127.0.0.1", "/v1.0/"+c.tenant+"/configuration/cvfoobarcvfoo")
	})
	t.Run("tenant from X-Tenant-Id on an un-prefixed path", func(t *testing.T) {
		t.Parallel()
		c := newAPI(t, srv)
		r := c.raw("POST", "/v1.0/services", map[string]any{"id": "svc-1", "heartbeat_timeout": 30}, "X-Tenant-Id", c.tenant).want(201)
		location(t, r, "http", "127.0.0.1", "/v1.0/"+c.tenant+"/services/svc-1")
	})
	t.Run("Host and X-Forwarded-Proto", func(t *testing.T) {
		t.Parallel()
		c := newAPI(t, srv)
		r := c.do("POST", "/services", map[string]any{"id": "svc-1", "heartbeat_timeout": 30},
			"Host", "registry.example.com", "X-Forwarded-Proto", "https").want(201)
		location(t, r, "https", "registry.example.com", "/v1.0/"+c.tenant+"/services/svc-1")
		r = c.do("PUT", "/configuration/key-1", map[string]string{"value": "v"}, "Host", "registry.example.com").want(204)
		location(t, r, "http", "registry.example.com", "/v1.0/"+c.tenant+"/configuration/key-1")
		// Its first value, in any case; one that is not http or https
		// is no scheme a client could follow, and is left out (an
		// answer that copied it, as the identity's does a dozen times,
		// would be as long as it).
		for proto, want := range map[string]string{"HTTPS": "https", "https, http": "https", " http ,https": "http",
			"gopher": "http", "\x80\x80\x80": "http", "": "http", strings.Repeat("\x80", 4000): "http"} {
			r = c.do("PUT", "/configuration/key-1", map[string]string{"value": "v"}, "X-Forwarded-Proto", proto).want(204)
			location(t, r, want, "127.0.0.1", "/v1.0/"+c.tenant+"/configuration/key-1")
		}
	})
	t.Run("a Host longer than a host name and port", func(t *testing.T) {
		t.Parallel()
		c := newAPI(t, srv)
		long := strings.Repeat("a", 501) + ".example.com"
		var f struct{ Type, Message string }
		c.do("GET", "/services", nil, "Host", long).want(400).json(&f)
		if want := "The Host header is 513 bytes; a host name and port are 512 at most."; f.Type != "badRequest" || f.Message != want {
			t.Errorf("a %d-byte Host: %s %q, want badRequest %q", len(long), f.Type, f.Message, want)
		}
		c.do("GET", "/services", nil, "Host", long[1:]).want(200)
		// The identity's fault is its own.
		var kf struct {
			BadRequest struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"badRequest"`
		}
		c.raw("POST", "/v2.0/tokens", map[string]any{}, "Host", long).want(400).json(&kf)
		if kf.BadRequest.Code != 400 || !strings.HasPrefix(kf.BadRequest.Message, "The Host header is 513 bytes") {
			t.Errorf("a %d-byte Host at the identity endpoint: %+v", len(long), kf)
		}
	})
}

// Answers that hold a token, or an account's data asked for with one in
// X-Auth-Token (which a shared cache does not take for credentials), are
// kept out of caches, and JSON answers, which may echo registry text or a
// requested path, are never sniffed as HTML.
func TestCacheAndSniffHeaders(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	c := newUser(t, srv, "headers")
	body := map[string]any{"auth": map[string]any{
		"RAX-KSKEY:apiKeyCredentials": map[string]string{"username": "headers", "apiKey": "dev"},
	}}
	login := sendRequest(t, c.base, "POST", "/v2.0/tokens", body).want(200)
	if got := login.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("the token answer's Cache-Control is %q, want no-store", got)
	}
	for _, r := range []*reply{login, c.raw("GET", "/v1.0/"+c.tenant+"/<script>", nil), c.raw("GET", "/v1.0/"+c.tenant+"/services", nil)} {
		if got := r.header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("an answer (%d) without X-Content-Type-Options: nosniff: %q", r.code, got)
		}
		if got := r.header.Get("Cache-Control"); got != "no-store" {
			t.Errorf("an answer (%d) with Cache-Control %q, want no-store", r.code, got)
		}
	}
}
