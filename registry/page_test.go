package registry_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/registry"
)

// A 2xx answer that is not a list (a proxy's page, an empty body) is an
// error, not an empty list: the cache keeps serving the last good one,
// stale, where it had served none.
func TestNonListAnswerIsAnError(t *testing.T) {
	t.Parallel()
	p, c := proxied(t, "cache-empty", testserver.Options{})
	ctx := testContext(t)
	for _, id := range []string{"www-1", "www-2"} {
		if _, err := c.CreateService(ctx, registry.Service{ID: id, HeartbeatTimeout: 120}); err != nil {
			t.Fatal(err)
		}
	}
	cache := registry.NewServicesCache(c, registry.CacheOptions{RefreshInterval: time.Nanosecond})
	if got, err := cache.Get(ctx); err != nil || len(got.Services) != 2 {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	p.fail(rule{match: "GET /v1.0/", n: 1, status: http.StatusOK}) // 200, a fault's body
	if got, err := cache.Get(ctx); err != nil || len(got.Services) != 2 || !got.Stale {
		t.Errorf("Get after a 200 that is no list: %d services, stale %v, %v, %v; want the last good list (2), stale",
			len(got.Services), got.Stale, got.Err, err)
	}
	for _, path := range []string{"services", "events"} {
		p.fail(rule{match: "GET /v1.0/", n: 1, status: http.StatusOK})
		var err error
		if path == "services" {
			_, err = c.ListServicesPage(ctx, registry.ServiceListOptions{})
		} else {
			_, err = c.ListEventsPage(ctx, registry.EventListOptions{})
		}
		if err == nil || !strings.Contains(err.Error(), "without a list") {
			t.Errorf("a page of %s answered 200 without a list: %v; want an error", path, err)
		}
	}
}

// A registry whose next_marker comes back (a→b→a) ends a list with an
// error, rather than yielding the same values for ever.
func TestNextMarkerLoop(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		id, next := r.URL.Query().Get("marker"), "svc-b"
		if id == "" {
			id = "svc-a"
		}
		if id == "svc-b" {
			next = "svc-a"
		}
		fmt.Fprintf(w, `{"values":[{"id":%q}],"metadata":{"next_marker":%q}}`, id, next)
	}))
	defer api.Close()
	c, err := registry.New(registry.Config{URL: api.URL + "/v1.0", Token: "t", Tenant: "1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	seen := 0
	for _, err = range c.ListServices(context.Background(), registry.ServiceListOptions{}) {
		if err != nil {
			break
		}
		if seen++; seen > 10 {
			t.Fatalf("%d services from a registry of two (%d requests)", seen, n.Load())
		}
	}
	if err == nil || !strings.Contains(err.Error(), "pages in a loop") {
		t.Errorf("the list ended with %v after %d services; want the loop's error", err, seen)
	}
}

// ListEvents with Wait long-polls its first page only: a later page
// starts at an event not seen yet, which a long-poll would not count as
// new, and would wait its whole wait for.
func TestListEventsWaitsOnTheFirstPageOnly(t *testing.T) {
	t.Parallel()
	p, c := proxied(t, "listwait", testserver.Options{})
	ctx := testContext(t)
	page, err := c.ListServicesPage(ctx, registry.ServiceListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"e-1", "e-2", "e-3"} {
		if _, err := c.CreateService(ctx, registry.Service{ID: id, HeartbeatTimeout: 120}); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for _, err := range c.ListEvents(ctx, registry.EventListOptions{Marker: page.FeedMarker, Limit: 2, Wait: time.Minute}) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 3 {
			break
		}
	}
	if got := p.count("wait=", 0); got != 1 {
		t.Errorf("%d event requests with a wait; want 1, the first page's", got)
	}
}
