package categorizer

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/cordon-gw/cordon/internal/obs"
)

const subsystem = "categorizer"

// syncMetrics are the Syncer's metrics. Labels: feed (the configured feed
// names: bounded), result (updated, unchanged, rejected).
type syncMetrics struct {
	syncs        *prometheus.CounterVec
	entries      *prometheus.GaugeVec
	updated      *prometheus.GaugeVec
	version      prometheus.Gauge
	indexEntries prometheus.Gauge
	build        prometheus.Histogram
}

func newSyncMetrics(reg prometheus.Registerer) *syncMetrics {
	if reg == nil {
		reg = prometheus.NewRegistry() // metrics kept but not exported
	}
	f := promauto.With(reg)
	return &syncMetrics{
		syncs: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: obs.Namespace, Subsystem: subsystem, Name: "feed_syncs_total",
			Help: "Feed refresh attempts by result: updated, unchanged, rejected (download failure, parsed to nothing, shrank more than max_shrink; the last good version is kept).",
		}, []string{"feed", "result"}),
		entries: f.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: obs.Namespace, Subsystem: subsystem, Name: "feed_entries",
			Help: "Entries of the feed version in use.",
		}, []string{"feed"}),
		updated: f.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: obs.Namespace, Subsystem: subsystem, Name: "feed_updated_timestamp_seconds",
			Help: "Unix time the feed version in use was fetched.",
		}, []string{"feed"}),
		version: f.NewGauge(prometheus.GaugeOpts{
			Namespace: obs.Namespace, Subsystem: subsystem, Name: "snapshot_version",
			Help: "Version of the last compiled feed snapshot.",
		}),
		indexEntries: f.NewGauge(prometheus.GaugeOpts{
			Namespace: obs.Namespace, Subsystem: subsystem, Name: "index_entries",
			Help: "Distinct entries (domains, URL prefixes, IP prefixes) in the last compiled snapshot.",
		}),
		build: f.NewHistogram(prometheus.HistogramOpts{
			Namespace: obs.Namespace, Subsystem: subsystem, Name: "build_duration_seconds",
			Help:    "Time to parse and compile all feeds into a snapshot.",
			Buckets: obs.LatencyBuckets,
		}),
	}
}
