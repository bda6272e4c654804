package server

import "github.com/prometheus/client_golang/prometheus"

type serverMetrics struct {
	requests     *prometheus.CounterVec
	heartbeats   prometheus.Counter
	waiting      prometheus.Gauge
	refused      *prometheus.CounterVec
	yielded      prometheus.Counter
	gone         prometheus.Counter
	pollsCut     prometheus.Counter
	dropped      prometheus.Counter
	connsOpen    prometheus.Gauge
	connsIdle    prometheus.Gauge
	connsClosed  *prometheus.CounterVec
	readsQueued  prometheus.Gauge
	readsRefused prometheus.Counter
	// unsentRefused and unsentBytes: see unsentBudget.
	unsentRefused prometheus.Counter
	unsentBytes   prometheus.Gauge
}

func newServerMetrics(r prometheus.Registerer) serverMetrics {
	m := serverMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "svcreg_http_requests_total",
			Help: "HTTP requests answered, by route and status code.",
		}, []string{"route", "code"}),
		heartbeats: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_heartbeats_total",
			Help: "Heartbeats accepted.",
		}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "svcreg_longpolls_waiting",
			Help: "GET /events long-polls currently waiting for an event.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "svcreg_longpolls_refused_total",
			Help: "GET /events long-polls answered at once because a cap on waiting long-polls was reached, by cap (tenant or total).",
		}, []string{"limit"}),
		yielded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_longpolls_yielded_total",
			Help: "Waiting long-polls answered before their wait ended, past --max-waiters-total, to give their slot to a long-poll about to wait of a tenant holding at least two fewer (a tenant holding the most gives it).",
		}),
		gone: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_longpolls_client_gone_total",
			Help: "Waiting long-polls freed because their client closed the connection.",
		}),
		pollsCut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_longpolls_cut_short_total",
			Help: "Waiting long-polls answered before their wait ended because their client sent bytes meanwhile (a pipelined request, or bytes that would sit in the kernel's buffer until the wait ended; over TLS, also a client's close_notify as it leaves).",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_longpolls_answers_dropped_total",
			Help: "Long-poll answers not written, their connections closed, because the tenant already had as many waiting to be written as it may, or their write was cut to free a writer for another tenant (their clients do not read them).",
		}),
		connsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "svcreg_connections_open",
			Help: "Client connections the HTTP server holds (waiting long-polls not included).",
		}),
		connsIdle: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "svcreg_connections_idle",
			Help: "Keep-alive client connections idle between requests, those of answered long-polls waiting for their next request included.",
		}),
		connsClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "svcreg_connections_closed_total",
			Help: "Client connections the server closed, by reason: idle (global idle cap), tenant (per-tenant idle cap), conns (an idle one, for a new connection past --max-conns), unauthenticated (idle without authenticating), client (one waiting on its client, its request still arriving or its answer not taken, for a new connection past --max-conns).",
		}, []string{"reason"}),
		readsQueued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "svcreg_list_reads_waiting",
			Help: "List reads (a page of services, configuration values or events) waiting for their account's turn: an account runs as many at once as half the processors.",
		}),
		readsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_list_reads_refused_total",
			Help: "List reads refused (rate-limited) because --max-list-reads-waiting of their account's were waiting for its turn already.",
		}),
		unsentRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_list_answers_refused_total",
			Help: "List answers refused (rate-limited) because their account's or the server's answers not yet taken by their clients were at the bound (--max-unsent-bytes).",
		}),
		unsentBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "svcreg_list_answer_bytes_unsent",
			Help: "Bytes of list answers built and not yet written to their clients.",
		}),
	}
	if r != nil {
		r.MustRegister(m.requests, m.heartbeats, m.waiting, m.refused, m.yielded, m.gone, m.pollsCut, m.dropped, m.connsOpen, m.connsIdle, m.connsClosed, m.readsQueued, m.readsRefused, m.unsentRefused, m.unsentBytes)
	}
	return m
}

// registerParked registers the gauge of the connections the long-poll
// poller holds (count), which are not in svcreg_connections_open.
func registerParked(r prometheus.Registerer, count func() int) {
	if r == nil {
		return
	}
	r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "svcreg_connections_parked",
		Help: "Client connections the long-poll poller holds instead of the HTTP server: parked long-polls, and answered ones kept until their next request. Not in svcreg_connections_open.",
	}, func() float64 { return float64(count()) }))
}

type authMetrics struct {
	tokenRequests  *prometheus.CounterVec
	passwordChecks prometheus.Counter
	tokensReissued prometheus.Counter
}

func newAuthMetrics(r prometheus.Registerer, unrecorded func() int) authMetrics {
	m := authMetrics{
		tokenRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "svcreg_identity_token_requests_total",
			Help: "Token requests (POST /v2.0/tokens with credentials) answered, by status code; 429 and 503 are the login limits refusing, 499 a client that went away before its answer.",
		}, []string{"code"}),
		passwordChecks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_identity_password_checks_total",
			Help: "bcrypt password comparisons run, against a user's hash or the dummy hash of an unknown user.",
		}),
		tokensReissued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_identity_tokens_reissued_total",
			Help: "Token requests past the user's --token-issues-per-user answered with the valid token this node issued to the user last, for the same credential, instead of 429 (counted in svcreg_identity_token_requests_total as 200 too).",
		}),
	}
	if r != nil {
		r.MustRegister(m.tokenRequests, m.passwordChecks, m.tokensReissued, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "svcreg_identity_revocations_unrecorded",
			Help: "Users whose token revocations (from a users file read again) the store has not taken yet: they hold at this node, are tried again every minute, and are forgotten by a restart meanwhile.",
		}, func() float64 { return float64(unrecorded()) }))
	}
	return m
}
