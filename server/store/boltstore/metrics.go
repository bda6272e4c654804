package boltstore

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/svcreg/svcreg/server/store"
)

type metrics struct {
	store.Metrics
}

func newMetrics(r prometheus.Registerer) metrics {
	m := metrics{store.NewMetrics()}
	if r != nil {
		r.MustRegister(m.Collectors()...)
	}
	return m
}
