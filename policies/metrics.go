package policies

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/cordon-gw/cordon/internal/obs"
)

const subsystem = "policies"

type engineMetrics struct {
	decisions  [len(actionNames)][len(reasonNames)]prometheus.Counter
	auth       *prometheus.CounterVec
	authOK     prometheus.Counter
	authCached prometheus.Counter
	authFail   prometheus.Counter
	swaps      *prometheus.CounterVec
	swapErrors prometheus.Counter
	version    prometheus.Gauge
}

func newEngineMetrics(reg prometheus.Registerer) *engineMetrics {
	if reg == nil {
		reg = prometheus.NewRegistry() // registered nowhere anyone scrapes
	}
	f := promauto.With(reg)
	dv := f.NewCounterVec(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: subsystem, Name: "decisions_total",
		Help: "Decisions made by the engine, by enforced action and reason.",
	}, []string{"action", "reason"})
	m := &engineMetrics{
		auth: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: obs.Namespace, Subsystem: subsystem, Name: "authentications_total",
			Help: "Proxy password checks by result (ok, cached, fail).",
		}, []string{"result"}),
		swaps: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: obs.Namespace, Subsystem: subsystem, Name: "swaps_total",
			Help: "Snapshots swapped in, by what changed (policy, index).",
		}, []string{"what"}),
		swapErrors: f.NewCounter(prometheus.CounterOpts{
			Namespace: obs.Namespace, Subsystem: subsystem, Name: "swap_errors_total",
			Help: "Policies refused by the engine (the previous one kept serving).",
		}),
		version: f.NewGauge(prometheus.GaugeOpts{
			Namespace: obs.Namespace, Subsystem: subsystem, Name: "version",
			Help: "Policy version being served.",
		}),
	}
	m.authOK, m.authCached, m.authFail = m.auth.WithLabelValues("ok"), m.auth.WithLabelValues("cached"), m.auth.WithLabelValues("fail")
	for a := range actionNames {
		for r := range reasonNames {
			m.decisions[a][r] = dv.WithLabelValues(actionNames[a], reasonNames[r])
		}
	}
	return m
}

func (m *engineMetrics) decision(d Decision) {
	if int(d.Action) < len(m.decisions) && int(d.Reason) < len(m.decisions[0]) {
		m.decisions[d.Action][d.Reason].Inc()
	}
}
