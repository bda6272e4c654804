package server_test

import (
	"testing"

	"github.com/svcreg/svcreg/internal/testserver"
)

// An absolute-form request line (GET http://host/v1.0/{tenant}/…, as sent
// to a proxy) routes on its path: the tenant is the path's, never digits of
// the host.
func TestAbsoluteFormRequestLine(t *testing.T) { onEachStore(t, testAbsoluteFormRequestLine) }

func testAbsoluteFormRequestLine(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	c.create("absolute-form", 30)
	r := c.raw("GET", srv.URL+"/v1.0/"+c.tenant+"/services?limit=5", nil).want(200)
	if vals, _ := list[service](r); len(vals) != 1 || vals[0].ID != "absolute-form" {
		t.Errorf("services %+v, want the tenant's one service", vals)
	}
	c.raw("GET", "http://7777/v1.0/"+c.tenant+"/services/absolute-form", nil, "Host", "7777").want(200)
	c.raw("GET", srv.URL+"/v1.0/services", nil).fault(401, "unauthorizedError", "forbidden", "No tenant id provided")
}
