package server_test

import (
	"net/url"
	"strconv"
	"testing"

	"github.com/svcreg/svcreg/internal/testserver"
)

// A tag has one rule wherever it appears (design item 8): what a service
// may carry can be queried with ?tag=, and a tag ?tag= refuses (a control
// character) cannot be stored by create or update either.
func TestOneTagRuleForServicesAndQueries(t *testing.T) {
	onEachStore(t, testOneTagRuleForServicesAndQueries)
}

func testOneTagRuleForServicesAndQueries(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	c.create("tag-base", 30)
	for _, tag := range []string{"a\x01b", "web\tserver", "line\nbreak", "del\x7f", "c1\u0085"} {
		c.do("POST", "/services", map[string]any{"id": "tag-bad", "tags": []string{"ok", tag}, "heartbeat_timeout": 30}).
			invalid("tags", "Invalid characters")
		c.do("PUT", "/services/tag-base", map[string]any{"tags": []string{tag}}).invalid("tags", "Invalid characters")
		c.do("GET", "/services?tag="+url.QueryEscape(tag), nil).
			fault(400, "badRequest", "Invalid value for 'tag' query string parameter", "Invalid characters")
	}
	for i, tag := range []string{"db", "web server", "ünï", "a/b:c"} {
		c.do("POST", "/services", map[string]any{"id": "tag-ok-" + strconv.Itoa(i), "tags": []string{tag}, "heartbeat_timeout": 30}).want(201)
		if vals, _ := list[service](c.do("GET", "/services?tag="+url.QueryEscape(tag), nil).want(200)); len(vals) != 1 {
			t.Errorf("?tag=%q: %d services, want the one created with it", tag, len(vals))
		}
	}
}
