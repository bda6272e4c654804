package server

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/server/store"
)

// defaultWindow is how far back GET /events reaches without a marker.
const defaultWindow = time.Hour

// validTypesMessage is the original's list in the Invalid type fault; the
// service.update extension is accepted too.
const validTypesMessage = "service.join,service.remove,service.timeout,configuration_value.update,configuration_value.remove"

// originalTypes are the event types of the original API: what a feed read
// shows a client that did not opt in to service.update (design item 1).
// The official Java client throws on any other type, so the filter applies
// before paging, and to long-polls, exactly like ?type.
var originalTypes = []registry.EventType{registry.ServiceJoin, registry.ServiceRemove, registry.ServiceTimeout,
	registry.ConfigValueUpdate, registry.ConfigValueRemove}

// includeParam opts in to the extension event types: include=service.update.
const includeParam = "include"

// handleEvents is GET /events (spec §7.11), with the long-poll extension
// (design item 2): with wait, the request is held while the answer would
// hold no event newer than the marker.
func (s *Server) handleEvents(w http.ResponseWriter, rq *request) error {
	limit, f := parseLimit(rq.query)
	if f != nil {
		return f
	}
	from, hasMarker, err := s.feedStart(rq)
	if err != nil {
		return err
	}
	types, f := eventTypes(rq.query)
	if f != nil {
		return f
	}
	wait, f := s.parseWait(rq.query)
	if f != nil {
		return f
	}

	q := store.EventQuery{From: from, CheckExpired: hasMarker, Limit: limit, MaxBytes: maxEventsPage, Types: types}
	if wait > 0 {
		if n := rq.keptSize(); n > maxKeptRequest || len(rq.query) > maxKeptParams {
			return badRequest(fmt.Sprintf("A long-poll's query string, Host and X-Forwarded-Proto may be %d bytes at most together, and its query %d parameters (a waiting poll keeps them to write its answer); these are %d bytes and %d parameters: leave out the parameters the API does not use.", maxKeptRequest, maxKeptParams, n, len(rq.query)))
		}
		return s.longPoll(w, rq, q, wait)
	}
	return s.serveEvents(w, rq, q)
}

// maxKeptRequest and maxKeptParams bound what a waiting long-poll keeps
// of its request to write its answer (its query, for next_href, and its
// Host; copies, newParkedPoll; X-Forwarded-Proto counts as sent, though
// only the scheme it gives is kept): tens of bytes and a few
// parameters for a client, up to the header limit for one that pads them,
// times the polls an account may park.
const (
	maxKeptRequest = 4096
	maxKeptParams  = 32
)

// keptSize is how many bytes of rq a waiting long-poll keeps, as sent.
func (rq *request) keptSize() int {
	return len(rq.r.URL.RawQuery) + len(rq.r.Host) + len(rq.r.Header.Get("X-Forwarded-Proto"))
}

// feedStart is where the read starts, and whether a marker says so: the
// marker, checked against the current time and the account's creation
// (spec §7.11 steps 2-5), or defaultWindow ago without one.
func (s *Server) feedStart(rq *request) (timeuuid.UUID, bool, error) {
	acct := rq.account
	now := s.now()
	marker, ok := rq.query.get("marker")
	if !ok || marker == "" {
		start := now.Add(-defaultWindow)
		if start.Before(acct.CreatedAt) {
			start = acct.CreatedAt
		}
		return timeuuid.Low(start), false, nil
	}
	from, err := timeuuid.Parse(marker)
	if err != nil {
		return from, true, badRequest(err.Error())
	}
	// Event ids may run a tick ahead of the clock (design item 5), so
	// "now" is at least just after the newest event.
	latest := timeuuid.Ticks(now)
	// Nor is an empty account's feed marker, its creation, refused while
	// the clock is behind it (the first event's id is floored there).
	latest = max(latest, timeuuid.Ticks(acct.CreatedAt))
	if !acct.Head.IsZero() {
		latest = max(latest, acct.Head.Ticks()+1)
	}
	if millis(from.Ticks()) > millis(latest) {
		// The account's head may lag events another server node
		// committed; ask for the newest before refusing.
		head, err := s.store.Head(rq.r.Context(), rq.tenant)
		if err != nil {
			return from, true, err
		}
		if !head.IsZero() {
			latest = max(latest, head.Ticks()+1)
		}
	}
	if millis(from.Ticks()) > millis(latest) {
		return from, true, badRequest("from parameter must be smaller than the current time")
	}
	if millis(from.Ticks()) < millis(timeuuid.Ticks(acct.CreatedAt)) {
		return from, true, badRequest("from parameter must be greater than or equal to the account creation date")
	}
	return from, true, nil
}

// eventTypes is the type filter of a feed read: the original types, every
// type with include=service.update, or the one of ?type= (spec §7.11 step
// 6).
func eventTypes(q query) ([]registry.EventType, *fault) {
	types := originalTypes
	if v, ok := q.get(includeParam); ok {
		if v != string(registry.ServiceUpdate) {
			return nil, invalidParam(includeParam, "Include must be service.update")
		}
		types = nil // every type
	}
	if v, ok := q.get("type"); ok {
		t, valid := eventType(v)
		if !valid {
			return nil, badRequest("Invalid type: " + echoed(v) + ". Valid types are: " + validTypesMessage)
		}
		types = []registry.EventType{t}
	}
	return types, nil
}

// serveEvents answers the request with the page q reads now.
func (s *Server) serveEvents(w http.ResponseWriter, rq *request, q store.EventQuery) error {
	page, err := s.readEvents(rq, q)
	if err != nil {
		return err
	}
	return s.writeEventsPage(w, rq, q.Limit, page)
}

// readEvents reads a page of events of rq's account, holding one of its
// read slots (readGate) while it does.
func (s *Server) readEvents(rq *request, q store.EventQuery) (store.EventPage, error) {
	leave, err := s.reads.enter(rq.r.Context(), rq.tenant)
	if err != nil {
		return store.EventPage{}, err
	}
	defer leave()
	return s.store.Events(rq.r.Context(), rq.tenant, q)
}

// millis is a UUID time in milliseconds: the original compared a marker's
// time with the current time and the account's creation in milliseconds,
// so a client's highest UUID of the current millisecond is "now", not the
// future (spec §7.11 steps 4 and 5).
func millis(ticks uint64) uint64 { return ticks / 10000 }

// writeEvents writes an events page of the request, which asked for limit
// events.
func writeEvents(w http.ResponseWriter, rq *request, limit int, page store.EventPage) {
	writeRawJSON(w, http.StatusOK, eventsJSON(page, limit, rq.hrefPrefix(), rq.query))
}

// writeEventsPage is writeEvents within the bounds of answers not yet
// taken (unsentBudget); past them it returns the rate-limit fault. The
// poller bounds the answers it writes itself.
func (s *Server) writeEventsPage(w http.ResponseWriter, rq *request, limit int, page store.EventPage) error {
	return s.writeList(w, rq, eventsJSON(page, limit, rq.hrefPrefix(), rq.query), nil)
}

// eventsJSON is the list envelope of an events page; metadata.marker is
// always null on /events (spec §6.5). The events are the store's JSON as
// it stored them (compact, from store.MarshalJSON), joined as they are: passed
// through json.Marshal as RawMessages, a page of 1 MiB was validated and
// compacted again, five times the CPU, at every read and long-poll answer.
func eventsJSON(page store.EventPage, limit int, hrefPrefix string, q query) []byte {
	next := ""
	if !page.Next.IsZero() {
		next = page.Next.String()
	}
	meta, err := store.MarshalJSON(listEnvelope(make([]struct{}, len(page.Values)), limit, "", next, hrefPrefix, q).Metadata)
	if err != nil {
		panic("encode events: " + err.Error()) // plain fields
	}
	n := len(`{"values":[],"metadata":}`) + len(meta)
	for _, ev := range page.Values {
		n += len(ev.JSON) + 1
	}
	data := make([]byte, 0, n)
	data = append(data, `{"values":[`...)
	for i, ev := range page.Values {
		if i > 0 {
			data = append(data, ',')
		}
		data = append(data, ev.JSON...)
	}
	data = append(data, `],"metadata":`...)
	data = append(data, meta...)
	return append(data, '}')
}

// knownEventTypes are the types ?type= accepts: registry.EventTypes as it was
// when the program started, which a program that embeds the server cannot
// then change by writing to the exported slice.
var knownEventTypes = slices.Clone(registry.EventTypes)

// eventType accepts one of the event types; a repeated parameter never
// matches (spec §9.4).
func eventType(v string) (registry.EventType, bool) {
	for _, t := range knownEventTypes {
		if string(t) == v {
			return t, true
		}
	}
	return "", false
}

// parseWait reads the wait parameter: seconds, or a Go duration such as
// "30s"; capped at MaxWait.
func (s *Server) parseWait(q query) (time.Duration, *fault) {
	v, ok := q.get("wait")
	if !ok || v == "" {
		return 0, nil
	}
	const notANumber = "Wait must be a number of seconds or a duration such as 30s"
	var d time.Duration
	if secs, err := strconv.ParseFloat(v, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		switch {
		case math.IsNaN(secs):
			return 0, invalidParam("wait", notANumber)
		case math.Signbit(secs): // -0 too
			return 0, invalidParam("wait", "Wait must not be negative")
		case secs >= s.cfg.MaxWait.Seconds():
			// 1e10 seconds, Inf and 1e400 too, past what a duration holds.
			return s.cfg.MaxWait, nil
		}
		d = time.Duration(secs * float64(time.Second))
	} else if d, err = time.ParseDuration(v); err != nil {
		return 0, invalidParam("wait", notANumber)
	} else if d < 0 || strings.Contains(v, "-") { // -0s too
		return 0, invalidParam("wait", "Wait must not be negative")
	}
	return min(d, s.cfg.MaxWait), nil
}
