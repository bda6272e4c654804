package etcdstore

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/svcreg/svcreg/server/store"
)

type metrics struct {
	store.Metrics
	heartbeats   prometheus.Counter
	inMemory     prometheus.Counter
	handovers    prometheus.Counter
	movesRefused prometheus.Counter
	// writesRefused counts clients' writes past the tenant's write budget
	// shared by the nodes.
	writesRefused prometheus.Counter
	// clockBehind counts the write budgets found stamped further ahead
	// of this node's clock than writeClockSkew: another node's clock is
	// ahead.
	clockBehind prometheus.Counter
	hbBatch     prometheus.Histogram
	hbWaiting   prometheus.Gauge
	spaceFull   prometheus.Gauge
	conflicts   prometheus.Counter
	rewatches   prometheus.Counter
	watchStalls prometheus.Counter
	leaseLost   prometheus.Counter
	outages     prometheus.Counter
	blips       prometheus.Counter
	hedges      prometheus.Counter

	copyBatch    prometheus.Histogram
	copyTime     prometheus.Histogram
	copyFailures prometheus.Counter
	copyRefusals *prometheus.CounterVec
}

// newMetrics makes the store's metrics and registers them with r (if not
// nil); hasPeer reports whether the node has a peer for its copies.
func newMetrics(r prometheus.Registerer, hasPeer func() bool) metrics {
	m := metrics{
		Metrics: store.NewMetrics(),
		heartbeats: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_store_heartbeats_committed_total",
			Help: "Heartbeats this node committed to etcd.",
		}),
		inMemory: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_store_heartbeats_in_memory_total",
			Help: "Heartbeats this node answered from its memory, without an etcd write.",
		}),
		handovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_store_heartbeat_handovers_total",
			Help: "Services this node handed back to etcd because another node needed them.",
		}),
		movesRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_store_heartbeat_moves_refused_total",
			Help: "Heartbeats refused (rateLimitReached) because their tenant had moved services to this node from other live nodes as fast as it may.",
		}),
		writesRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_store_writes_refused_total",
			Help: "Writes refused (rateLimitReached) at this node because their tenant had spent the write budget it has through all the nodes together (--write-rate, --write-burst).",
		}),
		clockBehind: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_store_clock_behind_total",
			Help: "Clients' writes (once each, however many attempts) that found their account's write budget stamped by another node more than a second ahead of this node's clock: the nodes' clocks disagree (NTP), and meanwhile the budget is not kept through the nodes together, nor timeouts within a second.",
		}),
		hbBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "svcreg_store_heartbeat_batch_size",
			Help:    "Heartbeats per group-commit transaction.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64},
		}),
		hbWaiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "svcreg_store_heartbeat_writes_waiting",
			Help: "Heartbeat writes taken for a group commit and not yet answered: gathering (up to the heartbeat linger), waiting for a committer, or committing. Staying high means etcd commits slower than heartbeats need writing.",
		}),
		spaceFull: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "svcreg_store_etcd_space_exceeded",
			Help: "1 while etcd refuses this node's writes because its database reached its space quota (the NOSPACE alarm): every account's writes, logins and timeouts fail until an operator compacts, defragments and disarms it; 0 once a write succeeds.",
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_store_txn_conflicts_total",
			Help: "Write transactions retried because another node committed first.",
		}),
		rewatches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_store_watch_restarts_total",
			Help: "Times the etcd watch on the accounts was set up again.",
		}),
		watchStalls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_store_etcd_watch_stalls_total",
			Help: "Watches ended and set up again at another etcd member because theirs did not answer a probe while they were idle (a member that stopped answering without closing its connection).",
		}),
		leaseLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_store_node_lease_lost_total",
			Help: "Times this node's lease in etcd expired before the node renewed it (etcd out of its reach, or the node too slow, for longer than the node TTL). The other nodes then count the node dead: a service it held times out at its stored deadline, up to the heartbeat slack late, unless this node reaches etcd first.",
		}),
		outages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_store_etcd_outages_total",
			Help: "Times this node reached etcd again after it could not for longer than it counts on its lease (three quarters of the node TTL): services whose deadline passed meanwhile get their full timeout again before this node times them out.",
		}),
		blips: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_store_etcd_blips_total",
			Help: "Times this node's reaper saw etcd answer again after its calls failed or took longer than 500 ms, while the node still counted on its lease (a leader election, a member restarting): services whose deadline passed meanwhile get their full timeout again before this node times them out.",
		}),
		hedges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_store_etcd_hedges_total",
			Help: "Reads, heartbeat batches and API writes sent again, to another etcd member, because the first send had no answer within a tenth of the request timeout (a member that stopped answering, an election, a slow disk).",
		}),
		copyBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "svcreg_store_heartbeat_copy_batch_size",
			Help:    "Copies of held heartbeat state per request to this node's peer.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
		}),
		copyTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "svcreg_store_heartbeat_copy_seconds",
			Help:    "Time of each request carrying heartbeat copies to this node's peer, from its sending to its answer or failure: what a heartbeat answered from memory waits for, besides the batch before it.",
			Buckets: []float64{50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2},
		}),
		copyFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_store_heartbeat_copy_failures_total",
			Help: "Requests carrying heartbeat copies to this node's peer that failed (the peer out of reach, or not taking them); the heartbeats they carried were written to etcd instead.",
		}),
		copyRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "svcreg_store_heartbeat_copy_refusals_total",
			Help: "Requests carrying heartbeat copies that this node refused, by reason: secret (not sealed with the registry's secret), lease (meant for another lease of this node, or this node's lease may have expired), undecodable (from a node of another version), version (from a node of an earlier version, which sends no hello), replay (a request sent again on its connection).",
		}, []string{"reason"}),
	}
	if r != nil {
		r.MustRegister(m.Collectors()...)
		r.MustRegister(m.heartbeats, m.inMemory, m.handovers, m.movesRefused, m.writesRefused, m.clockBehind, m.hbBatch, m.hbWaiting, m.spaceFull, m.conflicts, m.rewatches, m.watchStalls, m.leaseLost, m.outages, m.blips, m.hedges, m.copyBatch, m.copyTime, m.copyFailures, m.copyRefusals)
		r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "svcreg_store_heartbeat_copy_peer",
			Help: "1 while this node has a peer to copy the heartbeats it answers from memory to; 0 with copies off, no other node, or none reachable: a service whose client dies with this node then times out up to the heartbeat slack late.",
		}, func() float64 {
			if hasPeer() {
				return 1
			}
			return 0
		}))
	}
	return m
}
