package reports

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/cordon-gw/cordon/internal/obs"
)

const subsystem = "reports"

// Drop reasons (label values of cordon_reports_events_dropped_total).
const (
	dropQueueFull  = "queue_full"
	dropBufferFull = "buffer_full"
	dropClosed     = "closed"
)

type metrics struct {
	received      prometheus.Counter
	dropped       *prometheus.CounterVec
	dropQueueFull prometheus.Counter // dropped{reason="queue_full"}, resolved once
	dropClosed    prometheus.Counter
	queueLen      prometheus.GaugeFunc
	flushes       *prometheus.CounterVec
	flushSeconds  prometheus.Histogram
	storedEvents  prometheus.Counter
	bufferedCells prometheus.Gauge
	bufferedEvts  prometheus.Gauge
	logBytes      prometheus.Counter
	logRotations  prometheus.Counter
	logErrors     prometheus.Counter
	syslogSent    *prometheus.CounterVec
	compactions   *prometheus.CounterVec
	spilled       prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, queueLen, spillBytes func() float64) *metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	f := promauto.With(reg)
	m := &metrics{
		received: f.NewCounter(prometheus.CounterOpts{Namespace: obs.Namespace, Subsystem: subsystem,
			Name: "events_total", Help: "Access events accepted into the reports queue."}),
		dropped: f.NewCounterVec(prometheus.CounterOpts{Namespace: obs.Namespace, Subsystem: subsystem,
			Name: "events_dropped_total", Help: "Access events not counted in reports, by reason (queue_full, buffer_full, closed)."}, []string{"reason"}),
		queueLen: f.NewGaugeFunc(prometheus.GaugeOpts{Namespace: obs.Namespace, Subsystem: subsystem,
			Name: "queue_length", Help: "Access events waiting in the reports queue."}, queueLen),
		flushes: f.NewCounterVec(prometheus.CounterOpts{Namespace: obs.Namespace, Subsystem: subsystem,
			Name: "flushes_total", Help: "Aggregate batches written to the store, by result (ok, error)."}, []string{"result"}),
		flushSeconds: f.NewHistogram(prometheus.HistogramOpts{Namespace: obs.Namespace, Subsystem: subsystem,
			Name: "flush_seconds", Help: "Time to write one aggregate batch to the store.", Buckets: obs.LatencyBuckets}),
		storedEvents: f.NewCounter(prometheus.CounterOpts{Namespace: obs.Namespace, Subsystem: subsystem,
			Name: "stored_events_total", Help: "Access events whose aggregates the store acknowledged."}),
		bufferedCells: f.NewGauge(prometheus.GaugeOpts{Namespace: obs.Namespace, Subsystem: subsystem,
			Name: "buffered_cells", Help: "Aggregate cells held in memory waiting for the store."}),
		bufferedEvts: f.NewGauge(prometheus.GaugeOpts{Namespace: obs.Namespace, Subsystem: subsystem,
			Name: "buffered_events", Help: "Access events whose aggregates wait in memory for the store."}),
		logBytes: f.NewCounter(prometheus.CounterOpts{Namespace: obs.Namespace, Subsystem: subsystem,
			Name: "access_log_bytes_total", Help: "Bytes written to the JSON-lines access log."}),
		logRotations: f.NewCounter(prometheus.CounterOpts{Namespace: obs.Namespace, Subsystem: subsystem,
			Name: "access_log_rotations_total", Help: "Access log rotations."}),
		logErrors: f.NewCounter(prometheus.CounterOpts{Namespace: obs.Namespace, Subsystem: subsystem,
			Name: "access_log_errors_total", Help: "Access log write or rotation errors."}),
		syslogSent: f.NewCounterVec(prometheus.CounterOpts{Namespace: obs.Namespace, Subsystem: subsystem,
			Name: "syslog_messages_total", Help: "Syslog messages, by result (sent, dropped)."}, []string{"result"}),
		spilled: f.NewCounter(prometheus.CounterOpts{Namespace: obs.Namespace, Subsystem: subsystem,
			Name: "spilled_events_total", Help: "Access events whose aggregates were written to the spill file (memory buffer full, or closing while the store was unreachable)."}),
		compactions: f.NewCounterVec(prometheus.CounterOpts{Namespace: obs.Namespace, Subsystem: subsystem,
			Name: "compactions_total", Help: "Local store compactions, by result (ok, error)."}, []string{"result"}),
	}
	f.NewGaugeFunc(prometheus.GaugeOpts{Namespace: obs.Namespace, Subsystem: subsystem,
		Name: "spill_bytes", Help: "Bytes of aggregates in the spill file waiting for the store."}, spillBytes)
	m.dropQueueFull = m.dropped.WithLabelValues(dropQueueFull)
	m.dropClosed = m.dropped.WithLabelValues(dropClosed)
	m.dropped.WithLabelValues(dropBufferFull)
	for _, r := range []string{"ok", "error"} {
		m.flushes.WithLabelValues(r)
		m.compactions.WithLabelValues(r)
	}
	for _, r := range []string{"sent", "dropped"} {
		m.syslogSent.WithLabelValues(r)
	}
	return m
}
