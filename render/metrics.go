package render

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the renderer's Prometheus metrics.
type Metrics struct {
	renders        *prometheus.CounterVec
	installs       *prometheus.CounterVec
	checks         *prometheus.CounterVec
	reloads        *prometheus.CounterVec
	eventToInstall prometheus.Histogram
	eventToLive    *prometheus.HistogramVec
	passSeconds    prometheus.Histogram
	refused        *prometheus.CounterVec
	loadFailed     prometheus.Gauge
	runtime        *runtimeMetrics
}

// NewMetrics creates the metrics and registers them with r (if not nil).
func NewMetrics(r prometheus.Registerer) *Metrics {
	m := &Metrics{
		renders: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "svcreg_template_renders_total",
			Help: "Template renders, by template and result (ok, error, guard).",
		}, []string{"template", "result"}),
		installs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "svcreg_template_installs_total",
			Help: "Rendered files installed, by template.",
		}, []string{"template"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "svcreg_template_checks_total",
			Help: "Check commands run, by reload group and result.",
		}, []string{"group", "result"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "svcreg_template_reloads_total",
			Help: "Reload commands run, by reload group and result.",
		}, []string{"group", "result"}),
		eventToInstall: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "svcreg_template_event_to_install_seconds",
			Help:    "Time from the watcher applying a change to the rendered files being installed.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		eventToLive: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "svcreg_template_event_to_live_seconds",
			Help:    "Time from the watcher applying a change to the load balancer having it, by how: runtime (its runtime API's commands answered) or reload (the reload command done).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"how"}),
		passSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "svcreg_template_pass_seconds",
			Help:    "Time of one render pass over every template, commands included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "svcreg_template_refused_services_total",
			Help: "Services left out of a render because a safe function refused their data, configuration values configAs refused (field \"configuration\") and metadata values metaAs refused (field \"metadata\"), by template and field.",
		}, []string{"template", "field"}),
		loadFailed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "svcreg_template_config_load_failed",
			Help: "1 while the last re-read of the config file and templates (SIGHUP, a changed template file) failed and the ones in use are kept; 0 otherwise.",
		}),
	}
	if r != nil {
		r.MustRegister(m.renders, m.installs, m.checks, m.reloads, m.eventToInstall, m.eventToLive, m.passSeconds, m.refused, m.loadFailed)
	}
	m.runtime = newRuntimeMetrics(r)
	return m
}
