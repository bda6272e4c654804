package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/internal/timeuuid"
)

// spec §6.3 and §9: what each change writes to the feed, with its payload;
// heartbeats and unchanged values write nothing. Ids are v1 UUIDs in UUID
// time order.
func TestEventsFeed(t *testing.T) { onEachStore(t, testEventsFeed) }

func testEventsFeed(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	before := time.Now().UnixMilli()
	token := c.createBody(map[string]any{"id": "svc-1", "tags": []string{"db"}, "metadata": map[string]string{"port": "3306"}, "heartbeat_timeout": 30})
	c.create("svc-2", 60)
	c.nextToken("svc-1", token)
	c.setConfig("key-1", "a")
	c.setConfig("key-1", "a")
	c.do("DELETE", "/services/svc-2", nil).want(204)
	c.do("DELETE", "/configuration/key-1", nil).want(204)
	after := time.Now().UnixMilli()

	evs := c.events("")
	want := []string{"service.join svc-1", "service.join svc-2", "configuration_value.update key-1", "service.remove svc-2", "configuration_value.remove key-1"}
	if got := summary(evs); !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	payloads := []map[string]any{
		{"id": "svc-1", "heartbeat_timeout": 30.0, "tags": []any{"db"}, "metadata": map[string]any{"port": "3306"}},
		{"id": "svc-2", "heartbeat_timeout": 60.0, "tags": []any{}, "metadata": map[string]any{}},
		{"old_value": nil, "new_value": "a", "configuration_value_id": "key-1"},
		{"id": "svc-2", "heartbeat_timeout": 60.0, "tags": []any{}, "metadata": map[string]any{}},
		{"old_value": "a", "configuration_value_id": "key-1"},
	}
	var prev timeuuid.UUID
	for i, ev := range evs {
		var p map[string]any
		json.Unmarshal(ev.Payload, &p)
		if !reflect.DeepEqual(p, payloads[i]) {
			t.Errorf("event %d payload %s, want %v", i, ev.Payload, payloads[i])
		}
		if ev.Timestamp < before || ev.Timestamp > after {
			t.Errorf("event %d timestamp %d, want in [%d, %d]", i, ev.Timestamp, before, after)
		}
		id, err := timeuuid.Parse(ev.ID)
		if err != nil || ev.ID != strings.ToLower(ev.ID) {
			t.Errorf("event %d id %q is not a lower-case v1 UUID: %v", i, ev.ID, err)
			continue
		}
		if i > 0 && timeuuid.Compare(prev, id) >= 0 {
			t.Errorf("event %d id %s is not after the previous one in UUID order", i, ev.ID)
		}
		prev = id
	}

	// The raw form: id, timestamp, type, payload and nothing else.
	var raw struct {
		Values []map[string]json.RawMessage `json:"values"`
	}
	c.do("GET", "/events", nil).want(200).json(&raw)
	for _, v := range raw.Values {
		if len(v) != 4 || v["id"] == nil || v["timestamp"] == nil || v["type"] == nil || v["payload"] == nil {
			t.Errorf("event keys %v, want id, timestamp, type, payload", v)
		}
	}
}

// spec §9.3: the marker is inclusive and any v1 UUID will do; the metadata
// marker is always null on /events.
func TestEventsMarker(t *testing.T) { onEachStore(t, testEventsMarker) }

func testEventsMarker(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	c.do("GET", "/events", nil).want(200) // creates the account
	start := time.Now()
	c.create("svc-1", 30)
	c.create("svc-2", 30)
	c.create("svc-3", 30)
	all := c.events("")
	if len(all) != 3 {
		t.Fatalf("events %q", summary(all))
	}
	for _, tc := range []struct {
		name, marker string
		want         []event
	}{
		{"the last id", all[2].ID, all[2:]},
		{"the middle id", all[1].ID, all[1:]},
		{"the first id", all[0].ID, all},
		{"the first id, upper case", strings.ToUpper(all[0].ID), all},
		{"low UUID at the start", lowUUID(start), all},
		{"high UUID now", highUUID(time.Now()), []event{}},
		{"empty", "", all},
	} {
		r := c.do("GET", "/events?marker="+tc.marker, nil)
		got, meta := list[event](r)
		if !slices.EqualFunc(got, tc.want, func(a, b event) bool { return a.ID == b.ID }) {
			t.Errorf("%s: events %q, want %q", tc.name, summary(got), summary(tc.want))
		}
		if meta.Marker != nil || meta.Limit != 100 || meta.NextMarker != nil || meta.NextHref != nil {
			t.Errorf("%s: metadata %s, want marker null, limit 100, no next page", tc.name, r.body)
		}
	}
}

// spec §7.11 and §9: limit pages the feed, next_marker is the first event
// left out, next_href keeps the other parameters.
func TestEventsPaging(t *testing.T) { onEachStore(t, testEventsPaging) }

func testEventsPaging(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	for _, id := range []string{"svc-1", "svc-2", "svc-3", "svc-4", "svc-5"} {
		c.create(id, 30)
	}
	all := c.events("")
	got, meta := list[event](c.do("GET", "/events?limit=2", nil))
	if len(got) != 2 || got[0].ID != all[0].ID || got[1].ID != all[1].ID {
		t.Errorf("first page %q", summary(got))
	}
	if meta.Limit != 2 || meta.NextMarker == nil || *meta.NextMarker != all[2].ID {
		t.Fatalf("first page metadata %+v, want limit 2 and next_marker %s", meta, all[2].ID)
	}
	wantHref := c.base + "/v1.0/" + c.tenant + "/events?limit=2&marker=" + all[2].ID
	if meta.NextHref == nil || *meta.NextHref != wantHref {
		t.Errorf("next_href %v, want %s", meta.NextHref, wantHref)
	}

	var seen []string
	href := "/v1.0/" + c.tenant + "/events?type=service.join&limit=2"
	for range 10 {
		got, meta := list[event](c.raw("GET", href, nil))
		seen = append(seen, summary(got)...)
		if meta.NextHref == nil {
			break
		}
		if !strings.Contains(*meta.NextHref, "type=service.join") || !strings.Contains(*meta.NextHref, "limit=2") {
			t.Errorf("next_href %s lost type or limit", *meta.NextHref)
		}
		href = strings.TrimPrefix(*meta.NextHref, c.base)
	}
	if !slices.Equal(seen, summary(all)) {
		t.Errorf("following next_href: %q, want %q", seen, summary(all))
	}
}

// spec §7.11: limit is checked first, then the marker (as a UUID, not by
// the marker character rule), its time, and then type.
func TestEventsParameterOrder(t *testing.T) { onEachStore(t, testEventsParameterOrder) }

func testEventsParameterOrder(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	c.create("svc-1", 30)
	future := lowUUID(time.Now().Add(time.Hour))
	past := lowUUID(time.Now().Add(-time.Hour))
	c.do("GET", "/events?marker=0&limit=x", nil).fault(400, "invalidLimit", "Invalid limit", "Limit must be a number")
	c.do("GET", "/events?marker=a%20b", nil).badRequest("Invalid UUID")
	c.do("GET", "/events?marker=0&type=bad", nil).badRequest("Invalid UUID")
	c.do("GET", "/events?marker="+future+"&type=bad", nil).badRequest("from parameter must be smaller than the current time")
	c.do("GET", "/events?marker="+past+"&type=bad", nil).badRequest("from parameter must be greater than or equal to the account creation date")
	c.do("GET", "/events?type=bad", nil).badRequest("Invalid type: bad. Valid types are: service.join,service.remove,service.timeout,configuration_value.update,configuration_value.remove")
}

// spec §9.4 and §7.11: type keeps only events of that type, and count is
// counted after the filter.
func TestEventsTypeFilter(t *testing.T) { onEachStore(t, testEventsTypeFilter) }

func testEventsTypeFilter(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	c.create("svc-1", 30)
	c.do("PUT", "/services/svc-1", map[string]any{"tags": []string{"x"}}).want(204)
	c.setConfig("key-1", "a")
	c.do("DELETE", "/configuration/key-1", nil).want(204)
	c.do("DELETE", "/services/svc-1", nil).want(204)
	for typ, want := range map[string][]string{
		"service.join":               {"service.join svc-1"},
		"service.update":             {"service.update svc-1"},
		"service.remove":             {"service.remove svc-1"},
		"service.timeout":            {},
		"configuration_value.update": {"configuration_value.update key-1"},
		"configuration_value.remove": {"configuration_value.remove key-1"},
	} {
		if got := summary(c.events("?type=" + typ)); !slices.Equal(got, want) {
			t.Errorf("type=%s: %q, want %q", typ, got, want)
		}
	}
}

// spec §8.3: a service.timeout event carries the deadline (the time in the
// expired token) as its timestamp, and the service as stored as payload.
func TestTimeoutEvent(t *testing.T) { onEachStore(t, testTimeoutEvent) }

func testTimeoutEvent(t *testing.T, kind string) {
	t.Parallel()
	clock := new(testserver.Clock)
	srv := testserver.Start(t, testserver.Options{Store: kind, Clock: clock, ReapInterval: -1})
	c := newAPI(t, srv)
	token := c.create("svc-1", 30)
	token = c.nextToken("svc-1", token)
	c.do("PUT", "/services/svc-1", map[string]any{"tags": []string{"late"}, "metadata": map[string]string{"k": "v"}}).want(204)
	deadline, err := timeuuid.Parse(token)
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(31 * time.Second)
	evs := c.events("?type=service.timeout")
	if len(evs) != 1 {
		t.Fatalf("timeout events %q, want one", summary(evs))
	}
	if want := deadline.Time().UnixMilli(); evs[0].Timestamp != want {
		t.Errorf("timeout timestamp %d, want the deadline %d", evs[0].Timestamp, want)
	}
	var p map[string]any
	json.Unmarshal(evs[0].Payload, &p)
	if want := map[string]any{"id": "svc-1", "heartbeat_timeout": 30.0, "tags": []any{"late"}, "metadata": map[string]any{"k": "v"}}; !reflect.DeepEqual(p, want) {
		t.Errorf("timeout payload %s, want %v", evs[0].Payload, want)
	}
}

// An events page ends before its events' JSON passes 1 MiB: a thousand
// updates of services with the largest metadata would otherwise be about
// 5 MB in memory (10 MB of text JSON must escape), per request, until the
// client read it. The short page
// has next_marker set, and following it gives the rest.
func TestEventsPageBoundedInBytes(t *testing.T) { onEachStore(t, testEventsPageBoundedInBytes) }

func testEventsPageBoundedInBytes(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	// Heartbeated along: 300 writes can take a minute under the race
	// detector on a busy machine.
	tok := c.create("big", 120)
	// 18 values of 250 '<' (a body under 5,000 bytes): an update event of
	// about 4.7 kB.
	meta := map[string]string{}
	for i := range 18 {
		meta[fmt.Sprintf("k%02d", i)] = strings.Repeat("<", 250)
	}
	const updates = 300
	for i := range updates {
		meta["k00"] = strings.Repeat("<", 249) + fmt.Sprint(i%10)
		var body bytes.Buffer
		enc := json.NewEncoder(&body)
		enc.SetEscapeHTML(false) // as sent, one byte each
		enc.Encode(map[string]any{"metadata": meta})
		c.do("PUT", "/services/big", body.Bytes()).want(204)
		if i%50 == 49 {
			var hb struct{ Token string }
			c.heartbeat("big", tok).want(200).json(&hb)
			tok = hb.Token
		}
	}
	r := c.do("GET", "/events?limit=1000&include=service.update", nil)
	evs, m := list[event](r)
	if len(r.body) > 1<<20+4096 || m.NextMarker == nil || len(evs) >= updates+1 || len(evs) == 0 {
		t.Fatalf("a page of %d bytes, %d events, next_marker %v; want at most 1 MiB of events and a next_marker", len(r.body), len(evs), m.NextMarker)
	}
	rest, m2 := list[event](c.do("GET", "/events?limit=1000&include=service.update&marker="+*m.NextMarker, nil))
	if len(evs)+len(rest) != updates+1 || m2.NextMarker != nil || rest[0].ID != *m.NextMarker {
		t.Errorf("pages of %d and %d events (next %v); want the %d events", len(evs), len(rest), m2.NextMarker, updates+1)
	}
}
