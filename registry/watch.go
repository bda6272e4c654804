package registry

import (
	"context"
	"fmt"
	"hash/maphash"
	"iter"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/svcreg/svcreg/internal/retry"
	"github.com/svcreg/svcreg/internal/timeuuid"
)

// WatchOptions configure a Feed.
type WatchOptions struct {
	// Wait is how long each long-poll asks the registry to hold the request
	// while nothing happens; 30s if 0. With the URLs of several nodes
	// (Config.URL), at most 20s, so that a node that froze while it held
	// the poll is left for the next within about half a minute.
	Wait time.Duration
	// PollInterval is the pause between polls when the registry answers at
	// once instead of long-polling (an original server, or one that
	// refused to wait); 10s (the Node poller's) if 0.
	PollInterval time.Duration
	// Limit is the page size, 1..1000 (a long-poll asks for at least 2);
	// the registry's default (100) if 0.
	Limit int
	// Type, if set, watches only events of this type.
	Type EventType
	// MinBackoff and MaxBackoff bound the jittered, doubling delay between
	// polls after an error (at least the error's Retry-After, up to
	// MaxBackoff); 100ms and 15s if 0. An answer with nothing
	// new that came at once (a long-poll answered well before its wait, a
	// registry shutting down) is followed after a delay that doubles the
	// same way from MinBackoff up to PollInterval; so are empty pages read
	// without a wait, or naming a next one, past 1000 in a row and 10 a
	// second (a registry that filters by type after it pages sends such
	// pages while the Feed catches up; the Feed's next polls start after
	// them); a long-poll that waited its wait, or brought events, is
	// followed at once.
	MinBackoff, MaxBackoff time.Duration
	// OnError, if set, is told of every error the watcher retries, with
	// the delay before the next poll. It is called from Next.
	OnError func(err error, retryIn time.Duration)
	// OnAnswer, if set, is called after every poll the registry answered
	// (an empty long-poll included), when LastSuccess has moved: with
	// OnError, it tells when the registry is reached again. It is called
	// from Next.
	OnAnswer func()
}

// Feed follows the events feed from a marker: it long-polls the
// registry for events newer than the last one it returned, falls back to
// polling every PollInterval when the registry answers at once, follows
// next_marker pages, and retries network errors, 5xx and 401 with a capped,
// jittered backoff, so it survives registry restarts.
//
// Next returns the events one by one in commit order. After an event, the
// Feed's Marker is that event's id: a later Feed started from it
// goes on with the event after it. When the marker has expired (the
// registry no longer holds the events after it), Next returns an error
// matching ErrMarkerExpired: list services and configuration again and
// start a new Feed from the FeedMarker of that list. Any other error
// but the context's is permanent too (the registry refused the marker),
// and calls for the same re-list.
//
// Next must not be called concurrently; Marker and LastSuccess may be
// called from any goroutine.
type Feed struct {
	c    *Client
	opts WatchOptions

	queue []Event
	next  string // a next_marker to follow at once; "" if none
	// behind: the last page was full and named a next one (Behind).
	behind bool
	// from, if not "", is where the next long-poll starts instead of the
	// last event returned: the marker of an empty page read without a
	// wait (a registry that filters by type after it pages), which the
	// pages before it had read up to.
	from      string
	pollDelay time.Duration
	errBo     retry.Backoff
	quickBo   retry.Backoff
	// pages lets empty pages read without a wait be followed at once, up
	// to emptyPageBurst in a row and emptyPageRate a second after.
	pages *rate.Limiter
	err   error // terminal
	// seen are the ids that are not time UUIDs of the last maxSeen events
	// returned, as hashes (a registry's long ids do not add up): after
	// tells such ids apart only from the last, so a registry that sent
	// two of them again and again would have them taken for new, in a
	// loop without a wait. seenRing holds them in a ring, seenNext its
	// oldest once full.
	seenSeed maphash.Seed
	seen     map[uint64]struct{}
	seenRing []uint64
	seenNext int

	mu          sync.Mutex
	marker      string
	lastSuccess time.Time
}

// NewFeed returns a Feed that starts after marker: the id of the
// last event already seen, or a FeedMarker from a list. An event whose id
// is marker is not returned again (the registry's marker is inclusive),
// nor is one that comes before the last event returned in the feed's
// order (spec §9.2), which a registry that mishandles markers may send;
// an event whose id is not a time UUID (which the feed cannot order) is
// not returned again if it was among the last 10000. An empty marker
// starts at the registry's default window, the last hour.
func (c *Client) NewFeed(marker string, opts WatchOptions) *Feed {
	if opts.Wait <= 0 {
		opts.Wait = 30 * time.Second
	}
	if len(c.bases) > 1 {
		// A node that took the poll and froze is left only once the
		// poll's time is up: within about half a minute.
		opts.Wait = min(opts.Wait, maxNodesWait)
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 10 * time.Second
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 15 * time.Second
	}
	return &Feed{
		c:       c,
		opts:    opts,
		marker:  marker,
		errBo:   retry.Backoff{Min: opts.MinBackoff, Max: max(opts.MinBackoff, opts.MaxBackoff)},
		quickBo: retry.Backoff{Min: opts.MinBackoff, Max: max(opts.MinBackoff, opts.PollInterval)},
		pages:   rate.NewLimiter(emptyPageRate, emptyPageBurst),
	}
}

// Watch returns the events after marker as they happen, as a sequence;
// see Feed for what it does. Errors it retries go to opts.OnError; the
// sequence ends with a yielded error matching ErrMarkerExpired (re-list,
// then watch again), another permanent fault, or ctx's error. An event's
// ID is the marker to resume from after it.
//
//	for ev, err := range c.Watch(ctx, page.FeedMarker, registry.WatchOptions{}) {
//		if errors.Is(err, registry.ErrMarkerExpired) { /* re-list */ }
//		…
//	}
func (c *Client) Watch(ctx context.Context, marker string, opts WatchOptions) iter.Seq2[Event, error] {
	return c.NewFeed(marker, opts).All(ctx)
}

// All returns the Feed's events as a sequence that ends with a yielded
// error (see Watch).
func (w *Feed) All(ctx context.Context) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		for {
			ev, err := w.Next(ctx)
			if err != nil {
				yield(Event{}, err)
				return
			}
			if !yield(ev, nil) {
				return
			}
		}
	}
}

// Marker returns the id of the last event Next returned, or the starting
// marker before the first: where to resume watching.
func (w *Feed) Marker() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.marker
}

// LastSuccess returns when the registry last answered a poll; zero before
// the first answer. A watcher whose LastSuccess falls far behind is cut
// off from the registry.
func (w *Feed) LastSuccess() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastSuccess
}

// Buffered returns how many events Next can return without asking the
// registry: the rest of the page last fetched. A caller that applies events
// in batches takes that many more after the first.
func (w *Feed) Buffered() int { return len(w.queue) }

// Next returns the next event, waiting for it as long as ctx allows. It
// returns ctx's error when ctx ends (the Feed can then be used again),
// and a permanent error (one matching ErrMarkerExpired, or another fault
// that repeating the poll cannot cure) for this and every later call.
func (w *Feed) Next(ctx context.Context) (Event, error) {
	for len(w.queue) == 0 {
		if w.err != nil {
			return Event{}, w.err
		}
		if err := w.poll(ctx); err != nil {
			return Event{}, err
		}
	}
	ev := w.queue[0]
	w.queue = w.queue[1:]
	w.mu.Lock()
	w.marker = ev.ID
	w.mu.Unlock()
	return ev, nil
}

// Behind reports whether the registry's last page was full (the page
// size's events, or half a MiB of them) and named a next one, which Next
// fetches at once: the feed is catching up on a backlog. A page that
// names a next one without being full (a registry that names one always)
// does not count. Call it from the goroutine that calls Next.
func (w *Feed) Behind() bool { return w.behind }

// fullPageBytes is the size of an answer that counts as a full page for
// Behind: the registry cuts pages at 1 MiB.
const fullPageBytes = 512 << 10

// poll makes one request for events and queues what is new. It returns
// only ctx's error or a permanent one; other errors are retried by the
// next poll, after a backoff.
func (w *Feed) poll(ctx context.Context) error {
	if err := retry.Sleep(ctx, w.pollDelay); err != nil {
		return err
	}
	w.pollDelay = 0
	last := w.Marker()
	if w.from != "" {
		last = w.from
	}
	opts := EventListOptions{Marker: last, Limit: w.opts.Limit, Type: w.opts.Type, Wait: w.opts.Wait}
	following := w.next != ""
	if following {
		// More pages wait: no long-poll, since the registry would not count
		// the next_marker event itself as new.
		opts.Marker, opts.Wait = w.next, 0
	} else if opts.Limit == 1 {
		// A long-poll's first event is the one already seen, so a page of
		// one holds nothing new; and the registry would hold such a poll
		// although a next page exists.
		opts.Limit = 2
	}
	// A request that outlives its wait by far is lost (a dead connection).
	rctx, cancel := attemptContext(ctx, w.c.pollTime(opts.Wait))
	start := time.Now()
	page, size, err := w.c.listEventsPage(rctx, opts)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !Temporary(err) {
			w.err = err
			return err
		}
		// Not sooner than the answer asked (a rate limit's Retry-After),
		// up to the backoff's cap.
		w.pollDelay = w.errBo.Heed(w.errBo.Next(), LongestRetryAfter(err))
		if w.opts.OnError != nil {
			w.opts.OnError(err, w.pollDelay)
		}
		return nil
	}
	now := time.Now()
	w.errBo.Reset()
	w.mu.Lock()
	w.lastSuccess = now
	w.mu.Unlock()
	if w.opts.OnAnswer != nil {
		w.opts.OnAnswer()
	}

	if following && w.opts.Type == "" && nextGone(page.Values, opts.Marker) {
		// The registry answers 410 for a marker before the newest event
		// it deleted, not for that one: a client that saw it lost
		// nothing. This one never returned it.
		w.err = fmt.Errorf("%w: the event at next_marker %s was deleted before it was read; list again", ErrMarkerExpired, ShownText(opts.Marker))
		return w.err
	}
	// The marker is inclusive: the last event returned comes back first.
	// Any other at or before it (a registry that ignores the marker, or
	// sends older events again) was returned already, or is older than
	// what was: applied now, it would undo newer events.
	events, err := w.after(page.Values, last)
	w.queue = append(w.queue, events...)
	if err != nil {
		// Returned once the events before it are.
		w.err = err
		return nil
	}
	switch {
	case len(events) > 0:
		w.from = ""
	case opts.Marker != last:
		// An empty page followed from a next_marker: no event of the
		// feed's up to it, so not read again.
		w.from = opts.Marker
	}
	w.next = page.NextMarker
	if page.NextMarker == opts.Marker {
		w.next = "" // a marker that does not move would loop
	}
	pageSize := opts.Limit
	if pageSize == 0 {
		pageSize = 100 // the registry's default
	}
	w.behind = w.next != "" && (len(page.Values) >= pageSize || size >= fullPageBytes)
	switch {
	case len(events) > 0:
		w.quickBo.Reset()
	case page.Closing:
		// It is shutting down: ask again soon, on a new connection.
		w.pollDelay = w.quickBo.Next()
	case w.next != "" || opts.Wait == 0:
		// Nothing new in a page read without waiting, or one that names a
		// next: at once, as catching up through the empty pages of a
		// registry that filters by type after it pages (spec §13) needs,
		// but not in a tight loop should the registry answer so without
		// end.
		if !w.pages.Allow() {
			w.pollDelay = w.quickBo.Next()
		}
	case page.Wait <= 0:
		// The registry does not long-poll, or refused to wait: poll.
		w.pollDelay = retry.Jitter(w.opts.PollInterval, 0.2)
	case now.Sub(start) < min(opts.Wait, max(page.Wait, minTrustedWait))/2:
		// It said it waited but answered early with nothing (it is
		// shutting down, something between cuts long requests, or it
		// claims a wait it did not apply): do not spin.
		w.pollDelay = w.quickBo.Next()
	default:
		// A long-poll that waited its wait for nothing: the next one at
		// once.
		w.quickBo.Reset()
	}
	return nil
}

// A Feed follows up to emptyPageBurst empty pages in a row at once (10
// times the pages of an account's 10000 events at the registry's default
// limit), then emptyPageRate a second.
const (
	emptyPageBurst = 1000
	emptyPageRate  = 10
)

// minTrustedWait is the shortest wait a registry's X-Registry-Wait is
// taken at when it tells whether a long-poll answered early: a registry
// that says it waited a nanosecond and answers at once is not polled in a
// tight loop. A registry that applies less than the wait asked for (its
// cap) is otherwise trusted.
const minTrustedWait = time.Second

// maxSeen bounds Feed.seen: an account's events the registry keeps by
// default.
const maxSeen = 10000

// after returns the events of a page that come after last, and after
// every event before them, in the events feed's order (spec §9.2: by UUID
// time, then the other bytes); when last is not a time UUID (an empty
// marker), after the first event that is one. An event at or before last
// is one the feed returned already (a registry that ignores the marker)
// and is skipped; one after last but before an event the page brought
// first ends the page with an error matching ErrEventsOutOfOrder, the
// events before it returned. An id that is not a time UUID is compared
// only for equality: with last, and with those of the last maxSeen such
// events returned (seen).
func (w *Feed) after(events []Event, last string) ([]Event, error) {
	start, err := timeuuid.Parse(last)
	fromMarker := err == nil
	pos, ordered, prev := start, fromMarker, last
	out := events[:0:0]
	for _, ev := range events {
		if ev.ID == last {
			continue
		}
		u, err := timeuuid.Parse(ev.ID)
		switch {
		case err != nil:
			if !w.see(ev.ID) {
				continue
			}
		case ordered:
			if timeuuid.Compare(u, pos) <= 0 {
				if fromMarker && timeuuid.Compare(u, start) <= 0 {
					continue // returned already
				}
				return out, fmt.Errorf("%w: %s after %s in a page asked for from marker %s; list again", ErrEventsOutOfOrder, quotedText(ev.ID), quotedText(prev), quotedText(last))
			}
			pos = u
		default:
			// last is not a time UUID (no marker): the page's first one
			// is the feed's position from here on.
			pos, ordered = u, true
		}
		prev = ev.ID
		out = append(out, ev)
	}
	return out, nil
}

// nextGone reports whether a page read from the next_marker next (a time
// UUID), without a type filter, lacks that event: it is empty, or starts
// after it. (A registry that filters by type after it pages may start a
// page later; one that ignores the marker starts it earlier.)
func nextGone(events []Event, next string) bool {
	n, err := timeuuid.Parse(next)
	if err != nil {
		return false
	}
	if len(events) == 0 {
		return true
	}
	u, err := timeuuid.Parse(events[0].ID)
	return err == nil && timeuuid.Compare(u, n) > 0
}

// see notes id, one that is not a time UUID, as returned, and reports
// whether it is new: not among the last maxSeen such ids.
func (w *Feed) see(id string) bool {
	if w.seen == nil {
		w.seenSeed, w.seen = maphash.MakeSeed(), map[uint64]struct{}{}
	}
	h := maphash.String(w.seenSeed, id)
	if _, ok := w.seen[h]; ok {
		return false
	}
	w.seen[h] = struct{}{}
	if len(w.seenRing) < maxSeen {
		w.seenRing = append(w.seenRing, h)
		return true
	}
	delete(w.seen, w.seenRing[w.seenNext])
	w.seenRing[w.seenNext] = h
	w.seenNext = (w.seenNext + 1) % maxSeen
	return true
}
