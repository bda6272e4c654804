package server

import (
	"context"
	"errors"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/svcreg/svcreg/internal/clientaddr"
)

// AuthLimits bound what the identity endpoint spends on one client address,
// one username and one user, and on bcrypt overall (docs/security.md). A
// zero field takes its default; a negative one turns that limit off.
type AuthLimits struct {
	// FailuresPerAddress is how many failed token requests one client
	// address (an IPv6 address by its /64) may make per minute; once it is
	// spent, every token request from the address is refused until it
	// refills. Default 30.
	FailuresPerAddress int
	// FailuresPerUser is how many failed password logins may name one
	// username per minute; once spent, password logins for that username
	// are refused without a check until it refills. API-key logins neither
	// count nor are refused. Default 10.
	FailuresPerUser int
	// IssuesPerUser is how many tokens one user may be issued per hour
	// (each is stored until it expires). Default 600.
	IssuesPerUser int
	// BcryptConcurrency is how many password checks may run at once.
	// Default: half the CPUs, at least 1.
	BcryptConcurrency int
	// BcryptQueue is how many password checks may wait for a turn; past
	// it, or after waiting BcryptWait, the request is refused with 503.
	// Default 64.
	BcryptQueue int
	// BcryptWait is how long a password check may wait for a turn.
	// Default 5s.
	BcryptWait time.Duration
}

// DefaultAuthLimits are the limits a zero AuthLimits gets. Treat it as
// read-only: NewAuth reads it, so a write changes the defaults of every
// Auth made afterwards.
var DefaultAuthLimits = AuthLimits{
	FailuresPerAddress: 30,
	FailuresPerUser:    10,
	IssuesPerUser:      600,
	BcryptConcurrency:  max(1, runtime.GOMAXPROCS(0)/2),
	BcryptQueue:        64,
	BcryptWait:         5 * time.Second,
}

func (l AuthLimits) withDefaults() AuthLimits {
	d := DefaultAuthLimits
	pick := func(v, def int) int {
		if v == 0 {
			return def
		}
		return v
	}
	l.FailuresPerAddress = pick(l.FailuresPerAddress, d.FailuresPerAddress)
	l.FailuresPerUser = pick(l.FailuresPerUser, d.FailuresPerUser)
	l.IssuesPerUser = pick(l.IssuesPerUser, d.IssuesPerUser)
	l.BcryptConcurrency = max(1, pick(l.BcryptConcurrency, d.BcryptConcurrency))
	l.BcryptQueue = max(0, pick(l.BcryptQueue, d.BcryptQueue))
	if l.BcryptWait == 0 {
		l.BcryptWait = d.BcryptWait
	}
	return l
}

// maxLimiterKeys bounds the memory of one keyedLimiter: past it, a new key
// takes the place of the least recently used one.
const maxLimiterKeys = 100000

// keyedLimiter is a token bucket per key: burst tokens, refilled at burst
// per period. Buckets that are full again are forgotten.
type keyedLimiter struct {
	mu      sync.Mutex
	burst   float64
	perSec  float64
	now     func() time.Time
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// newKeyedLimiter returns a limiter of n per period, or nil (no limit) if n
// is negative.
func newKeyedLimiter(n int, period time.Duration, now func() time.Time) *keyedLimiter {
	if n < 0 {
		return nil
	}
	return &keyedLimiter{burst: float64(n), perSec: float64(n) / period.Seconds(), now: now, buckets: map[string]*bucket{}}
}

// refill brings b up to date; the caller holds mu.
func (l *keyedLimiter) refill(b *bucket, now time.Time) {
	b.tokens = min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.perSec)
	b.at = now
}

// reserve takes one of key's tokens before the attempt it bounds, and
// reports whether there was one, or else how long until there is. Past
// maxLimiterKeys keys, a new key takes the place of the one least recently
// used (once the full buckets are forgotten), so that new keys stay
// limited: the worst an attacker filling the map gets is a fresh budget
// for a key it has left alone the longest.
func (l *keyedLimiter) reserve(key string) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= maxLimiterKeys {
			l.evict(now)
		}
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	l.refill(b, now)
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) / l.perSec * float64(time.Second))
	}
	b.tokens--
	return true, 0
}

// refund gives back the token reserve took, for an attempt that did not
// fail.
func (l *keyedLimiter) refund(key string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if b, ok := l.buckets[key]; ok {
		l.refill(b, l.now())
		b.tokens = min(l.burst, b.tokens+1)
	}
}

// evict forgets the buckets that are full again, and if none is, the one
// used least recently; the caller holds mu.
func (l *keyedLimiter) evict(now time.Time) {
	var oldest string
	var oldestAt time.Time
	found := false
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.at).Seconds()*l.perSec >= l.burst {
			delete(l.buckets, k)
		} else if !found || b.at.Before(oldestAt) {
			oldest, oldestAt, found = k, b.at, true
		}
	}
	if len(l.buckets) >= maxLimiterKeys {
		delete(l.buckets, oldest)
	}
}

// prune forgets the buckets that are full again; the caller holds mu.
func (l *keyedLimiter) prune(now time.Time) {
	for k, b := range l.buckets {
		if l.refill(b, now); b.tokens >= l.burst {
			delete(l.buckets, k)
		}
	}
}

// pruneAll is prune under the lock, for the background loop.
func (l *keyedLimiter) pruneAll() {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.prune(l.now())
}

// clientAddress is the key of a request's client for FailuresPerAddress:
// its IP, or for IPv6 its /64.
func clientAddress(r *http.Request) string { return clientaddr.Key(r.RemoteAddr) }

// errBusy is a password check refused because too many wait for a turn.
var errBusy = errors.New("too many password checks waiting")

// bcryptGate bounds the password checks running at once, so that they
// cannot take every CPU from the API, and the checks waiting, so that a
// flood is refused rather than queued without end.
type bcryptGate struct {
	slots   chan struct{}
	waiting chan struct{}
	wait    time.Duration
}

func newBcryptGate(l AuthLimits) *bcryptGate {
	return &bcryptGate{slots: make(chan struct{}, l.BcryptConcurrency), waiting: make(chan struct{}, l.BcryptQueue), wait: l.BcryptWait}
}

// do runs check when a slot is free, or returns errBusy.
func (g *bcryptGate) do(ctx context.Context, check func()) error {
	select {
	case g.slots <- struct{}{}:
	default:
		select {
		case g.waiting <- struct{}{}:
		default:
			return errBusy
		}
		t := time.NewTimer(g.wait)
		select {
		case g.slots <- struct{}{}:
			t.Stop()
			<-g.waiting
		case <-t.C:
			<-g.waiting
			return errBusy
		case <-ctx.Done():
			t.Stop()
			<-g.waiting
			return ctx.Err()
		}
	}
	defer func() { <-g.slots }()
	check()
	return nil
}
