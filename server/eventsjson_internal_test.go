package server

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/server/store"
)

// eventsJSONMarshalled is the events envelope as json.Marshal writes it,
// the store's events as RawMessages: what eventsJSON must equal.
func eventsJSONMarshalled(page store.EventPage, limit int, hrefPrefix string, q query) []byte {
	values := make([]json.RawMessage, len(page.Values))
	for i, ev := range page.Values {
		values[i] = ev.JSON
	}
	next := ""
	if !page.Next.IsZero() {
		next = page.Next.String()
	}
	data, err := store.MarshalJSON(listEnvelope(values, limit, "", next, hrefPrefix, q))
	if err != nil {
		panic(err)
	}
	return data
}

// eventsPage is a page of n events as the store writes them, each with a
// metadata value of about size characters, among them the HTML ones that
// json.Marshal escapes to six bytes.
func eventsPage(n, size int, next bool) store.EventPage {
	var page store.EventPage
	for i := range n {
		payload := map[string]any{"id": fmt.Sprint("svc-", i), "metadata": map[string]string{"note": strings.Repeat("<a&b>\"\\", size/7)}}
		raw, err := json.Marshal(map[string]any{"id": timeuuid.New(uint64(1000+i), 0).String(), "type": "service.join", "timestamp": 1234567, "payload": payload})
		if err != nil {
			panic(err)
		}
		page.Values = append(page.Values, store.Event{ID: timeuuid.New(uint64(1000+i), 0), Type: registry.ServiceJoin, JSON: raw})
	}
	if next {
		page.Next = timeuuid.New(5000, 7)
	}
	return page
}

// eventsJSON joins the store's events as they are, and is byte for byte
// what json.Marshal of the envelope gives.
func TestEventsJSONIsTheMarshalledEnvelope(t *testing.T) {
	t.Parallel()
	q := parseQuery("limit=3&include=service.update&x=%3Cy%3E")
	for _, tc := range []struct {
		name string
		page store.EventPage
		href string
	}{
		{"empty", eventsPage(0, 0, false), ""},
		{"one", eventsPage(1, 50, false), ""},
		{"next page", eventsPage(3, 300, true), "https://registry.example/v1.0/7/events"},
		{"next page, no href prefix", eventsPage(3, 10, true), ""},
	} {
		got, want := eventsJSON(tc.page, 3, tc.href, q), eventsJSONMarshalled(tc.page, 3, tc.href, q)
		if string(got) != string(want) {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, want)
		}
		if !json.Valid(got) {
			t.Errorf("%s: not valid JSON: %s", tc.name, got)
		}
	}
}

// BenchmarkEventsJSON builds a full page (1,000 events of about 2.7 KB of
// JSON each), joined and, for the ratio, as json.Marshal of RawMessages
// did.
func BenchmarkEventsJSON(b *testing.B) {
	page := eventsPage(1000, 1000, true)
	q := parseQuery("limit=1000&include=service.update")
	b.Run("joined", func(b *testing.B) {
		for b.Loop() {
			eventsJSON(page, 1000, "https://r/v1.0/7/events", q)
		}
	})
	b.Run("marshalled", func(b *testing.B) {
		for b.Loop() {
			eventsJSONMarshalled(page, 1000, "https://r/v1.0/7/events", q)
		}
	})
}
