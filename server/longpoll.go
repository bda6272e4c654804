package server

import (
	"context"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/server/store"
)

// Long-polls (design item 2): GET /events?wait= is held while the answer
// would hold no event newer than the marker, then answered exactly as
// without wait.
//
// The poller parks a waiting long-poll (see poller). Only where its
// connection cannot be taken over (HTTP/2, or a server not served through
// Serve or Listener) does a long-poll wait on its own goroutine.

// answersAtOnce says in w's answer that the long-poll did not wait
// (X-Registry-Wait: 0s: no slot for it), and closes its connection if the
// server is draining.
func (s *Server) answersAtOnce(w http.ResponseWriter) {
	w.Header().Set("X-Registry-Wait", "0s")
	s.closeWhileDraining(w)
}

// longPoll answers GET /events with wait.
func (s *Server) longPoll(w http.ResponseWriter, rq *request, q store.EventQuery, wait time.Duration) error {
	adm := refused
	if rq.r.Method == http.MethodGet {
		adm = s.poller.addWaiter(rq.tenant)
	}
	if adm == refused {
		s.answersAtOnce(w)
		return s.serveEvents(w, rq, q)
	}
	ctx := rq.r.Context()
	owned := true // this goroutine still owns the waiter count
	toYield := adm == onYield
	defer func() {
		if owned {
			s.poller.removeWaiter(rq.tenant, toYield)
		}
	}()
	wait -= time.Duration(rand.Int64N(int64(wait)/16 + 1))
	w.Header().Set("X-Registry-Wait", wait.String())
	deadline := time.Now().Add(wait)
	var timer *time.Timer
	for {
		// Take the channel before reading, so no commit slips between.
		changed, err := s.store.Changed(ctx, rq.tenant)
		if err != nil {
			return err
		}
		page, err := s.readEvents(rq, q)
		if err != nil {
			return err
		}
		if hasNewer(page, q.From) || !time.Now().Before(deadline) {
			if timer != nil {
				if err := s.stillValid(ctx, rq); err != nil {
					return err
				}
			}
			return s.writeEventsPage(w, rq, q.Limit, page)
		}
		// Nothing up to the head is news: a read again goes on there.
		q.Quiet = later(q.From, page.Head)
		if toYield {
			// It waits now (its first read found nothing): a slot of a
			// tenant holding more, or none.
			toYield = false
			if !s.poller.yield(rq.tenant) {
				s.answersAtOnce(w)
				return s.writeEventsPage(w, rq, q.Limit, page)
			}
		}
		if isClosed(changed) {
			continue
		}
		if s.poller.park(w, rq, q, time.Until(deadline), changed) {
			owned = false
			return nil
		}
		if timer == nil {
			timer = time.NewTimer(time.Until(deadline))
			defer timer.Stop()
			// The http.Server's write timeout is for ordinary requests.
			http.NewResponseController(w).SetWriteDeadline(deadline.Add(30 * time.Second))
		}
		select {
		case <-changed:
			continue
		case <-timer.C:
		case <-ctx.Done():
		case <-s.closing:
		}
		s.closeWhileDraining(w)
		if err := s.stillValid(context.WithoutCancel(ctx), rq); err != nil {
			return err
		}
		return s.writeEventsPage(w, rq, q.Limit, page)
	}
}

// closeWhileDraining makes a long-poll answered while the server shuts
// down close its connection (over HTTP/2, the connection ends gracefully):
// the client asks again on a new one, which reaches the next server (or
// this one restarted), rather than polling this one at an interval, and
// the stop does not wait for a request that never comes. Parked polls get
// the same from the poller (answerAll).
func (s *Server) closeWhileDraining(w http.ResponseWriter) {
	if isClosed(s.closing) {
		w.Header().Set("Connection", "close")
	}
}

// hasNewer reports whether the feed holds an event other than the marker
// event itself: in the page, or past it.
func hasNewer(page store.EventPage, marker timeuuid.UUID) bool {
	if !page.Next.IsZero() {
		return true
	}
	for _, ev := range page.Values {
		if ev.ID != marker {
			return true
		}
	}
	return false
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
