package store

import (
	"log/slog"
	"time"
)

// DefaultRetention is how long events are kept by default.
const DefaultRetention = 30 * 24 * time.Hour

// Options are the options every store takes. Each store's own options
// carry these fields and apply WithDefaults to them once, in Open.
type Options struct {
	// Clock returns the current time; time.Now by default.
	Clock func() time.Time
	// Logger receives the store's logs; nothing is logged if nil.
	Logger *slog.Logger
	// DefaultLimits are given to new accounts; DefaultLimits if zero.
	DefaultLimits Limits
	// Retention is how long events are kept; DefaultRetention if zero.
	Retention time.Duration
	// MaxEvents is the most events an account keeps; DefaultMaxEvents if
	// zero, negative keeps every event for the whole retention window.
	MaxEvents int
	// MaxEventBytes caps the bytes of an account's events in the same way;
	// DefaultMaxEventBytes if zero, no cap if negative.
	MaxEventBytes int64
}

// WithDefaults returns o with its zero fields set to their defaults.
func (o Options) WithDefaults() Options {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.DefaultLimits == (Limits{}) {
		o.DefaultLimits = DefaultLimits
	}
	if o.Retention == 0 {
		o.Retention = DefaultRetention
	}
	if o.MaxEvents == 0 {
		o.MaxEvents = DefaultMaxEvents
	}
	if o.MaxEventBytes == 0 {
		o.MaxEventBytes = DefaultMaxEventBytes
	}
	return o
}

// The default write limit per tenant: a deploy may set a whole account's
// configuration values (1000) at once. The server limits writes by it,
// and the etcd store the heartbeats that move a service between nodes.
const (
	DefaultWriteRate  = 20
	DefaultWriteBurst = 1000
)
