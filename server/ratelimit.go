package server

import (
	"sync"
	"time"
)

// The one rate-limit rule (spec §10.3): GET requests, counted per tenant in
// 100-second buckets over a sliding day.
const (
	rateBucket  = 100 * time.Second
	rateWindow  = 86400 * time.Second
	rateBuckets = int(rateWindow / rateBucket)
)

type rateLimiter struct {
	limit int
	now   func() time.Time

	mu      sync.Mutex
	tenants map[string]*rateCount
}

type rateCount struct {
	buckets [rateBuckets]uint32
	last    int64 // index of the newest bucket, in bucket units since the epoch
	total   int
}

func newRateLimiter(limit int, now func() time.Time) *rateLimiter {
	return &rateLimiter{limit: limit, now: now, tenants: map[string]*rateCount{}}
}

// take counts one request and reports how many the window held before it,
// the bucket it counted it in (0 if it did not), and whether the request
// is within the limit.
func (l *rateLimiter) take(tenant string) (used int, at int64, ok bool) {
	idx := l.now().UnixNano() / int64(rateBucket)
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.tenants[tenant]
	if c == nil {
		c = &rateCount{last: idx}
		l.tenants[tenant] = c
	}
	c.advance(idx)
	used = c.total
	if used >= l.limit {
		return used, 0, false
	}
	c.buckets[idx%int64(rateBuckets)]++
	c.total++
	return used, idx, true
}

// giveBack takes back a request take counted in bucket at, if the window
// still holds that bucket.
func (l *rateLimiter) giveBack(tenant string, at int64) {
	idx := l.now().UnixNano() / int64(rateBucket)
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.tenants[tenant]
	if c == nil {
		return
	}
	c.advance(idx)
	if b := &c.buckets[at%int64(rateBuckets)]; at > c.last-int64(rateBuckets) && *b > 0 {
		*b--
		c.total--
	}
}

// used reports the window's count without counting a request.
func (l *rateLimiter) used(tenant string) int {
	idx := l.now().UnixNano() / int64(rateBucket)
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.tenants[tenant]
	if c == nil {
		return 0
	}
	c.advance(idx)
	return c.total
}

// advance drops the buckets that fell out of the window.
func (c *rateCount) advance(idx int64) {
	if idx <= c.last {
		return
	}
	steps := min(idx-c.last, int64(rateBuckets))
	for i := int64(1); i <= steps; i++ {
		b := &c.buckets[(c.last+i)%int64(rateBuckets)]
		c.total -= int(*b)
		*b = 0
	}
	c.last = idx
}
