package registry_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

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

// A token is refreshed a tenth of its life before it expires; a refresh
// that fails then (the identity service down a moment) leaves the calls
// on the token, which is still valid.
func TestRefreshFailureKeepsTheValidToken(t *testing.T) {
	t.Parallel()
	p, c := proxied(t, "refresh-fail", testserver.Options{TokenTTL: 2 * time.Second})
	ctx := testContext(t)
	tok, err := c.Authenticate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Past the refresh time (0.2 s before the expiry), before the expiry.
	time.Sleep(time.Until(tok.Expires.Add(-150 * time.Millisecond)))
	p.fail(rule{match: "POST /v2.0/tokens", n: 100, status: http.StatusServiceUnavailable})
	if _, err := c.Limits(ctx); err != nil && time.Now().Before(tok.Expires) {
		t.Errorf("a call %v before the token expires, its refresh failing: %v", time.Until(tok.Expires), err)
	}
}

// An error answer of the identity service is not an API fault: a login
// answered 404 (a proxy's) is not the registry forgetting the service,
// and a heartbeater goes on.
func TestIdentityErrorsAreNotAPIFaults(t *testing.T) {
	t.Parallel()
	p, c := proxied(t, "hb-identity", testserver.Options{TokenTTL: 2 * time.Second})
	ctx := testContext(t)
	hb, err := c.Register(ctx, registry.Service{ID: "alive-1", HeartbeatTimeout: 30}, registry.RegisterOptions{
		Heartbeat: registry.HeartbeatOptions{Interval: 100 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer hb.Stop()
	p.fail(rule{match: "POST /v2.0/tokens", n: 3, status: http.StatusNotFound})
	// The token expires within 2 s: every login then is answered 404 until
	// the rule is spent, and heartbeats go on after.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-hb.Done():
			t.Fatalf("the heartbeater stopped: %v (ErrNotFound: %v); the 404 was the identity service's", hb.Err(), errors.Is(hb.Err(), registry.ErrNotFound))
		case <-time.After(100 * time.Millisecond):
		}
	}
	if p.count("POST /v2.0/tokens", http.StatusNotFound) == 0 {
		t.Fatal("no login was answered 404: the test tested nothing")
	}
	e := &registry.Error{StatusCode: http.StatusNotFound, Identity: true}
	if errors.Is(e, registry.ErrNotFound) || !registry.Temporary(e) {
		t.Errorf("an identity service's 404: ErrNotFound %v, Temporary %v; want false, true", errors.Is(e, registry.ErrNotFound), registry.Temporary(e))
	}
	// A 400 (a username it refuses) does not pass by itself.
	if e := (&registry.Error{StatusCode: http.StatusBadRequest, Identity: true}); registry.Temporary(e) {
		t.Error("an identity service's 400 is temporary; want it final")
	}
}

// A username with a control character (a newline read with it from a
// file) is refused when the client is made, not retried at every login.
func TestUsernameWithAControlCharacter(t *testing.T) {
	t.Parallel()
	if _, err := registry.New(registry.Config{URL: "http://127.0.0.1:1/v1.0", Username: "deploy\n", APIKey: "k"}); err == nil || !strings.Contains(err.Error(), "control character") {
		t.Errorf("registry.New with the username %q: %v; want it refused", "deploy\n", err)
	}
}

// proxied starts a registry with opts behind a proxy that a test can make
// fail requests, and returns the proxy and a client of user.
func proxied(t *testing.T, user string, opts testserver.Options) (*proxy, *registry.Client) {
	t.Helper()
	p := &proxy{}
	opts.Wrap = p.wrap
	return p, newClient(t, testserver.Start(t, opts), user)
}

// An identity service (or a proxy before it) that quotes the login's
// body in its error answer does not get the API key or password into the
// error, which programs log: as sent, JSON-escaped, in the message or in
// the details.
func TestLoginErrorHidesTheCredential(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, contentType string
		answer            func(body []byte) string
	}{
		{"plain text", "text/plain", func(b []byte) string { return "bad request: " + string(b) }},
		{"keystone message", "application/json", func(b []byte) string {
			m, _ := json.Marshal(map[string]any{"badRequest": map[string]any{"code": 400, "message": "cannot read " + string(b)}})
			return string(m)
		}},
		{"fault details", "application/json", func(b []byte) string {
			var req any
			json.Unmarshal(b, &req)
			m, _ := json.Marshal(map[string]any{"type": "badRequest", "code": 400, "message": "bad", "details": req})
			return string(m)
		}},
	} {
		for _, cfg := range []registry.Config{
			{Username: "u", APIKey: "apikey-s3cret"},
			{Username: "u", Password: `pass"word<s3cret>`},
		} {
			ks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				w.Header().Set("Content-Type", tc.contentType)
				w.WriteHeader(http.StatusBadRequest)
				io.WriteString(w, tc.answer(b))
			}))
			cfg.URL, cfg.AuthURL = "http://registry.invalid/v1.0", ks.URL+"/v2.0"
			c, err := registry.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Authenticate(testContext(t))
			ks.Close()
			if err == nil {
				t.Fatalf("%s: the login succeeded", tc.name)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("%s: the error shows the credential: %v", tc.name, err)
			}
		}
	}
}
