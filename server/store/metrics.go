package store

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the metrics every store keeps.
type Metrics struct {
	Events   *prometheus.CounterVec // events appended, by type
	Timeouts prometheus.Counter     // services timed out
	Commit   prometheus.Histogram   // time to commit a write
}

// NewMetrics creates the metrics every store keeps.
func NewMetrics() Metrics {
	return Metrics{
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "svcreg_events_appended_total",
			Help: "Events appended to the feed (by this server node), by type.",
		}, []string{"type"}),
		Timeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_service_timeouts_total",
			Help: "Services timed out (by this server node) for missing their heartbeat deadline.",
		}),
		Commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "svcreg_store_commit_seconds",
			Help:    "Time to commit a write transaction, sync included.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
		}),
	}
}

// Collectors returns the metrics, to register.
func (m Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.Events, m.Timeouts, m.Commit}
}

// Committed records a write that appended events.
func (m Metrics) Committed(seconds float64, events []Event) {
	m.Commit.Observe(seconds)
	for _, ev := range events {
		m.Events.WithLabelValues(string(ev.Type)).Inc()
	}
}
