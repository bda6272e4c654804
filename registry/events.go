package registry

import (
	"context"
	"iter"
	"strings"
	"time"
)

// EventListOptions select the events of a list.
type EventListOptions struct {
	// Marker is the event id (or any v1 time UUID, such as a FeedMarker)
	// to start at. The marker is inclusive: an event whose id is the
	// marker comes back first. Empty means the last hour (spec §9.3).
	Marker string
	// Limit is the page size, 1..1000; the registry's default (100) if 0.
	Limit int
	// Type, if set, keeps only events of this type. If not, every type
	// comes back, service.update included: the client opts in to that
	// svcreg extension (include=service.update), which the registry hides
	// from clients that do not ask for it.
	Type EventType
	// Wait, if positive, asks the registry to hold the request while it
	// has no event newer than Marker (the marker event itself does not
	// count), for at most about this long: a long-poll. A registry that
	// does not long-poll answers at once.
	Wait time.Duration
}

// EventPage is one page of the events feed.
type EventPage struct {
	Values []Event
	// NextMarker is the id of the first event of the next page; empty on
	// the last page.
	NextMarker string
	// Wait is the wait the registry applied (X-Registry-Wait); 0 if it
	// answered without waiting: it refused to wait or does not long-poll.
	Wait time.Duration
	// Closing is set when the registry answered without waiting and
	// closed the connection (Connection: close): it is shutting down, and
	// a new connection soon reaches the next server, or this one
	// restarted.
	Closing bool
}

// ListEvents returns the events from opts.Marker on, in commit order,
// following next_marker from page to page (spec §7.11). An error ends the
// sequence. To follow the feed as it grows, use Watch.
func (c *Client) ListEvents(ctx context.Context, opts EventListOptions) iter.Seq2[Event, error] {
	return all(ctx, opts.Marker, c.maxListItems, func(ctx context.Context, marker string) (Page[Event], int64, error) {
		o := opts
		if marker != opts.Marker {
			// A later page starts at an event not seen yet, which a
			// long-poll would not count as new: ask without waiting.
			o.Wait = 0
		}
		o.Marker = marker
		p, size, err := c.listEventsPage(ctx, o)
		return Page[Event]{Values: p.Values, NextMarker: p.NextMarker}, size, err
	})
}

// ListEventsPage returns one page of events.
func (c *Client) ListEventsPage(ctx context.Context, opts EventListOptions) (EventPage, error) {
	p, _, err := c.listEventsPage(ctx, opts)
	return p, err
}

// listEventsPage is ListEventsPage, also saying how many bytes of the
// answer the page was decoded from.
func (c *Client) listEventsPage(ctx context.Context, opts EventListOptions) (EventPage, int64, error) {
	q := pageQuery(opts.Marker, opts.Limit)
	if opts.Type != "" {
		q.Set("type", string(opts.Type))
	} else {
		q.Set("include", string(ServiceUpdate))
	}
	if opts.Wait > 0 {
		q.Set("wait", opts.Wait.String())
	}
	env := newListEnvelope[Event](opts.Limit)
	h, err := c.do(ctx, call{method: "GET", path: "/events", query: q, wait: opts.Wait}, env)
	if err != nil {
		return EventPage{}, 0, err
	}
	if env.Values == nil {
		return EventPage{}, 0, errNotAList("/events")
	}
	p := EventPage{Values: *env.Values}
	if env.Metadata.NextMarker != nil {
		p.NextMarker = *env.Metadata.NextMarker
	}
	if err := checkMarker("/events", "a next_marker", p.NextMarker); err != nil {
		return EventPage{}, 0, err
	}
	for _, ev := range p.Values {
		if err := checkMarker("/events", "an event id", ev.ID); err != nil {
			return EventPage{}, 0, err
		}
	}
	if w, err := time.ParseDuration(h.Get("X-Registry-Wait")); err == nil && w > 0 {
		p.Wait = w
	}
	p.Closing = p.Wait == 0 && opts.Wait > 0 && strings.EqualFold(h.Get("Connection"), "close")
	return p, env.size, nil
}
