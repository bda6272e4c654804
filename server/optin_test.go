package server_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/svcreg/svcreg/internal/testserver"
)

// Design item 1: service.update is opt-in. A client that does not ask for
// it (the official ones) reads the feed as the original would have written
// it: no service.update in any page, pages full, next_marker and next_href
// leading only to the original types, and long-polls that do not wake for
// an update. A client that sends include=service.update (or type=) sees it,
// and next_href keeps asking for it. Checked on both the waiting and the
// parked long-poll paths.
func TestServiceUpdateOptIn(t *testing.T) { onEachStore(t, testServiceUpdateOptIn) }

func testServiceUpdateOptIn(t *testing.T, kind string) {
	t.Parallel()
	for _, s := range pollModes(t, kind) {
		t.Run(s.name+": pages and markers", func(t *testing.T) {
			t.Parallel()
			c := s.login(t, t.Name())
			c.create("svc-1", 30)
			c.do("PUT", "/services/svc-1", map[string]any{"tags": []string{"a"}}).want(204)
			c.do("PUT", "/services/svc-1", map[string]any{"tags": []string{"b"}}).want(204)
			c.setConfig("key-1", "v")
			c.do("PUT", "/services/svc-1", map[string]any{"tags": []string{"c"}}).want(204)
			c.do("DELETE", "/services/svc-1", nil).want(204)

			original := []string{"service.join svc-1", "configuration_value.update key-1", "service.remove svc-1"}
			if got := summary(c.events("")); !slices.Equal(got, original) {
				t.Errorf("feed without opt-in %q, want %q", got, original)
			}
			// Page by two: the first page is full, and following next_href
			// (as the official clients do) never meets a service.update.
			var got []string
			path := "/events?limit=2"
			for range 5 {
				evs, meta := list[event](c.do("GET", path, nil))
				got = append(got, summary(evs)...)
				if meta.NextHref == nil {
					break
				}
				if len(evs) != 2 {
					t.Errorf("page %q with a next page is not full", summary(evs))
				}
				if strings.Contains(*meta.NextHref, "include") {
					t.Errorf("next_href %q asks for more than the request did", *meta.NextHref)
				}
				next := *meta.NextHref
				path = next[strings.Index(next, "/events"):]
				for _, ev := range c.events("?marker=" + *meta.NextMarker + "&include=service.update")[:1] {
					if ev.Type == "service.update" {
						t.Errorf("next_marker %s points at a service.update", *meta.NextMarker)
					}
				}
			}
			if !slices.Equal(got, original) {
				t.Errorf("pages without opt-in %q, want %q", got, original)
			}

			all := []string{"service.join svc-1", "service.update svc-1", "service.update svc-1",
				"configuration_value.update key-1", "service.update svc-1", "service.remove svc-1"}
			if got := summary(c.events("?include=service.update")); !slices.Equal(got, all) {
				t.Errorf("feed with include=service.update %q, want %q", got, all)
			}
			got = nil
			path = "/events?limit=4&include=service.update"
			for range 5 {
				evs, meta := list[event](c.do("GET", path, nil))
				got = append(got, summary(evs)...)
				if meta.NextHref == nil {
					break
				}
				if !strings.Contains(*meta.NextHref, "include=service.update") {
					t.Errorf("next_href %q drops the opt-in", *meta.NextHref)
				}
				path = (*meta.NextHref)[strings.Index(*meta.NextHref, "/events"):]
			}
			if !slices.Equal(got, all) {
				t.Errorf("pages with include=service.update %q, want %q", got, all)
			}
			if got := summary(c.events("?type=service.update")); len(got) != 3 {
				t.Errorf("type=service.update: %q", got)
			}
		})
		t.Run(s.name+": long-polls", func(t *testing.T) {
			t.Parallel()
			c := s.login(t, t.Name())
			c.create("svc-1", 30)
			marker := c.events("")[0].ID

			plain := c.longPoll("?marker=" + marker + "&wait=30")
			optIn := c.longPoll("?marker=" + marker + "&wait=30&include=service.update")
			stillWaiting(t, plain)
			c.do("PUT", "/services/svc-1", map[string]any{"metadata": map[string]string{"k": "v"}}).want(204)
			if got, want := summary(answer(t, optIn)), []string{"service.join svc-1", "service.update svc-1"}; !slices.Equal(got, want) {
				t.Errorf("opted-in long-poll answer %q, want %q", got, want)
			}
			stillWaiting(t, plain) // an update is no news to it
			c.setConfig("key-1", "v")
			if got, want := summary(answer(t, plain)), []string{"service.join svc-1", "configuration_value.update key-1"}; !slices.Equal(got, want) {
				t.Errorf("long-poll answer %q, want %q", got, want)
			}
		})
	}
}

// The opt-in parameter takes one value.
func TestServiceUpdateOptInInvalid(t *testing.T) { onEachStore(t, testServiceUpdateOptInInvalid) }

func testServiceUpdateOptInInvalid(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	for _, q := range []string{"?include=service.join", "?include=", "?include=service.update&include=service.update"} {
		r := c.do("GET", "/events"+q, nil)
		r.want(400)
		if !strings.Contains(string(r.body), "Invalid value for 'include' query string parameter") {
			t.Errorf("%s: %s", q, r.body)
		}
	}
}
