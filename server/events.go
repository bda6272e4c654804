package server

import (
	"encoding/json"
	"math/rand/v2"
	"net/http"
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

// handleEvents is GET /events (spec §7.11), with the long-poll extension
// (design item 2): with wait, the request is held while the answer would
// hold no event newer than the marker.
func (s *Server) handleEvents(w http.ResponseWriter, rq *request) {
	limit, f := parseLimit(rq.query)
	if f != nil {
		s.writeFault(w, rq, f)
		return
	}
	ctx := rq.r.Context()
	acct, err := s.store.Account(ctx, rq.tenant)
	if err != nil {
		s.writeFault(w, rq, s.faultFor(rq, err))
		return
	}
	now := s.now()
	marker, hasMarker := rq.query.get("marker")
	hasMarker = hasMarker && marker != ""
	var from timeuuid.UUID
	if hasMarker {
		if from, err = timeuuid.Parse(marker); err != nil {
			s.writeFault(w, rq, badRequest(err.Error()))
			return
		}
		// Event ids may run a tick ahead of the clock (design item 5), so
		// "now" is at least just after the newest event.
		latest := timeuuid.Ticks(now)
		if !acct.Head.IsZero() {
			latest = max(latest, acct.Head.Ticks()+1)
		}
		if from.Ticks() > latest {
			s.writeFault(w, rq, badRequest("from parameter must be smaller than the current time"))
			return
		}
		if from.Ticks() < timeuuid.Ticks(acct.CreatedAt) {
			s.writeFault(w, rq, badRequest("from parameter must be greater than or equal to the account creation date"))
			return
		}
	} else {
		start := now.Add(-defaultWindow)
		if start.Before(acct.CreatedAt) {
			start = acct.CreatedAt
		}
		from = timeuuid.Low(start)
	}
	var types []registry.EventType
	if v, ok := rq.query.get("type"); ok {
		t, valid := eventType(v)
		if !valid {
			s.writeFault(w, rq, badRequest("Invalid type: "+v+". Valid types are: "+validTypesMessage))
			return
		}
		types = []registry.EventType{t}
	}
	wait, f := s.parseWait(rq.query)
	if f != nil {
		s.writeFault(w, rq, f)
		return
	}

	q := store.EventQuery{From: from, CheckExpired: hasMarker, Limit: limit, Types: types}
	var page store.EventPage
	if wait > 0 {
		var applied time.Duration
		page, applied, err = s.longPoll(w, rq, q, wait)
		w.Header().Set("X-Registry-Wait", applied.String())
	} else {
		page, err = s.readEvents(rq, q)
	}
	if err != nil {
		s.writeFault(w, rq, s.faultFor(rq, err))
		return
	}
	values := make([]json.RawMessage, len(page.Values))
	for i, ev := range page.Values {
		values[i] = ev.JSON
	}
	next := ""
	if !page.Next.IsZero() {
		next = page.Next.String()
	}
	// metadata.marker is always null on /events (spec §6.5).
	writeList(w, rq, values, limit, "", next)
}

// eventType accepts one of the event types; a repeated parameter never
// matches (spec §9.4).
func eventType(v string) (registry.EventType, bool) {
	for _, t := range registry.EventTypes {
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
	var d time.Duration
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		d = time.Duration(secs * float64(time.Second))
	} else if d, err = time.ParseDuration(v); err != nil {
		return 0, invalidParam("wait", "Wait must be a number of seconds or a duration such as 30s")
	}
	if d < 0 || strings.Contains(v, "-") {
		return 0, invalidParam("wait", "Wait must not be negative")
	}
	return min(d, s.cfg.MaxWait), nil
}

// readEvents rectifies, then reads a page (spec §7.11 steps 7-8).
func (s *Server) readEvents(rq *request, q store.EventQuery) (store.EventPage, error) {
	ctx := rq.r.Context()
	if err := s.store.Rectify(ctx, rq.tenant); err != nil {
		return store.EventPage{}, err
	}
	return s.store.Events(ctx, rq.tenant, q)
}

// longPoll answers as soon as the page holds an event other than the marker
// event, or when the wait (less up to 1/16 of jitter) is over. A long-poll
// costs one parked goroutine. It returns the wait it applied: zero when the
// tenant already has as many long-polls waiting as it may.
func (s *Server) longPoll(w http.ResponseWriter, rq *request, q store.EventQuery, wait time.Duration) (store.EventPage, time.Duration, error) {
	if !s.addWaiter(rq.tenant) {
		page, err := s.readEvents(rq, q)
		return page, 0, err
	}
	defer s.removeWaiter(rq.tenant)
	wait -= time.Duration(rand.Int64N(int64(wait)/16 + 1))
	// The write timeout of the http.Server is for ordinary requests.
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(wait + 30*time.Second))
	timer := time.NewTimer(wait)
	defer timer.Stop()
	ctx := rq.r.Context()
	for {
		// Take the channel before reading, so no commit slips between.
		changed, err := s.store.Changed(ctx, rq.tenant)
		if err != nil {
			return store.EventPage{}, wait, err
		}
		page, err := s.readEvents(rq, q)
		if err != nil || hasNewer(page, q.From) {
			return page, wait, err
		}
		select {
		case <-changed:
			continue
		case <-timer.C:
		case <-ctx.Done():
		case <-s.closing:
		}
		return page, wait, nil
	}
}

// hasNewer reports whether the page holds an event other than the marker
// event itself.
func hasNewer(page store.EventPage, marker timeuuid.UUID) bool {
	for _, ev := range page.Values {
		if ev.ID != marker {
			return true
		}
	}
	return false
}

func (s *Server) addWaiter(tenant string) bool {
	select {
	case <-s.closing:
		return false
	default:
	}
	s.waitersMu.Lock()
	defer s.waitersMu.Unlock()
	if s.waiters[tenant] >= s.cfg.MaxWaitersPerTenant {
		return false
	}
	s.waiters[tenant]++
	s.metrics.waiting.Inc()
	return true
}

func (s *Server) removeWaiter(tenant string) {
	s.waitersMu.Lock()
	defer s.waitersMu.Unlock()
	if s.waiters[tenant]--; s.waiters[tenant] == 0 {
		delete(s.waiters, tenant)
	}
	s.metrics.waiting.Dec()
}
