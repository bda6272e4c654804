package registry_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/server/store"
)

func TestServices(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	c := newClient(t, srv, "services")
	ctx := testContext(t)

	token, err := c.CreateService(ctx, registry.Service{ID: "web-1", Tags: []string{"www"}, Metadata: map[string]string{"port": "80"}, HeartbeatTimeout: 30})
	if err != nil {
		t.Fatal(err)
	}
	if len(token) != 36 {
		t.Errorf("create token %q, want a 36-character UUID", token)
	}
	if _, err := c.CreateService(ctx, registry.Service{ID: "db-1", HeartbeatTimeout: 30}); err != nil {
		t.Fatal(err)
	}

	s, err := c.GetService(ctx, "web-1")
	if err != nil {
		t.Fatal(err)
	}
	want := registry.Service{ID: "web-1", Tags: []string{"www"}, Metadata: map[string]string{"port": "80"}, HeartbeatTimeout: 30}
	if fmt.Sprint(s) != fmt.Sprint(want) {
		t.Errorf("GetService = %+v, want %+v", s, want)
	}

	next, err := c.Heartbeat(ctx, "web-1", token)
	if err != nil {
		t.Fatal(err)
	}
	if next == token || len(next) != 36 {
		t.Errorf("heartbeat token %q after %q, want a new one", next, token)
	}
	// The answer was lost: the same token again gets the same next token
	// (design item 6).
	if again, err := c.Heartbeat(ctx, "web-1", token); err != nil || again != next {
		t.Errorf("repeated heartbeat = %q, %v; want %q", again, err, next)
	}
	if s, _ := c.GetService(ctx, "web-1"); s.LastSeen.IsZero() {
		t.Error("LastSeen is zero after a heartbeat")
	}

	if err := c.UpdateService(ctx, "web-1", registry.ServicePatch{Tags: []string{}, Metadata: map[string]string{"a": "b"}, HeartbeatTimeout: 15}); err != nil {
		t.Fatal(err)
	}
	s, _ = c.GetService(ctx, "web-1")
	if len(s.Tags) != 0 || s.Metadata["a"] != "b" || len(s.Metadata) != 1 || s.HeartbeatTimeout != 15 {
		t.Errorf("after update: %+v", s)
	}
	if err := c.UpdateService(ctx, "db-1", registry.ServicePatch{Tags: []string{"db", "primary"}}); err != nil {
		t.Fatal(err)
	}

	var ids []string
	for s := range c.ListServices(ctx, registry.ServiceListOptions{}) {
		ids = append(ids, s.ID)
	}
	if !slices.Equal(ids, []string{"db-1", "web-1"}) {
		t.Errorf("ListServices = %v", ids)
	}
	tagged := collect(t, c.ListServices(ctx, registry.ServiceListOptions{Tag: "db"}))
	if len(tagged) != 1 || tagged[0].ID != "db-1" {
		t.Errorf("ListServices(tag db) = %+v", tagged)
	}

	if err := c.DeleteService(ctx, "web-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetService(ctx, "web-1"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("GetService after delete: %v, want ErrNotFound", err)
	}
	if err := c.DeleteService(ctx, "web-1"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("DeleteService twice: %v, want ErrNotFound", err)
	}
	if _, err := c.Heartbeat(ctx, "web-1", next); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Heartbeat after delete: %v, want ErrNotFound", err)
	}
}

func TestFaults(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Limits: store.Limits{Services: 1, ConfigValues: 1}})
	c := newClient(t, srv, "faults")
	ctx := testContext(t)
	if _, err := c.CreateService(ctx, registry.Service{ID: "only-one", HeartbeatTimeout: 30}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetConfig(ctx, "only-value", "v"); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		call    func() error
		is      error // nil: none of the sentinels
		status  int
		typ     string
		method  string
		path    string
		details string
	}{
		{"missing service", func() error { _, err := c.GetService(ctx, "nope-1"); return err },
			registry.ErrNotFound, 404, "notFoundError", "GET", "/services/nope-1", `Object "Service" with key "nope-1" does not exist`},
		{"duplicate", func() error {
			_, err := c.CreateService(ctx, registry.Service{ID: "only-one", HeartbeatTimeout: 30})
			return err
		}, registry.ErrServiceExists, 400, "serviceWithThisIdExists", "POST", "/services", "Service with id only-one already exists."},
		{"service limit", func() error {
			_, err := c.CreateService(ctx, registry.Service{ID: "second", HeartbeatTimeout: 30})
			return err
		}, registry.ErrLimitReached, 400, "limitReached", "POST", "/services", "Limit for resource service has been reached. Maximum allowed objects: 1"},
		{"config limit", func() error { return c.SetConfig(ctx, "second-value", "v") },
			registry.ErrLimitReached, 400, "limitReached", "PUT", "/configuration/second-value", "Limit for resource configuration_value has been reached. Maximum allowed objects: 1"},
		{"invalid id", func() error {
			_, err := c.CreateService(ctx, registry.Service{ID: "x", HeartbeatTimeout: 30})
			return err
		}, nil, 400, "badRequest", "POST", "/services", "String is not in range (3..65)"},
		{"unknown token", func() error {
			_, err := c.Heartbeat(ctx, "only-one", "11111111-1111-1111-8111-111111111111")
			return err
		}, registry.ErrNotFound, 404, "notFoundError", "POST", "/services/only-one/heartbeat", `Object "HeartbeatMarker" with key "11111111-1111-1111-8111-111111111111" does not exist`},
		{"missing config", func() error { _, err := c.GetConfig(ctx, "/prod/missing"); return err },
			registry.ErrNotFound, 404, "notFoundError", "GET", "/configuration//prod/missing", `Object "ConfigurationValue" with key "/prod/missing" does not exist`},
		{"bad limit", func() error {
			_, err := c.ListServicesPage(ctx, registry.ServiceListOptions{Limit: 5000})
			return err
		}, nil, 400, "invalidLimit", "GET", "/services?limit=5000", "Invalid limit 5000. Minimum limit is 1 and maximum limit is 1000."},
	}
	sentinels := []error{registry.ErrNotFound, registry.ErrServiceExists, registry.ErrLimitReached, registry.ErrRateLimited, registry.ErrUnauthorized, registry.ErrMarkerExpired}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var e *registry.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T), want a *registry.Error", err, err)
			}
			for _, s := range sentinels {
				if got := errors.Is(err, s); got != (s == tt.is) {
					t.Errorf("errors.Is(err, %v) = %v", s, got)
				}
			}
			if e.StatusCode != tt.status || e.Code != tt.status || e.Type != tt.typ || e.Method != tt.method || e.Details != tt.details {
				t.Errorf("got status %d code %d type %q method %q details %q", e.StatusCode, e.Code, e.Type, e.Method, e.Details)
			}
			if !strings.HasSuffix(e.URL, tt.path) || e.TxnID == "" {
				t.Errorf("URL %q (want suffix %q), txnId %q", e.URL, tt.path, e.TxnID)
			}
			if !strings.Contains(err.Error(), tt.details) {
				t.Errorf("message %q does not say %q", err, tt.details)
			}
		})
	}
}

// A write past the account's write rate is ErrRateLimited, and carries
// the registry's Retry-After, so that a caller can wait it out; other
// faults carry none.
func TestRateLimitRetryAfter(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{WriteRate: 0.01, WriteBurst: 1})
	c := newClient(t, srv, "slow-writer")
	ctx := testContext(t)
	if err := c.SetConfig(ctx, "first-value", "v"); err != nil {
		t.Fatal(err)
	}
	err := c.SetConfig(ctx, "second-value", "v")
	var e *registry.Error
	if !errors.As(err, &e) || !errors.Is(err, registry.ErrRateLimited) || !registry.Temporary(err) {
		t.Fatalf("second write: %v, want a temporary *registry.Error matching ErrRateLimited", err)
	}
	// 1 write in 100 s: the next one is about 100 s away.
	if e.RetryAfter < 90*time.Second || e.RetryAfter > 101*time.Second {
		t.Errorf("RetryAfter = %v, want about 100s", e.RetryAfter)
	}
	_, err = c.GetService(ctx, "nope-1")
	if !errors.As(err, &e) || e.RetryAfter != 0 {
		t.Errorf("a 404: %v, RetryAfter %v, want 0", err, e.RetryAfter)
	}
}

func TestPagination(t *testing.T) {
	t.Parallel()
	p, c := proxied(t, "pages", testserver.Options{})
	ctx := testContext(t)

	var want []string
	for i := range 120 {
		id := fmt.Sprintf("svc-%03d", i)
		want = append(want, id)
		if _, err := c.CreateService(ctx, registry.Service{ID: id, HeartbeatTimeout: 120, Tags: []string{"t" + fmt.Sprint(i%2)}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		if err := c.SetConfig(ctx, fmt.Sprintf("/app/key-%02d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name  string
		list  func() []string
		want  []string
		pages int
		path  string
	}{
		{"services default page size", func() []string { return ids(collect(t, c.ListServices(ctx, registry.ServiceListOptions{}))) }, want, 2, "GET /v1.0/"},
		{"services limit 7", func() []string {
			return ids(collect(t, c.ListServices(ctx, registry.ServiceListOptions{Limit: 7})))
		}, want, 18, "limit=7"},
		{"services by tag", func() []string {
			return ids(collect(t, c.ListServices(ctx, registry.ServiceListOptions{Tag: "t1", Limit: 25})))
		}, odd(want), 3, "limit=25"},
		{"services from marker", func() []string {
			return ids(collect(t, c.ListServices(ctx, registry.ServiceListOptions{Marker: "svc-100", Limit: 11})))
		}, want[100:], 2, "limit=11"},
		{"config limit 3", func() []string {
			var out []string
			for v := range c.ListConfig(ctx, registry.ConfigListOptions{Namespace: "app", Limit: 3}) {
				out = append(out, v.ID)
			}
			return out
		}, configIDs(10), 4, "/configuration/app/?limit=3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := p.count(tt.path, 0)
			if got := tt.list(); !slices.Equal(got, tt.want) {
				t.Errorf("listed %d: %v\nwant %d: %v", len(got), got, len(tt.want), tt.want)
			}
			if tt.path != "GET /v1.0/" {
				if n := p.count(tt.path, 0) - before; n != tt.pages {
					t.Errorf("%d page requests, want %d", n, tt.pages)
				}
			}
		})
	}

	page, err := c.ListServicesPage(ctx, registry.ServiceListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Values) != 100 || page.NextMarker != "svc-100" || page.FeedMarker == "" {
		t.Errorf("first page: %d values, next %q, feed marker %q", len(page.Values), page.NextMarker, page.FeedMarker)
	}

	// The events feed pages the same way, in commit order.
	var joins []string
	for ev, err := range c.ListEvents(ctx, registry.EventListOptions{Type: registry.ServiceJoin, Limit: 50}) {
		if err != nil {
			t.Fatal(err)
		}
		s, err := ev.Service()
		if err != nil {
			t.Fatal(err)
		}
		joins = append(joins, s.ID)
	}
	if !slices.Equal(joins, want) {
		t.Errorf("join events %v\nwant %v", joins, want)
	}

	// Stopping early stops fetching.
	before := p.count("limit=5", 0)
	for range c.ListServices(ctx, registry.ServiceListOptions{Limit: 5}) {
		break
	}
	if n := p.count("limit=5", 0) - before; n != 1 {
		t.Errorf("%d requests for one value, want 1", n)
	}
}

func ids(ss []registry.Service) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.ID)
	}
	return out
}

func odd(ids []string) []string {
	var out []string
	for i, id := range ids {
		if i%2 == 1 {
			out = append(out, id)
		}
	}
	return out
}

func configIDs(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("/app/key-%02d", i))
	}
	return out
}

func TestConfiguration(t *testing.T) {
	t.Parallel()
	p, c := proxied(t, "config", testserver.Options{})
	ctx := testContext(t)

	values := map[string]string{
		"/production/cassandra/listen_ip":   "10.0.0.1",
		"/production/cassandra/listen_port": "9160",
		"/production/cassandra2/xyz":        "y",
		"/production/zookeeper/hosts":       "zk1,zk2",
		"my-value-1":                        "plain",
	}
	for id, v := range values {
		if err := c.SetConfig(ctx, id, v); err != nil {
			t.Fatalf("SetConfig(%s): %v", id, err)
		}
	}
	v, err := c.GetConfig(ctx, "/production/cassandra/listen_ip")
	if err != nil {
		t.Fatal(err)
	}
	if v != (registry.ConfigValue{ID: "/production/cassandra/listen_ip", Value: "10.0.0.1"}) {
		t.Errorf("GetConfig = %+v", v)
	}
	if p.count("GET /v1.0/", 0) == 0 || p.count("/configuration//production/cassandra/listen_ip", 0) != 2 {
		t.Errorf("a namespaced id did not use the // URL form: %v", p.requests)
	}
	if v, err := c.GetConfig(ctx, "my-value-1"); err != nil || v.Value != "plain" {
		t.Errorf("GetConfig(my-value-1) = %+v, %v", v, err)
	}

	tests := []struct {
		namespace string
		want      []string
	}{
		{"", []string{"/production/cassandra/listen_ip", "/production/cassandra/listen_port", "/production/cassandra2/xyz", "/production/zookeeper/hosts", "my-value-1"}},
		// A plain string prefix (spec §7.8): cassandra2 is in it.
		{"/production/cassandra/", []string{"/production/cassandra/listen_ip", "/production/cassandra/listen_port", "/production/cassandra2/xyz"}},
		{"production/cassandra", []string{"/production/cassandra/listen_ip", "/production/cassandra/listen_port", "/production/cassandra2/xyz"}},
		{"/production/zookeeper", []string{"/production/zookeeper/hosts"}},
		{"/staging", nil},
	}
	for _, tt := range tests {
		var got []string
		for v, err := range c.ListConfig(ctx, registry.ConfigListOptions{Namespace: tt.namespace}) {
			if err != nil {
				t.Fatal(err)
			}
			if v.Value != values[v.ID] {
				t.Errorf("%s = %q, want %q", v.ID, v.Value, values[v.ID])
			}
			got = append(got, v.ID)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("ListConfig(%q) = %v, want %v", tt.namespace, got, tt.want)
		}
	}
	page, err := c.ListConfigPage(ctx, registry.ConfigListOptions{Limit: 1})
	if err != nil || page.FeedMarker == "" || page.NextMarker != "/production/cassandra/listen_port" {
		t.Errorf("ListConfigPage = %+v, %v", page, err)
	}

	if err := c.SetConfig(ctx, "/production/cassandra/listen_ip", "10.0.0.2"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteConfig(ctx, "/production/cassandra/listen_ip"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetConfig(ctx, "/production/cassandra/listen_ip"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("GetConfig after delete: %v, want ErrNotFound", err)
	}
	if err := c.DeleteConfig(ctx, "/production/cassandra/listen_ip"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("DeleteConfig twice: %v, want ErrNotFound", err)
	}

	// The feed holds the changes, with their payloads.
	var changes []string
	for ev, err := range c.ListEvents(ctx, registry.EventListOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		ch, err := ev.ConfigChange()
		if err != nil {
			t.Fatal(err)
		}
		if ch.ID == "/production/cassandra/listen_ip" {
			changes = append(changes, fmt.Sprintf("%s %s->%s", ev.Type, deref(ch.OldValue), deref(ch.NewValue)))
		}
	}
	want := []string{"configuration_value.update <nil>->10.0.0.1", "configuration_value.update 10.0.0.1->10.0.0.2", "configuration_value.remove 10.0.0.2-><nil>"}
	if !slices.Equal(changes, want) {
		t.Errorf("events %v\nwant %v", changes, want)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

func TestEvents(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	c := newClient(t, srv, "events")
	ctx := testContext(t)

	page, err := c.ListServicesPage(ctx, registry.ServiceListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	feed := page.FeedMarker
	for _, id := range []string{"ev-a", "ev-b", "ev-c"} {
		if _, err := c.CreateService(ctx, registry.Service{ID: id, HeartbeatTimeout: 60}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.UpdateService(ctx, "ev-b", registry.ServicePatch{Tags: []string{"x"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteService(ctx, "ev-c"); err != nil {
		t.Fatal(err)
	}
	all := collect(t, c.ListEvents(ctx, registry.EventListOptions{Marker: feed}))
	var got []string
	for _, ev := range all {
		s, err := ev.Service()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(ev.Type)+" "+s.ID)
	}
	want := []string{"service.join ev-a", "service.join ev-b", "service.join ev-c", "service.update ev-b", "service.remove ev-c"}
	if !slices.Equal(got, want) {
		t.Fatalf("events %v\nwant %v", got, want)
	}

	tests := []struct {
		name string
		opts registry.EventListOptions
		want int
	}{
		{"marker is inclusive", registry.EventListOptions{Marker: all[1].ID}, 4},
		{"last event", registry.EventListOptions{Marker: all[4].ID}, 1},
		{"type", registry.EventListOptions{Marker: feed, Type: registry.ServiceJoin}, 3},
		{"type update", registry.EventListOptions{Marker: feed, Type: registry.ServiceUpdate}, 1},
		{"default window", registry.EventListOptions{}, 5},
	}
	for _, tt := range tests {
		if got := collect(t, c.ListEvents(ctx, tt.opts)); len(got) != tt.want {
			t.Errorf("%s: %d events, want %d", tt.name, len(got), tt.want)
		}
	}

	// A long-poll is answered when an event comes.
	type result struct {
		page registry.EventPage
		err  error
	}
	done := make(chan result, 1)
	go func() {
		p, err := c.ListEventsPage(ctx, registry.EventListOptions{Marker: all[4].ID, Wait: 20 * time.Second})
		done <- result{p, err}
	}()
	// The poll may arrive after the create; it answers at once then.
	if _, err := c.CreateService(ctx, registry.Service{ID: "ev-d", HeartbeatTimeout: 60}); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if len(r.page.Values) != 2 || r.page.Values[1].Type != registry.ServiceJoin || r.page.Wait <= 0 {
		t.Errorf("long-poll answer: %+v", r.page)
	}
}

func TestLimits(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	c := newClient(t, srv, "limits")
	l, err := c.Limits(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if l.Resource["service"] != 200 || l.Resource["configuration_value"] != 1000 {
		t.Errorf("resource limits %v", l.Resource)
	}
	if r, ok := l.Rate["/.*"]; !ok || r.Limit != 500000 || r.Window != "24.0 hours" {
		t.Errorf("rate limits %v", l.Rate)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  registry.Config
		want string
	}{
		{"no credentials", registry.Config{}, "give a Token and Tenant"},
		{"token without tenant", registry.Config{Token: "t"}, "needs its Tenant"},
		{"username without key", registry.Config{Username: "u"}, "give a Token and Tenant"},
		{"bad region", registry.Config{Username: "u", APIKey: "k", Region: "mars"}, "Invalid region: mars"},
		{"bad URL", registry.Config{URL: "ftp://x", Token: "t", Tenant: "1"}, "not an http(s) URL"},
	}
	for _, tt := range tests {
		if _, err := registry.New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: New = %v, want an error saying %q", tt.name, err, tt.want)
		}
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	p := &proxy{}
	srv := testserver.Start(t, testserver.Options{Wrap: p.wrap})
	ctx := testContext(t)
	token, tenant := srv.Token("auth-static")

	t.Run("static token", func(t *testing.T) {
		c, err := registry.New(registry.Config{URL: srv.APIURL, Token: token, Tenant: tenant})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Limits(ctx); err != nil {
			t.Fatal(err)
		}
		if tok, err := c.Authenticate(ctx); err != nil || tok.ID != token || tok.Tenant != tenant {
			t.Errorf("Authenticate = %+v, %v", tok, err)
		}
	})
	t.Run("bad static token", func(t *testing.T) {
		c, _ := registry.New(registry.Config{URL: srv.APIURL, Token: "bad", Tenant: tenant})
		before := p.count("/limits", 0)
		if _, err := c.Limits(ctx); !errors.Is(err, registry.ErrUnauthorized) {
			t.Errorf("Limits with a bad token: %v, want ErrUnauthorized", err)
		}
		if n := p.count("/limits", 0) - before; n != 1 {
			t.Errorf("%d requests, want 1: a static token cannot be renewed", n)
		}
	})
	t.Run("bad API key", func(t *testing.T) {
		c, _ := registry.New(registry.Config{URL: srv.APIURL, AuthURL: srv.AuthURL, Username: "auth-bad", APIKey: "wrong"})
		_, err := c.Limits(ctx)
		var e *registry.Error
		if !errors.Is(err, registry.ErrUnauthorized) || !errors.As(err, &e) || e.Type != "unauthorized" || e.Method != "POST" {
			t.Errorf("Limits with a bad key: %v, want the identity service's 401", err)
		}
	})
	t.Run("password", func(t *testing.T) {
		c, _ := registry.New(registry.Config{URL: srv.APIURL, AuthURL: srv.AuthURL, Username: "auth-static", Password: "dev"})
		tok, err := c.Authenticate(ctx)
		if err != nil || tok.Tenant != tenant || tok.Expires.IsZero() {
			t.Errorf("Authenticate = %+v, %v; want tenant %s and an expiry", tok, err, tenant)
		}
	})
	t.Run("tenant override", func(t *testing.T) {
		c, _ := registry.New(registry.Config{URL: srv.APIURL, AuthURL: srv.AuthURL, Username: "auth-static", APIKey: "dev", Tenant: "424242"})
		if tok, err := c.Authenticate(ctx); err != nil || tok.Tenant != "424242" {
			t.Errorf("Authenticate = %+v, %v", tok, err)
		}
	})
}

// TestReauthenticateOn401 revokes the client's token behind its back: the
// next call gets a 401, authenticates again and succeeds.
func TestReauthenticateOn401(t *testing.T) {
	t.Parallel()
	p := &proxy{}
	srv := testserver.Start(t, testserver.Options{Wrap: p.wrap})
	c := newClient(t, srv, "reauth")
	ctx := testContext(t)
	if _, err := c.CreateService(ctx, registry.Service{ID: "svc-1", HeartbeatTimeout: 60}); err != nil {
		t.Fatal(err)
	}
	tok, err := c.Authenticate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("DELETE", srv.AuthURL+"/tokens/"+tok.ID, nil)
	req.Header.Set("X-Auth-Token", tok.ID)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("revoke: %s", resp.Status)
	}

	if _, err := c.GetService(ctx, "svc-1"); err != nil {
		t.Fatalf("GetService after the token was revoked: %v", err)
	}
	if n := p.count("GET /v1.0/", http.StatusUnauthorized); n != 1 {
		t.Errorf("%d answers 401, want 1", n)
	}
	if n := p.count("POST /v2.0/tokens", 0); n != 2 {
		t.Errorf("%d authentications, want 2", n)
	}
	if tok2, _ := c.Authenticate(ctx); tok2.ID == tok.ID {
		t.Error("the client kept the revoked token")
	}
}

// TestTokenRefresh uses tokens that live thirty seconds: the client replaces
// them before they expire, so the registry never refuses one.
func TestTokenRefresh(t *testing.T) {
	t.Parallel()
	// The client refreshes a tenth of the token's life before it expires:
	// 3 s here, for a request to reach the registry on the token it was
	// given. A loaded machine can hold one for over a second (with a 10 s
	// life, 1 s was not always enough). The second login, the refresh,
	// comes some 27 s after the first, hence the longer wait.
	p, c := proxied(t, "refresh", testserver.Options{TokenTTL: 30 * time.Second})
	ctx := testContext(t)
	eventuallyWithin(t, 50*time.Second, "a refresh of the token", func() bool {
		if _, err := c.Limits(ctx); err != nil {
			t.Fatal(err)
		}
		return p.count("POST /v2.0/tokens", http.StatusOK) >= 2 // a retried login is no refresh
	})
	if n := p.count("/v1.0/", http.StatusUnauthorized); n != 0 {
		t.Errorf("%d answers 401: the client used an expired token", n)
	}
}

// TestConcurrentAuthentication: calls that need a token at the same time
// share one authentication.
func TestConcurrentAuthentication(t *testing.T) {
	t.Parallel()
	p, c := proxied(t, "merge", testserver.Options{})
	ctx := testContext(t)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := c.Limits(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := p.count("POST /v2.0/tokens", 0); n != 1 {
		t.Errorf("%d authentications, want 1", n)
	}
}

// TestConnectionReuse: heartbeats, polls and calls, faults included, all go
// over one TCP connection.
func TestConnectionReuse(t *testing.T) {
	t.Parallel()
	var conns atomic.Int32
	srv := testserver.Start(t, testserver.Options{ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}})
	c := newClient(t, srv, "reuse")
	ctx := testContext(t)

	var beats atomic.Int32
	enough, release := make(chan struct{}), make(chan struct{})
	// Stop cancels a heartbeat on its way, and with it its connection: the
	// heartbeater is held after its 20th beat until its context has ended,
	// so that it sends no other.
	hctx, hcancel := context.WithCancel(ctx)
	hb, err := c.Register(hctx, registry.Service{ID: "reuse-1", HeartbeatTimeout: 30}, registry.RegisterOptions{
		Heartbeat: registry.HeartbeatOptions{Interval: 10 * time.Millisecond, OnBeat: func(b registry.Beat) {
			if b.Err != nil {
				t.Errorf("heartbeat: %v", b.Err)
			}
			if beats.Add(1) == 20 {
				close(enough)
				<-release
			}
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	<-enough
	hcancel()
	close(release)
	hb.Stop()

	for range 10 {
		if _, err := c.ListEventsPage(ctx, registry.EventListOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.GetService(ctx, "missing"); !errors.Is(err, registry.ErrNotFound) {
			t.Fatal(err)
		}
		for _, err := range c.ListServices(ctx, registry.ServiceListOptions{}) {
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := c.SetConfig(ctx, "key-1", "v"); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

// TestRequestForm checks what goes on the wire (spec §11.1, Node column):
// base URL + "/" + tenant + path, and the headers on every request.
func TestRequestForm(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []*http.Request
	srv := testserver.Start(t, testserver.Options{Wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = append(seen, r.Clone(r.Context()))
			mu.Unlock()
			h.ServeHTTP(w, r)
		})
	}})
	c := newClient(t, srv, "form")
	ctx := testContext(t)
	tok, err := c.Authenticate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetService(ctx, "missing"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatal(err)
	}
	if _, err := c.GetConfig(ctx, "/a-ns/key"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 3 || seen[0].URL.Path != "/v2.0/tokens" {
		t.Fatalf("requests %v", seen)
	}
	for i, want := range []string{"/v1.0/" + tok.Tenant + "/services/missing", "/v1.0/" + tok.Tenant + "/configuration//a-ns/key"} {
		r := seen[i+1]
		if r.RequestURI != want {
			t.Errorf("request %d: %s, want %s", i, r.RequestURI, want)
		}
		if r.Header.Get("X-Auth-Token") != tok.ID || r.Header.Get("Content-Type") != "application/json" || !strings.HasPrefix(r.Header.Get("User-Agent"), "svcreg/") {
			t.Errorf("request %d headers: %v", i, r.Header)
		}
	}
}

// TestKeystoneTenant: where the tenant comes from in identity services
// other than svcreg's (spec §3.1).
func TestKeystoneTenant(t *testing.T) {
	t.Parallel()
	catalog := `"serviceCatalog":[{"name":"cloudServersOpenStack","endpoints":[{"tenantId":"1"}]},{"name":"cloudServers","endpoints":[{"tenantId":"7777"}]}]`
	tests := []struct {
		name       string
		answer     string
		tenant     string // Config.Tenant
		wantTenant string
		wantErr    string
	}{
		{"token tenant", `{"access":{"token":{"id":"t","expires":"2099-01-01T00:00:00.000-05:00","tenant":{"id":"123"}},` + catalog + `}}`, "", "123", ""},
		{"numeric tenant", `{"access":{"token":{"id":"t","tenant":{"id":123}}}}`, "", "123", ""},
		{"catalog", `{"access":{"token":{"id":"t","expires":"Tue May 21 2013"},` + catalog + `}}`, "", "7777", ""},
		{"configured", `{"access":{"token":{"id":"t"}}}`, "55", "55", ""},
		{"no tenant", `{"access":{"token":{"id":"t"}}}`, "", "", "named no tenant"},
		{"no token", `{"access":{}}`, "", "", "no access.token.id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != "POST" || r.URL.Path != "/v2.0/tokens" {
					http.NotFound(w, r)
					return
				}
				w.WriteHeader(http.StatusNonAuthoritativeInfo) // 203 is a success too
				w.Write([]byte(tt.answer))
			}))
			defer ks.Close()
			c, err := registry.New(registry.Config{URL: "http://registry.invalid/v1.0", AuthURL: ks.URL + "/v2.0/", Username: "u", APIKey: "k", Tenant: tt.tenant})
			if err != nil {
				t.Fatal(err)
			}
			tok, err := c.Authenticate(testContext(t))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Authenticate = %+v, %v; want an error saying %q", tok, err, tt.wantErr)
				}
				return
			}
			if err != nil || tok.ID != "t" || tok.Tenant != tt.wantTenant {
				t.Errorf("Authenticate = %+v, %v; want tenant %s", tok, err, tt.wantTenant)
			}
		})
	}
}

// A registry URL that is refused is named in the error without what may
// be its password, whether or not it parses.
func TestURLErrorsHideThePassword(t *testing.T) {
	t.Parallel()
	for _, u := range []string{
		"http://operator:S3cret/Passw0rd@reg.example/v1.0",
		"ftp://operator:S3cretPassw0rd@reg.example/v1.0",
		"http://operator:S3cret%zzPassw0rd@reg.example/v1.0",
		"http://operator:S3cret Passw0rd@reg.example:x/v1.0",
	} {
		_, err := registry.New(registry.Config{URL: u, Username: "operator", APIKey: "k"})
		if err == nil {
			t.Errorf("New(%q) accepted the URL", u)
			continue
		}
		if strings.Contains(err.Error(), "S3cret") || strings.Contains(err.Error(), "Passw0rd") {
			t.Errorf("New(%q): %v; want the password left out", u, err)
		}
		if !strings.Contains(err.Error(), "reg.example") {
			t.Errorf("New(%q): %v; want the host named", u, err)
		}
	}
}
