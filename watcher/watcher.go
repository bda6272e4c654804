package watcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/svcreg/svcreg/internal/retry"
	"github.com/svcreg/svcreg/registry"
)

// Config configures a Watcher. Client is required; every other field
// has a default.
type Config struct {
	// Client reaches the registry; its MaxListItems bounds the snapshot
	// too. The Watcher does not close it.
	Client *registry.Client
	// Wait is how long a long-poll asks the registry to wait; 60s if zero
	// (at most 20s with several registry URLs: see registry.WatchOptions).
	Wait time.Duration
	// Resync is how often everything is listed again as a safety net; 10m
	// if zero.
	Resync time.Duration
	// Outage is how long the feed may fail before the watcher gives up
	// following it and lists everything again once the registry is back;
	// 10s if zero.
	Outage time.Duration
	// MaxBackoff caps the delay between failed lists; 15s if zero.
	MaxBackoff time.Duration
	// Coalesce is how long the watcher waits, after the feed answered with
	// events, before it asks for more: changes that come as a stream are
	// then fetched and applied a batch at a time instead of one long-poll
	// each, which is what a busy registry costs a watcher. An event that
	// comes when the feed was quiet for Coalesce is not delayed. 0 asks
	// again at once.
	Coalesce time.Duration
	// PollEvery and PollBurst bound the polls of the feed that bring
	// events: PollBurst at once, then one every PollEvery while changes
	// keep coming. Each poll is a GET, which the registry counts against
	// the account's limit (500,000 a day by default), and a stream of
	// writes (any credential holder may make 20 a second) would otherwise
	// cost each watcher a GET a write, and spend the limit of every
	// client of the account. An event after a quiet spell is fetched at
	// once, and a full page that names a next one (the watcher catching
	// up) is followed at once. 2s and 10 if zero; a negative PollEvery sets
	// no bound.
	PollEvery time.Duration
	PollBurst int
	// Logger receives the watcher's warnings (failed lists and polls) and
	// its relists; nothing is logged if nil.
	Logger *slog.Logger
	// Registerer receives the svcreg_watcher_* metrics; none if nil. New
	// panics if they are registered already: one Watcher per Registerer.
	Registerer prometheus.Registerer
	// StopOnRefusedCredentials, for a one-shot command, ends Run with an
	// error matching registry.ErrUnauthorized when the registry (or its
	// identity service) refuses the credentials before the first sync,
	// instead of retrying until someone fixes them. After the first sync,
	// and without it, refused credentials are retried as any failure is
	// (they may be fixed on the server).
	StopOnRefusedCredentials bool
}

// CredentialsRefused is what the log and a one-shot command's error say
// when the registry or its identity service refuses the credentials (a
// 401): waiting does not cure that.
const CredentialsRefused = "the registry refused the credentials (check the username and API key, password or token)"

// refusedRetrying is the log line of refused credentials retried.
const refusedRetrying = CredentialsRefused + "; retrying, in case they are fixed on the registry (new ones in the config or the environment need a restart)"

// Watcher keeps a Snapshot of the registry: it lists services and
// configuration, then follows the events feed from the lists' marker with
// long-polls, applying each page of events to a new Snapshot. It lists
// again when the marker expires, after an outage, and every Resync.
// Snapshots are published through the embedded Latest, which Run alone
// should Put to.
//
// Status and the Latest's methods are safe for concurrent use; Run must
// not run twice at once.
type Watcher struct {
	*Latest
	cfg     Config
	log     *slog.Logger
	metrics watcherMetrics

	// polls bounds the polls that bring events (Config.PollEvery); nil
	// for none. Kept across lists, which take GETs of their own.
	polls *rate.Limiter

	mu     sync.Mutex
	status Status
	feed   *registry.Feed // the feed being followed, nil while listing
	// unreached counts the requests that failed since the registry last
	// answered, the first of them at unreachedSince: when it answers
	// again, one line says so.
	unreached      int
	unreachedSince time.Time
}

// New returns a Watcher; Run starts it. It panics if cfg.Client is nil,
// or if cfg.Registerer holds the watcher's metrics already.
func New(cfg Config) *Watcher {
	if cfg.Client == nil {
		panic("watcher: Config.Client is nil")
	}
	if cfg.Wait <= 0 {
		cfg.Wait = 60 * time.Second
	}
	if cfg.Resync <= 0 {
		cfg.Resync = 10 * time.Minute
	}
	if cfg.Outage <= 0 {
		cfg.Outage = 10 * time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 15 * time.Second
	}
	if cfg.PollEvery == 0 {
		cfg.PollEvery = 2 * time.Second
	}
	if cfg.PollBurst <= 0 {
		cfg.PollBurst = 10
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{Latest: NewLatest(), cfg: cfg, log: cfg.Logger}
	if cfg.PollEvery > 0 {
		w.polls = rate.NewLimiter(rate.Every(cfg.PollEvery), cfg.PollBurst)
	}
	w.metrics = newWatcherMetrics(cfg.Registerer, w.lastContact)
	return w
}

// Status returns how the watcher is doing.
func (w *Watcher) Status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.status
	// Every answer of the feed is contact, an empty long-poll included: a
	// quiet registry is not a stale one.
	if w.feed != nil {
		if t := w.feed.LastSuccess(); t.After(st.LastContact) {
			st.LastContact = t
		}
	}
	return st
}

// lastContact is the last_contact metric: Unix seconds, 0 before any.
func (w *Watcher) lastContact() float64 {
	t := w.Status().LastContact
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// Run lists and follows the feed until ctx is done, then returns nil
// (promptly: the long-poll under way is abandoned; a list under way is
// too, and Status.Unanswered says what it was waiting for). It never gives up
// before that (but see StopOnRefusedCredentials): a registry that is down,
// or refuses the credentials, is retried with capped, jittered backoff
// (and not sooner than an answer's Retry-After asks, up to the cap), and
// the last snapshot stays published meanwhile. Until the first list
// succeeds, Snapshot is nil.
func (w *Watcher) Run(ctx context.Context) error {
	backoff := retry.Backoff{Min: 100 * time.Millisecond, Max: w.cfg.MaxBackoff}
	reason := "start"
	for {
		snap, err := w.list(ctx)
		if ctx.Err() != nil {
			if err != nil {
				w.mu.Lock()
				w.status.Unanswered = err.Error()
				w.mu.Unlock()
			}
			return nil
		}
		if err != nil {
			w.failed(err)
			w.unanswered()
			refused := errors.Is(err, registry.ErrUnauthorized)
			if refused && w.cfg.StopOnRefusedCredentials && w.Snapshot() == nil {
				w.log.Error(CredentialsRefused, "err", err)
				return fmt.Errorf("%s: %w", CredentialsRefused, err)
			}
			// Not sooner than the answer asked (Retry-After), up to the
			// backoff's cap.
			d := backoff.Heed(backoff.Next(), registry.LongestRetryAfter(err))
			if refused {
				w.log.Error(refusedRetrying, "err", err, "retry_in", d)
			} else {
				w.log.Warn("list the registry", "err", err, "retry_in", d)
			}
			if retry.Sleep(ctx, d) != nil {
				return nil
			}
			continue
		}
		w.metrics.resyncs.WithLabelValues(reason).Inc()
		w.answered()
		w.publishList(snap)
		w.log.Info("synced with the registry", "reason", reason, "marker", snap.Marker)
		reason = w.follow(ctx, snap.Marker)
		if ctx.Err() != nil {
			return nil
		}
		if !slices.Contains([]string{"feed-error", "undecodable-event", "too-many", "marker-expired", "out-of-order"}, reason) {
			backoff.Reset()
			continue
		}
		// The registry lists but refuses the feed, sends what cannot be
		// decoded, out of order or more than a list may hold, or expires the marker of
		// the list it has just given (a proxy that answers long requests
		// 410): do not spin.
		if retry.Sleep(ctx, backoff.Next()) != nil {
			return nil
		}
	}
}

// list reads every service and configuration value. The marker is the
// first services page's X-Registry-Marker: every change after that read is
// in the feed from it, and replaying one the lists already hold is
// harmless (Snapshot.Apply is idempotent). The pages are read one after
// the other, so together they may show a state the registry never had (a
// service deleted before a later page read a configuration value written
// after the deletion): the feed is replayed from the marker to its head
// before the snapshot is returned, which makes it the registry's state at
// that head.
func (w *Watcher) list(ctx context.Context) (*Snapshot, error) {
	c := w.cfg.Client
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	// Through the client's pager, which stops a registry paging in a loop
	// or without end; the first page's marker is the feed's.
	var marker string
	var services []registry.Service
	first := true
	for p, err := range c.ListServicesPages(ctx, registry.ServiceListOptions{Limit: 1000}) {
		if err != nil {
			return nil, fmt.Errorf("list services: %w", err)
		}
		if first {
			marker, first = p.FeedMarker, false
		}
		services = append(services, p.Values...)
	}
	var config []registry.ConfigValue
	for cv, err := range c.ListConfig(ctx, registry.ConfigListOptions{Limit: 1000}) {
		if err != nil {
			return nil, fmt.Errorf("list configuration: %w", err)
		}
		config = append(config, cv)
	}
	if marker == "" {
		return nil, errors.New("the registry gave no X-Registry-Marker: it cannot be watched (is it an svcreg server?)")
	}
	var events []registry.Event
	for ev, err := range c.ListEvents(ctx, registry.EventListOptions{Marker: marker, Limit: 1000}) {
		if err != nil {
			return nil, fmt.Errorf("read the feed's changes made while listing: %w", err)
		}
		events = append(events, ev)
	}
	now := time.Now()
	snap, _, err := NewSnapshot(services, config, marker, now).Apply(events, now)
	if err != nil {
		w.metrics.undecodable.Inc()
		return nil, fmt.Errorf("read the feed's changes made while listing: %w", err)
	}
	if tooMany := bounded(c, nil, snap); tooMany != nil {
		// The changes made while listing are outside the pager's count.
		return nil, fmt.Errorf("%w; if the registry holds that many, raise [registry] max_list_items", tooMany)
	}
	return snap, nil
}

// publishList publishes a freshly listed snapshot, keeping the version of
// the current one when nothing changed.
func (w *Watcher) publishList(snap *Snapshot) {
	if cur := w.Snapshot(); cur != nil {
		snap.Version = cur.Version
		if !sameContent(cur, snap) {
			snap.Version++
		} else {
			snap.ChangedAt = cur.ChangedAt
		}
	}
	now := time.Now()
	w.mu.Lock()
	w.status.Synced = true
	w.status.Marker = snap.Marker
	if !w.status.LastSync.IsZero() {
		w.status.Resyncs++
	}
	w.status.LastSync, w.status.LastContact = now, now
	w.status.LastError, w.status.LastErrorAt = "", time.Time{}
	w.mu.Unlock()
	w.metrics.synced.Set(1)
	w.Put(snap)
}

// follow applies the feed from marker until it must list again, and says
// why.
func (w *Watcher) follow(ctx context.Context, marker string) string {
	// The feed is followed until the next resync, or until it has failed
	// for longer than Outage.
	fctx, cancel := context.WithTimeout(ctx, retry.Jitter(w.cfg.Resync, 0.2))
	defer cancel()
	outage := ""
	// failingSince is when the feed began failing: the first error after
	// an answer (a long-poll answered with nothing new counts).
	var failingSince time.Time
	var feed *registry.Feed
	feed = w.cfg.Client.NewFeed(marker, registry.WatchOptions{
		Wait:       w.cfg.Wait,
		Limit:      1000, // what PollEvery holds back comes in a GET
		MaxBackoff: w.cfg.MaxBackoff,
		OnAnswer:   w.answered,
		OnError: func(err error, retryIn time.Duration) {
			w.failed(err)
			w.unanswered()
			if errors.Is(err, registry.ErrUnauthorized) {
				w.log.Error(refusedRetrying, "err", err, "retry_in", retryIn)
			} else {
				w.log.Warn("follow the registry's feed", "err", err, "retry_in", retryIn)
			}
			if failingSince.IsZero() || feed.LastSuccess().After(failingSince) {
				failingSince = time.Now()
			}
			if time.Since(failingSince) > w.cfg.Outage {
				outage = "outage"
				cancel()
			}
		},
	})
	w.mu.Lock()
	w.feed = feed
	w.mu.Unlock()
	defer func() {
		// Keep the feed's last answer as contact once it is gone.
		st := w.Status()
		w.mu.Lock()
		w.status.LastContact, w.feed = st.LastContact, nil
		w.mu.Unlock()
	}()
	for {
		ev, err := feed.Next(fctx)
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return ""
			case outage != "":
				return outage
			case fctx.Err() != nil:
				return "periodic"
			case errors.Is(err, registry.ErrMarkerExpired):
				w.log.Warn("the feed's marker expired; listing again", "marker", feed.Marker())
				return "marker-expired"
			case errors.Is(err, registry.ErrEventsOutOfOrder):
				// Applied or skipped, such an event would leave the
				// snapshot apart from the registry.
				w.failed(err)
				w.log.Error("the registry sent events out of order; listing again", "err", err)
				return "out-of-order"
			}
			w.failed(err)
			w.log.Warn("the registry refused to follow the feed; listing again", "err", err)
			return "feed-error"
		}
		failingSince = time.Time{}
		batch := []registry.Event{ev}
		for feed.Buffered() > 0 {
			ev, err := feed.Next(fctx)
			if err != nil {
				break
			}
			batch = append(batch, ev)
		}
		if err := w.apply(batch, feed.LastSuccess()); err != nil {
			w.failed(err)
			if errors.As(err, new(*tooManyError)) {
				w.log.Error("the registry's events would hold more than a list may; listing again", "err", err)
				return "too-many"
			}
			// Skipping the event would leave the snapshot silently apart
			// from the registry until the next periodic list.
			w.metrics.undecodable.Inc()
			w.log.Error("an event from the registry could not be decoded; listing again", "err", err)
			return "undecodable-event"
		}
		if w.cfg.Coalesce > 0 {
			_ = retry.Sleep(fctx, w.cfg.Coalesce)
		}
		if w.polls != nil && !feed.Behind() {
			// A full page that names a next one is followed at once:
			// the feed is catching up, a page (of up to 1000 events or
			// 1 MiB) a GET, and a steady stream must not outrun it.
			// Reserved, not Wait: a wait past fctx's deadline (the next
			// list) is waited out, not skipped.
			r := w.polls.Reserve()
			if retry.Sleep(fctx, r.Delay()) != nil {
				r.Cancel()
			}
		}
	}
}

// apply applies a batch of events and publishes the result. It stops at an
// event that cannot be decoded and returns its error; the events before it
// are published.
func (w *Watcher) apply(events []registry.Event, contact time.Time) error {
	cur := w.Snapshot()
	next, _, err := cur.Apply(events, time.Now())
	if tooMany := bounded(w.cfg.Client, cur, next); tooMany != nil {
		// A registry that sends new services without end, or ever larger
		// ones (a list would have failed past the bound), would grow the
		// snapshot until the next periodic list: it stays as it was.
		return tooMany
	}
	w.metrics.events.Add(float64(len(events)))
	w.mu.Lock()
	w.status.Marker = next.Marker
	w.status.LastContact = contact
	w.status.LastError, w.status.LastErrorAt = "", time.Time{}
	w.mu.Unlock()
	w.Put(next)
	return err
}

// bounded is the error of a snapshot next that events took past what a
// list of c takes (its MaxListItems services or configuration values,
// its MaxListBytes of registry text), grown from cur (nil: from nothing);
// nil if it is within them or did not grow.
func bounded(c *registry.Client, cur, next *Snapshot) *tooManyError {
	if cur == nil {
		cur = &Snapshot{}
	}
	max, maxBytes := c.MaxListItems(), c.MaxListBytes()
	if grownPast(next.services.len(), cur.services.len(), max) || grownPast(next.config.len(), cur.config.len(), max) {
		return &tooManyError{max: max}
	}
	if grownPast(next.bytes, cur.bytes, maxBytes) {
		return &tooManyError{maxBytes: maxBytes}
	}
	return nil
}

// grownPast reports whether a count that was was has grown to n, past max.
func grownPast[N int | int64](n, was, max N) bool { return n > max && n > was }

// tooManyError is a snapshot that events took past the client's
// MaxListItems services or configuration values (max), or past its
// MaxListBytes of registry text (maxBytes).
type tooManyError struct {
	max      int
	maxBytes int64
}

func (e *tooManyError) Error() string {
	if e.maxBytes != 0 {
		size := fmt.Sprintf("%d KiB", e.maxBytes>>10)
		if e.maxBytes >= 1<<20 {
			size = fmt.Sprintf("%d MiB", e.maxBytes>>20)
		}
		return "the events took the snapshot past " + size + " of ids, tags, metadata and values, the most a list takes (10 KiB for each of registry.Config.MaxListItems)"
	}
	return fmt.Sprintf("the events took the snapshot past %d services or configuration values, the most a list takes (registry.Config.MaxListItems)", e.max)
}

// unanswered counts a request to the registry that failed and is retried.
func (w *Watcher) unanswered() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.unreached == 0 {
		w.unreachedSince = time.Now()
	}
	w.unreached++
}

// answered notes that the registry answered, which clears the last
// error (an empty long-poll included: Status.LastError is since the last
// contact); after failed requests, it logs (once) that it is reached
// again.
func (w *Watcher) answered() {
	w.mu.Lock()
	n, since := w.unreached, w.unreachedSince
	w.unreached = 0
	w.status.LastError, w.status.LastErrorAt = "", time.Time{}
	w.mu.Unlock()
	if n > 0 {
		w.log.Info("the registry answers again", "failed_requests", n, "after", time.Since(since).Round(time.Millisecond))
	}
}

// failed records an error talking to the registry.
func (w *Watcher) failed(err error) {
	w.metrics.errors.Inc()
	w.mu.Lock()
	w.status.LastError, w.status.LastErrorAt = err.Error(), time.Now()
	w.mu.Unlock()
}

// sameContent compares two snapshots' services and configuration; it
// runs after a list, never per event.
func sameContent(a, b *Snapshot) bool {
	if a.services.len() != b.services.len() || a.config.len() != b.config.len() ||
		!slices.EqualFunc(a.Services(), b.Services(), sameService) {
		return false
	}
	same := true
	a.config.withPrefix("", func(id, v string) {
		if o, ok := b.config.get(id); !ok || o != v {
			same = false
		}
	})
	return same
}

type watcherMetrics struct {
	synced      prometheus.Gauge
	lastContact prometheus.GaugeFunc
	resyncs     *prometheus.CounterVec
	events      prometheus.Counter
	errors      prometheus.Counter
	undecodable prometheus.Counter
}

func newWatcherMetrics(r prometheus.Registerer, lastContact func() float64) watcherMetrics {
	m := watcherMetrics{
		synced: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "svcreg_watcher_synced", Help: "1 once the watcher has listed the registry."}),
		lastContact: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "svcreg_watcher_last_contact_timestamp_seconds", Help: "When the registry last answered the watcher (an empty long-poll counts)."},
			lastContact),
		resyncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "svcreg_watcher_lists_total", Help: "Full lists of the registry, by reason (start, periodic, outage, marker-expired, feed-error, out-of-order, undecodable-event, too-many)."},
			[]string{"reason"}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_watcher_events_total", Help: "Events applied from the feed."}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_watcher_errors_total", Help: "Failed requests to the registry."}),
		undecodable: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_watcher_undecodable_events_total", Help: "Events whose payload could not be decoded; each one makes the watcher list the registry again."}),
	}
	if r != nil {
		r.MustRegister(m.synced, m.lastContact, m.resyncs, m.events, m.errors, m.undecodable)
	}
	return m
}
