package boltstore

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	events   *prometheus.CounterVec
	timeouts prometheus.Counter
	commit   prometheus.Histogram
}

func newMetrics(r prometheus.Registerer) metrics {
	m := metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "svcreg_events_appended_total",
			Help: "Events appended to the feed, by type.",
		}, []string{"type"}),
		timeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_service_timeouts_total",
			Help: "Services timed out for missing their heartbeat deadline.",
		}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "svcreg_store_commit_seconds",
			Help:    "Time to commit a write transaction, sync included.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
		}),
	}
	if r != nil {
		r.MustRegister(m.events, m.timeouts, m.commit)
	}
	return m
}
