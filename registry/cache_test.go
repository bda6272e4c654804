package registry_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/registry"
)

// TestServicesCacheOutage: while the registry is down the cache serves the
// last good list, marked stale; when it is back the cache is fresh again.
func TestServicesCacheOutage(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	c := newClient(t, srv, "cache")
	ctx := testContext(t)
	for _, s := range []registry.Service{
		{ID: "www-1", Tags: []string{"www"}, HeartbeatTimeout: 120},
		{ID: "www-2", Tags: []string{"www"}, HeartbeatTimeout: 120},
		{ID: "db-1", Tags: []string{"db"}, HeartbeatTimeout: 120},
	} {
		if _, err := c.CreateService(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	// A refresh interval this short fetches on every Get.
	cache := registry.NewServicesCache(c, registry.CacheOptions{Tag: "www", RefreshInterval: time.Nanosecond})
	got, err := cache.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ids(got.Services) == nil || !slices.Equal(ids(got.Services), []string{"www-1", "www-2"}) || got.Stale || got.Err != nil || got.FeedMarker == "" {
		t.Fatalf("Get = %+v", got)
	}
	fetched := got.FetchedAt

	srv.Stop()
	for range 3 {
		got, err = cache.Get(ctx)
		if err != nil {
			t.Fatalf("Get during the outage: %v", err)
		}
		if !got.Stale || got.Err == nil || !got.FetchedAt.Equal(fetched) || got.Age < 0 || !slices.Equal(ids(got.Services), []string{"www-1", "www-2"}) {
			t.Fatalf("Get during the outage = %+v, want the last list, stale", got)
		}
	}

	srv.Restart()
	if _, err := c.CreateService(ctx, registry.Service{ID: "www-3", Tags: []string{"www"}, HeartbeatTimeout: 120}); err != nil {
		t.Fatal(err)
	}
	// The cache retries after a backoff.
	eventually(t, "a fresh list", func() bool {
		got, err = cache.Get(ctx)
		return err == nil && !got.Stale
	})
	if !slices.Equal(ids(got.Services), []string{"www-1", "www-2", "www-3"}) || !got.FetchedAt.After(fetched) || got.Err != nil {
		t.Errorf("Get after the outage = %+v", got)
	}
}

func TestServicesCacheRefresh(t *testing.T) {
	t.Parallel()
	p, c := proxied(t, "cache-refresh", testserver.Options{})
	ctx := testContext(t)

	// Never fetched, registry failing: an error; and Gets in a loop get
	// it back without a request until the backoff has passed (they sent
	// thousands a second before a first success).
	p.fail(rule{match: "/services", n: 1, status: 500})
	cache := registry.NewServicesCache(c, registry.CacheOptions{RefreshInterval: time.Hour})
	if _, err := cache.Get(ctx); err == nil {
		t.Fatal("Get with no list and a failing registry: no error")
	}
	failed := p.count("GET /v1.0/", 0)
	if _, err := cache.Get(ctx); err == nil {
		t.Fatal("Get right after a failed first fetch: no error")
	}
	if n := p.count("GET /v1.0/", 0) - failed; n != 0 {
		t.Errorf("Get right after a failed first fetch sent %d requests; want none before the backoff", n)
	}

	var got registry.CachedServices
	var err error
	eventually(t, "a list once the backoff has passed", func() bool {
		got, err = cache.Get(ctx)
		return err == nil
	})
	if len(got.Services) != 0 || got.Stale {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if _, err := c.CreateService(ctx, registry.Service{ID: "new-1", HeartbeatTimeout: 120}); err != nil {
		t.Fatal(err)
	}
	// Within the refresh interval: the cached list, no request.
	before := p.count("GET /v1.0/", 0)
	for range 5 {
		if got, err := cache.Get(ctx); err != nil || len(got.Services) != 0 || got.Stale {
			t.Fatalf("cached Get = %+v, %v", got, err)
		}
	}
	if n := p.count("GET /v1.0/", 0) - before; n != 0 {
		t.Errorf("%d requests within the refresh interval, want 0", n)
	}
}

// TestServicesCacheMaxStale: during an outage a list older than MaxStale
// is not served; Get says why, the fetch's error wrapped.
func TestServicesCacheMaxStale(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	c := newClient(t, srv, "cache-max-stale")
	ctx := testContext(t)
	if _, err := c.CreateService(ctx, registry.Service{ID: "www-1", HeartbeatTimeout: 120}); err != nil {
		t.Fatal(err)
	}
	young := registry.NewServicesCache(c, registry.CacheOptions{RefreshInterval: time.Nanosecond, MaxStale: time.Hour})
	old := registry.NewServicesCache(c, registry.CacheOptions{RefreshInterval: time.Nanosecond, MaxStale: time.Nanosecond})
	for _, cache := range []*registry.ServicesCache{young, old} {
		if _, err := cache.Get(ctx); err != nil {
			t.Fatal(err)
		}
	}
	srv.Stop()
	for range 2 { // the failed fetch, then the backoff's answer
		if got, err := young.Get(ctx); err != nil || !got.Stale {
			t.Fatalf("within MaxStale: %+v, %v; want the last list, stale", got, err)
		}
		got, err := old.Get(ctx)
		var se *registry.StaleError
		if !errors.As(err, &se) || se.Err == nil || se.Age <= 0 || got.Services != nil {
			t.Fatalf("past MaxStale: %+v, %v; want a StaleError", got, err)
		}
	}
}

// TestServicesCacheHangingRegistry: while the registry takes requests and
// never answers, a Get after a failed fetch gets the last good list at
// once, while the next fetch goes on behind it. (Each waited out the
// fetch's time, FetchTimeout, 100 ms after the one before had given up:
// here a minute, so a Get that waits fails the test.)
func TestServicesCacheHangingRegistry(t *testing.T) {
	t.Parallel()
	const answer, fail, hang = 0, 1, 2
	var mode atomic.Int32
	var hung atomic.Int64 // requests that came while the registry hung
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load() {
		case fail:
			http.Error(w, "down", http.StatusInternalServerError)
			return
		case hang:
			hung.Add(1)
			<-r.Context().Done()
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"values":[{"id":"web-1","heartbeat_timeout":10}],"metadata":{}}`)
	}))
	defer func() {
		api.CloseClientConnections()
		api.Close()
	}()
	c := tokenClient(t, api.URL)
	cache := registry.NewServicesCache(c, registry.CacheOptions{RefreshInterval: 50 * time.Millisecond, FetchTimeout: time.Minute})
	ctx := testContext(t)
	if _, err := cache.Get(ctx); err != nil {
		t.Fatal(err)
	}
	mode.Store(fail)
	time.Sleep(60 * time.Millisecond)
	if got, err := cache.Get(ctx); err != nil || !got.Stale {
		t.Fatalf("Get while the registry fails: %+v, %v; want the last list, stale", got, err)
	}
	mode.Store(hang)
	// Gets until a fetch hangs (past the failure's backoff), and five
	// while it does.
	for after := 0; after < 5; time.Sleep(20 * time.Millisecond) {
		if hung.Load() > 0 {
			after++
		}
		done := make(chan error, 1)
		go func() {
			got, err := cache.Get(ctx)
			if err == nil && len(got.Services) != 1 {
				err = fmt.Errorf("%+v", got)
			}
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Get while the registry hangs: %v; want the last list", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("a Get waited for a fetch while the registry hung and a good list was cached")
		}
	}
	mode.Store(answer)
	api.CloseClientConnections() // the fetch that hangs
	eventually(t, "a fresh list", func() bool {
		got, err := cache.Get(ctx)
		return err == nil && !got.Stale
	})
}

// TestServicesCacheBackPastMaxStale: a Get that has no list to serve (the
// last good one is past MaxStale) waits for the fetch it starts after a
// failure: the registry back, it gets the fresh list, not a StaleError
// of the fetch that failed before.
func TestServicesCacheBackPastMaxStale(t *testing.T) {
	t.Parallel()
	var fail atomic.Bool
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"values":[{"id":"web-1","heartbeat_timeout":10}],"metadata":{}}`)
	}))
	defer api.Close()
	c := tokenClient(t, api.URL)
	cache := registry.NewServicesCache(c, registry.CacheOptions{RefreshInterval: 50 * time.Millisecond, MaxStale: 200 * time.Millisecond})
	ctx := testContext(t)
	if _, err := cache.Get(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(60 * time.Millisecond)
	fail.Store(true)
	if got, err := cache.Get(ctx); err != nil || !got.Stale {
		t.Fatalf("Get while the registry fails: %+v, %v; want the last list, stale", got, err)
	}
	fail.Store(false)
	time.Sleep(300 * time.Millisecond) // past MaxStale and the backoff
	got, err := cache.Get(ctx)
	if err != nil || got.Stale || len(got.Services) != 1 {
		t.Errorf("Get with the registry back, the last list past MaxStale: %+v, %v; want a fresh list", got, err)
	}
}
