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
