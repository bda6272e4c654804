package etcdstore

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	events     *prometheus.CounterVec
	timeouts   prometheus.Counter
	heartbeats prometheus.Counter
	commit     prometheus.Histogram
	hbBatch    prometheus.Histogram
	conflicts  prometheus.Counter
	rewatches  prometheus.Counter
}

func newMetrics(r prometheus.Registerer) metrics {
	m := metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "svcreg_events_appended_total",
			Help: "Events this node appended to the feed, by type.",
		}, []string{"type"}),
		timeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_service_timeouts_total",
			Help: "Services this node timed out for missing their heartbeat deadline.",
		}),
		heartbeats: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_store_heartbeats_committed_total",
			Help: "Heartbeats this node committed to etcd.",
		}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "svcreg_store_commit_seconds",
			Help:    "Time to commit a write transaction to etcd.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
		}),
		hbBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "svcreg_store_heartbeat_batch_size",
			Help:    "Heartbeats per group-commit transaction.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64},
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_store_txn_conflicts_total",
			Help: "Write transactions retried because another node committed first.",
		}),
		rewatches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_store_watch_restarts_total",
			Help: "Times the etcd watch on the accounts was set up again.",
		}),
	}
	if r != nil {
		r.MustRegister(m.events, m.timeouts, m.heartbeats, m.commit, m.hbBatch, m.conflicts, m.rewatches)
	}
	return m
}
