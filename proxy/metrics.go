package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/cordon-gw/cordon/internal/obs"
)

const subsystem = "proxy"

// metrics are the proxy's Prometheus collectors. Labels are bounded:
// protocol, action, category (names of the loaded index, at most 64, or
// "none"), reason and error kind; never host, URL, user or client address.
type metrics struct {
	requests       *prometheus.CounterVec
	activeConns    prometheus.Gauge
	decision       prometheus.Histogram
	upstreamErrors *prometheus.CounterVec
	refused        *prometheus.CounterVec
	panics         prometheus.Counter
	bytes          *prometheus.CounterVec
	// bytesUp and bytesDown are bytes' two children, looked up once.
	bytesUp, bytesDown prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: obs.Namespace, Subsystem: subsystem, Name: "requests_total",
			Help: "Requests and CONNECT tunnels decided, by protocol, enforced action and first category.",
		}, []string{"protocol", "action", "category"}),
		activeConns: f.NewGauge(prometheus.GaugeOpts{
			Namespace: obs.Namespace, Subsystem: subsystem, Name: "active_connections",
			Help: "Client connections currently open, including tunnels.",
		}),
		decision: f.NewHistogram(prometheus.HistogramOpts{
			Namespace: obs.Namespace, Subsystem: subsystem, Name: "decision_duration_seconds",
			Help:    "Time to identify the client and decide a request (policy engine check).",
			Buckets: obs.LatencyBuckets,
		}),
		upstreamErrors: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: obs.Namespace, Subsystem: subsystem, Name: "upstream_errors_total",
			Help: "Failures reaching origins, by kind (resolve, dial, tls, timeout, protocol: a malformed response, other).",
		}, []string{"kind"}),
		refused: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: obs.Namespace, Subsystem: subsystem, Name: "refused_total",
			Help: "Requests refused before a policy decision, by reason (auth, auth_rate, destination, port, limit, loop, bad_request, slow_client).",
		}, []string{"reason"}),
		panics: f.NewCounter(prometheus.CounterOpts{
			Namespace: obs.Namespace, Subsystem: subsystem, Name: "panics_total",
			Help: "Handler panics recovered.",
		}),
		bytes: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: obs.Namespace, Subsystem: subsystem, Name: "bytes_total",
			Help: "Payload bytes relayed, by direction (up: client to origin, down: origin to client).",
		}, []string{"direction"}),
	}
	m.bytesUp, m.bytesDown = m.bytes.WithLabelValues("up"), m.bytes.WithLabelValues("down")
	return m
}
