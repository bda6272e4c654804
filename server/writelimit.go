package server

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// writeRoutes are the routes that write to the store: each commits a
// transaction and appends an event. Heartbeats are not among them: they
// stay in memory, and the store writes the heartbeat state of each service
// at most about once a second, however often it heartbeats.
var writeRoutes = map[string]bool{
	"services.create":      true,
	"services.update":      true,
	"services.delete":      true,
	"configuration.set":    true,
	"configuration.delete": true,
}

// writeLimiter is a token bucket of writes per tenant: one account cannot
// take the store's single writer (and the disk) from the others.
type writeLimiter struct {
	rate  rate.Limit
	burst int
	now   func() time.Time

	mu      sync.Mutex
	tenants map[string]*rate.Limiter
}

func newWriteLimiter(perSecond float64, burst int, now func() time.Time) *writeLimiter {
	return &writeLimiter{rate: rate.Limit(perSecond), burst: burst, now: now, tenants: map[string]*rate.Limiter{}}
}

// take counts one write of the tenant; if the bucket is empty it returns
// how long until a write is allowed again.
func (l *writeLimiter) take(tenant string) (wait time.Duration, ok bool) {
	l.mu.Lock()
	lim := l.tenants[tenant]
	if lim == nil {
		lim = rate.NewLimiter(l.rate, l.burst)
		l.tenants[tenant] = lim
	}
	l.mu.Unlock()
	now := l.now()
	if lim.AllowN(now, 1) {
		return 0, true
	}
	missing := 1 - lim.TokensAt(now)
	return time.Duration(missing / float64(l.rate) * float64(time.Second)), false
}

// limitWrite refuses a write beyond the tenant's write rate with the
// rate-limit fault (spec §3.3) and a Retry-After header.
func (s *Server) limitWrite(rq *request, routeName string) *fault {
	if s.writes == nil || !writeRoutes[routeName] {
		return nil
	}
	wait, ok := s.writes.take(rq.tenant)
	if ok {
		return nil
	}
	return rateLimited(fmt.Sprintf("Limit of %g write requests per second, in bursts of up to %d, has been reached", s.cfg.WriteRate, s.cfg.WriteBurst), wait)
}

// rateLimited is the rate-limit fault (spec §3.3), to be retried after
// wait.
func rateLimited(details string, wait time.Duration) *fault {
	return &fault{Status: http.StatusBadRequest, Type: faultRateLimit, Message: "Rate limit has been reached.", Details: details, RetryAfter: wait}
}
