package server

import "github.com/prometheus/client_golang/prometheus"

type serverMetrics struct {
	requests   *prometheus.CounterVec
	heartbeats prometheus.Counter
	waiting    prometheus.Gauge
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
	}
	if r != nil {
		r.MustRegister(m.requests, m.heartbeats, m.waiting)
	}
	return m
}

type authMetrics struct {
	tokenRequests  *prometheus.CounterVec
	passwordChecks prometheus.Counter
}

func newAuthMetrics(r prometheus.Registerer) authMetrics {
	m := authMetrics{
		tokenRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "svcreg_identity_token_requests_total",
			Help: "Token requests (POST /v2.0/tokens with credentials) answered, by status code; 429 and 503 are the login limits refusing.",
		}, []string{"code"}),
		passwordChecks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "svcreg_identity_password_checks_total",
			Help: "bcrypt password comparisons run, against a user's hash or the dummy hash of an unknown user.",
		}),
	}
	if r != nil {
		r.MustRegister(m.tokenRequests, m.passwordChecks)
	}
	return m
}
