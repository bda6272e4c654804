package server_test

import (
	"testing"

	"github.com/svcreg/svcreg/internal/testserver"
)

// A web page of another origin can make a visitor's browser send a write
// to the API (a form, a fetch without CORS and with a body of no type),
// with a token in the query it learnt somewhere: refused, 403
// forbiddenError, before anything is read or written. Reads, the
// dashboard's own requests and clients that are not browsers are served.
func TestCrossOriginWritesRefused(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	c := newAPI(t, srv)
	body := map[string]any{"id": "csrf-made", "heartbeat_timeout": 30}
	for _, h := range [][]string{
		{"Sec-Fetch-Site", "cross-site", "Origin", "http://evil.example"},
		{"Sec-Fetch-Site", "same-site", "Origin", "http://other.registry.example"},
		{"Origin", "http://evil.example"},
		{"Origin", "null"},
	} {
		c.do("POST", "/services", body, h...).fault(403, "forbiddenError", "forbidden", "A write sent by a web page of another origin is refused.")
		c.do("PUT", "/configuration/key-1", map[string]string{"value": "v"}, h...).want(403)
		c.do("DELETE", "/services/anything", nil, h...).want(403)
		c.do("GET", "/services", nil, h...).want(200)
		// A preflight, which the API does not serve, is answered as before.
		c.do("OPTIONS", "/services", nil, h...).want(404)
	}
	c.do("GET", "/services/csrf-made", nil).notFound("Service", "csrf-made")
	c.do("POST", "/services", body, "Sec-Fetch-Site", "same-origin", "Origin", "http://proxy.example").want(201)
	c.do("PUT", "/configuration/key-1", map[string]string{"value": "v"}).want(204)
}
