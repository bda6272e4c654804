package registry_test

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/registry"
)

// hostRecorder is a transport that records the host of every request and
// refuses those to any host but allowed.
type hostRecorder struct {
	allowed string
	mu      sync.Mutex
	hosts   []string
}

func (h *hostRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	h.mu.Lock()
	h.hosts = append(h.hosts, r.URL.Host)
	h.mu.Unlock()
	if r.URL.Host != h.allowed {
		return nil, &url.Error{Op: r.Method, URL: r.URL.String(), Err: http.ErrNotSupported}
	}
	return http.DefaultTransport.RoundTrip(r)
}

// Without AuthURL or Region, credentials go to the identity endpoint of
// the registry the configuration names, and to no other host: the API
// URL with /v1.0, with a trailing slash, or without a path at all.
func TestIdentityFromRegistryURL(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, u := range []string{srv.APIURL, srv.APIURL + "/", srv.URL, srv.URL + "/"} {
		rec := &hostRecorder{allowed: host}
		c, err := registry.New(registry.Config{URL: u, Username: "identity-derived", APIKey: "dev",
			HTTPClient: &http.Client{Transport: rec}})
		if err != nil {
			t.Fatalf("URL %s: %v", u, err)
		}
		if _, err := c.CreateService(testContext(t), registry.Service{ID: "svc-1", HeartbeatTimeout: 30}); err != nil && !strings.Contains(err.Error(), "already exists") {
			t.Errorf("URL %s: %v", u, err)
		}
		for _, err := range c.ListServices(testContext(t), registry.ServiceListOptions{}) {
			if err != nil {
				t.Errorf("URL %s: list: %v", u, err)
			}
		}
		rec.mu.Lock()
		for _, h := range rec.hosts {
			if h != host {
				t.Errorf("URL %s: a request went to %s, a host the configuration does not name", u, h)
			}
		}
		if len(rec.hosts) < 3 {
			t.Errorf("URL %s: %d requests, want a token request and two API calls", u, len(rec.hosts))
		}
		rec.mu.Unlock()
	}
}

// With no registry URL, credentials need an explicit AuthURL or Region.
func TestIdentityNeedsAHost(t *testing.T) {
	t.Parallel()
	_, err := registry.New(registry.Config{Username: "u", APIKey: "k"})
	if err == nil || !strings.Contains(err.Error(), "AuthURL, or Region") {
		t.Errorf("New without URL, AuthURL or Region = %v, want an error naming them", err)
	}
	for _, region := range []string{"us", "uk", "UK"} {
		if _, err := registry.New(registry.Config{Username: "u", APIKey: "k", Region: region}); err != nil {
			t.Errorf("region %q: %v", region, err)
		}
	}
}
