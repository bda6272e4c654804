package registry

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/svcreg/svcreg/internal/retry"
)

// CacheOptions configure a ServicesCache.
type CacheOptions struct {
	// Tag, if set, caches only the services carrying it.
	Tag string
	// RefreshInterval is how old the list may get before Get fetches it
	// again; 10s if 0.
	RefreshInterval time.Duration
	// FetchTimeout bounds one fetch of the whole list; 10s if 0.
	FetchTimeout time.Duration
	// MaxStale, if set, is the oldest a list Get serves while the
	// registry fails: past it Get returns the fetch's error (a
	// *StaleError) instead. If 0, the last good list is served however
	// old, and only its Age says so: the registry may refuse for good (a
	// credential revoked, an account deleted).
	MaxStale time.Duration
}

// StaleError is Get's error when the registry fails and the last good
// list is older than MaxStale.
type StaleError struct {
	Age time.Duration // of the last good list
	Err error         // the fetch's
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("registry: services list not fetched for %v, past the cache's MaxStale: %v", e.Age.Round(time.Millisecond), e.Err)
}

func (e *StaleError) Unwrap() error { return e.Err }

// CachedServices is the services list as a ServicesCache holds it. Its
// Services are shared by every caller: do not modify them.
type CachedServices struct {
	Services []Service
	// FeedMarker is the X-Registry-Marker of the fetch's first page.
	FeedMarker string
	// FetchedAt is when the list was fetched; Age is how long ago.
	FetchedAt time.Time
	Age       time.Duration
	// Stale reports that the last refresh failed and this is the last good
	// list; Err is why the refresh failed.
	Stale bool
	Err   error
}

// ServicesCache caches the services list, so that a registry hiccup does
// not interrupt its users: while the registry fails, Get serves the last
// good list, marked Stale with its Age, and tries again after a capped,
// jittered backoff. It is safe for concurrent use; concurrent fetches are
// merged into one.
type ServicesCache struct {
	c    *Client
	opts CacheOptions

	flight flight[CachedServices]

	mu      sync.Mutex
	cur     CachedServices // FetchedAt zero until the first success
	lastErr error
	retryAt time.Time // no fetch before this after a failure
	bo      retry.Backoff
}

// firstFetchRetry bounds the wait after a failed fetch while the cache
// has never had a list.
const firstFetchRetry = 10 * time.Second

// NewServicesCache returns an empty cache; the first Get fetches.
func NewServicesCache(c *Client, opts CacheOptions) *ServicesCache {
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = 10 * time.Second
	}
	if opts.FetchTimeout <= 0 {
		opts.FetchTimeout = 10 * time.Second
	}
	return &ServicesCache{c: c, opts: opts, bo: retry.Backoff{Min: 100 * time.Millisecond, Max: max(opts.RefreshInterval, 100*time.Millisecond)}}
}

// Get returns the services list: the cached one if it is younger than the
// refresh interval, else a fresh one. If the fetch fails, Get returns the
// last good list with Stale set and a nil error; it returns an error only
// when it has never fetched the list, when ctx ends, or when the last
// good list is older than MaxStale (a *StaleError). After a failed
// fetch the next waits a backoff (100 ms doubling up to the refresh
// interval, jittered; longer if the registry's Retry-After asks, up to
// that; before a first success, at most 10 s): Gets meanwhile get the
// last error, or the stale list. With a list to serve (within
// MaxStale), that next fetch runs in the background: only the Get whose
// fetch failed first waits for it (up to FetchTimeout), and the others
// get the stale list at once until a fetch succeeds.
func (sc *ServicesCache) Get(ctx context.Context) (CachedServices, error) {
	now := time.Now()
	sc.mu.Lock()
	cur, lastErr, retryAt := sc.cur, sc.lastErr, sc.retryAt
	sc.mu.Unlock()
	if !cur.FetchedAt.IsZero() && now.Sub(cur.FetchedAt) < sc.opts.RefreshInterval {
		return sc.view(cur, now, nil), nil
	}
	if lastErr != nil && now.Before(retryAt) {
		// After a failure, the next fetch waits its backoff (or the
		// registry's Retry-After), with or without a list to serve:
		// callers in a loop before the first success sent thousands of
		// requests a second.
		if cur.FetchedAt.IsZero() {
			return CachedServices{}, lastErr
		}
		return sc.stale(cur, now, lastErr)
	}
	if lastErr != nil && !cur.FetchedAt.IsZero() && (sc.opts.MaxStale <= 0 || now.Sub(cur.FetchedAt) <= sc.opts.MaxStale) {
		// The last fetch failed: the next goes on behind the last good
		// list. Waited for, a registry that takes requests and never
		// answers held up nearly every Get for FetchTimeout, each
		// fetch 100 ms after the one before gave up. (A list past
		// MaxStale is none to serve: the Get waits for the fetch, which
		// may find the registry back, as a Get with no list does.)
		sc.flight.join(ctx, sc.opts.FetchTimeout, sc.fetch)
		return sc.stale(cur, now, lastErr)
	}
	fresh, err := sc.flight.do(ctx, sc.opts.FetchTimeout, sc.fetch)
	now = time.Now()
	switch {
	case err == nil:
		return sc.view(fresh, now, nil), nil
	case ctx.Err() != nil || cur.FetchedAt.IsZero():
		return CachedServices{}, err
	}
	return sc.stale(cur, now, err)
}

// stale is Get's answer when the fetch failed (err) and cur is the last
// good list: cur, unless it is older than MaxStale.
func (sc *ServicesCache) stale(cur CachedServices, now time.Time, err error) (CachedServices, error) {
	if age := now.Sub(cur.FetchedAt); sc.opts.MaxStale > 0 && age > sc.opts.MaxStale {
		return CachedServices{}, &StaleError{Age: age, Err: err}
	}
	return sc.view(cur, now, err), nil
}

func (sc *ServicesCache) view(cs CachedServices, now time.Time, err error) CachedServices {
	cs.Age = now.Sub(cs.FetchedAt)
	cs.Stale, cs.Err = err != nil, err
	return cs
}

// fetch lists every page and records the result.
func (sc *ServicesCache) fetch(ctx context.Context) (CachedServices, error) {
	var cs CachedServices
	first := true
	for p, err := range sc.c.ListServicesPages(ctx, ServiceListOptions{Tag: sc.opts.Tag, Limit: 1000}) {
		if err != nil {
			sc.mu.Lock()
			wait := sc.bo.Heed(sc.bo.Next(), LongestRetryAfter(err))
			if sc.cur.FetchedAt.IsZero() {
				// No list to serve meanwhile: not longer than
				// firstFetchRetry, whatever the refresh interval.
				wait = min(wait, firstFetchRetry)
			}
			sc.lastErr, sc.retryAt = err, time.Now().Add(wait)
			sc.mu.Unlock()
			return CachedServices{}, err
		}
		if first {
			cs.FeedMarker, first = p.FeedMarker, false
		}
		cs.Services = append(cs.Services, p.Values...)
	}
	cs.FetchedAt = time.Now()
	sc.mu.Lock()
	sc.cur, sc.lastErr, sc.retryAt = cs, nil, time.Time{}
	sc.bo.Reset()
	sc.mu.Unlock()
	return cs, nil
}
