package server

import (
	"context"
	"net/http"
	"strconv"

	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/server/store"
)

// Pagination (spec §10.1): limit, then marker.
const (
	defaultLimit = 100
	maxLimit     = 1000
	// maxEventsPage bounds an events page by its events' JSON: a thousand
	// updates of services with the largest metadata would be about 30 MB,
	// held in memory until its client reads it. A page ended by it is
	// short, with next_marker set, as a page the type filter thins is
	// (spec §7.11).
	maxEventsPage = 1 << 20
)

// parseLimit reads the limit parameter: digits only, then 1..1000.
func parseLimit(q query) (int, *fault) {
	v, ok := q.get("limit")
	if !ok {
		return defaultLimit, nil
	}
	invalid := func(details string) *fault {
		return &fault{Status: http.StatusBadRequest, Type: faultInvalidLimit, Message: "Invalid limit", Details: details}
	}
	if len(q.values("limit")) > 1 || v == "" || !allDigits(v) {
		return 0, invalid("Limit must be a number")
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxLimit {
		return 0, invalid("Invalid limit " + echoed(v) + ". Minimum limit is 1 and maximum limit is 1000.")
	}
	return n, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// parseMarker reads the marker of a services or configuration list; empty
// counts as absent.
func parseMarker(q query) (string, *fault) {
	v, _ := q.get("marker")
	if v != "" && !markerPattern.MatchString(v) {
		return "", invalidParam("marker", `Marker contains invalid characters. Valid characters are: /^[a-z0-9\-:_\.\/]{0,255}$/i`)
	}
	return v, nil
}

// parsePage reads limit and marker, in that order.
func parsePage(q query) (limit int, marker string, f *fault) {
	if limit, f = parseLimit(q); f != nil {
		return 0, "", f
	}
	marker, f = parseMarker(q)
	return limit, marker, f
}

// listMeta is the list envelope's metadata (spec §6.5).
type listMeta struct {
	Count      int     `json:"count"`
	Limit      int     `json:"limit"`
	Marker     *string `json:"marker"`
	NextMarker *string `json:"next_marker"`
	NextHref   *string `json:"next_href"`
}

type listBody[T any] struct {
	Values   []T      `json:"values"`
	Metadata listMeta `json:"metadata"`
}

// serveList reads a page with read and writes it in the list envelope,
// with its feed marker (marker is echoed when set; the page's next, when
// not empty, gives next_marker and next_href). The read and the encoding hold one of the
// account's read slots (readGate); the write to the client does not, and
// counts against the bounds of answers not yet taken (unsentBudget).
func serveList[T any](s *Server, w http.ResponseWriter, rq *request, limit int, marker string, read func(ctx context.Context) (store.Page[T], error)) error {
	page, body, err := func() (store.Page[T], []byte, error) {
		leave, err := s.reads.enter(rq.r.Context(), rq.tenant)
		if err != nil {
			return store.Page[T]{}, nil, err
		}
		defer leave() // also if the read panics (a damaged file)
		page, err := read(rq.r.Context())
		if err != nil {
			return page, nil, err
		}
		body, err := store.MarshalJSON(listEnvelope(page.Values, limit, marker, page.Next, rq.hrefPrefix(), rq.query))
		return page, body, err
	}()
	if err != nil {
		return err
	}
	return s.writeList(w, rq, body, func(h http.Header) { setFeedMarker(h, page.Marker) })
}

// listEnvelope builds a list answer; next_href is hrefPrefix followed by the
// request's query with marker set to next.
func listEnvelope[T any](values []T, limit int, marker, next, hrefPrefix string, q query) listBody[T] {
	if values == nil {
		values = []T{}
	}
	meta := listMeta{Count: len(values), Limit: limit}
	if marker != "" {
		meta.Marker = &marker
	}
	if next != "" {
		href := hrefPrefix + q.with("marker", next)
		meta.NextMarker, meta.NextHref = &next, &href
	}
	return listBody[T]{Values: values, Metadata: meta}
}

// setFeedMarker sets X-Registry-Marker (design item 3).
func setFeedMarker(h http.Header, m timeuuid.UUID) {
	h.Set("X-Registry-Marker", m.String())
}
