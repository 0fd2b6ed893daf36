package dnsfilter

import (
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/cordon-gw/cordon/internal/obs"
)

const subsystem = "dns"

// Bounded label values of cordon_dns_queries_total.
var (
	transportNames = [...]string{"udp", "tcp", "doh"}
	// metric actions: what the filter did with the query
	metricActions = [...]string{"allow", "block", "refused", "ratelimited", "invalid", "servfail", "safesearch"}
	// rcodes with their own label; others fold into "other"
	metricRcodes = [...]int{dns.RcodeSuccess, dns.RcodeNameError, dns.RcodeServerFailure, dns.RcodeRefused, dns.RcodeFormatError, dns.RcodeNotImplemented}
)

type metricAction uint8

const (
	maAllow metricAction = iota
	maBlock
	maRefused
	maRateLimited
	maInvalid
	maServFail
	maSafeSearch
)

type transport uint8

const (
	transportUDP transport = iota
	transportTCP
	transportDoH
)

func (t transport) String() string { return transportNames[t] }

// metrics are the DNS filter's Prometheus collectors, registered on the
// Registerer from Deps.
type metrics struct {
	// queries[transport][action][rcode index] resolved once, so the hot
	// path does no label hashing.
	queries [len(transportNames)][len(metricActions)][len(metricRcodes) + 1]prometheus.Counter
	latency [len(transportNames)]prometheus.Observer

	cacheHits        prometheus.Counter
	cacheMisses      prometheus.Counter
	cacheEvictions   prometheus.Counter
	cacheEntries     prometheus.GaugeFunc
	inflight         prometheus.GaugeFunc
	prefetches       prometheus.Counter
	rateLimited      prometheus.Counter
	panics           prometheus.Counter
	invalid          prometheus.Counter
	upstreamDuration *prometheus.HistogramVec
	upstreamErrors   *prometheus.CounterVec
	upstreamHealthy  *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer, cacheLen, inflight func() float64) *metrics {
	f := promauto.With(reg)
	m := &metrics{}
	qv := f.NewCounterVec(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: subsystem, Name: "queries_total",
		Help: "DNS queries answered, by transport, filter action and response code.",
	}, []string{"transport", "action", "rcode"})
	for t := range transportNames {
		for a := range metricActions {
			for r := range metricRcodes {
				m.queries[t][a][r] = qv.WithLabelValues(transportNames[t], metricActions[a], dns.RcodeToString[metricRcodes[r]])
			}
			m.queries[t][a][len(metricRcodes)] = qv.WithLabelValues(transportNames[t], metricActions[a], "other")
		}
	}
	lv := f.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: obs.Namespace, Subsystem: subsystem, Name: "request_duration_seconds",
		Help: "Time from receiving a query to writing its answer, by transport.", Buckets: obs.LatencyBuckets,
	}, []string{"transport"})
	for t := range transportNames {
		m.latency[t] = lv.WithLabelValues(transportNames[t])
	}
	m.cacheHits = f.NewCounter(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: subsystem, Name: "cache_hits_total",
		Help: "Answers served from the cache.",
	})
	m.cacheMisses = f.NewCounter(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: subsystem, Name: "cache_misses_total",
		Help: "Queries not found in the cache (forwarded upstream).",
	})
	m.cacheEvictions = f.NewCounter(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: subsystem, Name: "cache_evictions_total",
		Help: "Cache entries evicted before expiry because the cache was full.",
	})
	m.cacheEntries = f.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: obs.Namespace, Subsystem: subsystem, Name: "cache_entries",
		Help: "Answers currently cached.",
	}, cacheLen)
	m.inflight = f.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: obs.Namespace, Subsystem: subsystem, Name: "upstream_inflight",
		Help: "Upstream resolutions in flight (bounded by max_inflight).",
	}, inflight)
	m.prefetches = f.NewCounter(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: subsystem, Name: "cache_prefetches_total",
		Help: "Popular cache entries refreshed from upstream before expiry.",
	})
	m.rateLimited = f.NewCounter(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: subsystem, Name: "rate_limited_total",
		Help: "Queries refused because the client was over its rate limit.",
	})
	m.panics = f.NewCounter(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: subsystem, Name: "panics_total",
		Help: "Queries whose handling panicked (answered SERVFAIL).",
	})
	m.invalid = f.NewCounter(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: subsystem, Name: "invalid_messages_total",
		Help: "Packets that were not a well-formed DNS query.",
	})
	m.upstreamDuration = f.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: obs.Namespace, Subsystem: subsystem, Name: "upstream_duration_seconds",
		Help: "Round-trip time of each attempt against an upstream resolver.", Buckets: obs.LatencyBuckets,
	}, []string{"upstream"})
	m.upstreamErrors = f.NewCounterVec(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: subsystem, Name: "upstream_errors_total",
		Help: "Failed attempts against an upstream resolver (timeouts, network errors, bad answers).",
	}, []string{"upstream"})
	m.upstreamHealthy = f.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: obs.Namespace, Subsystem: subsystem, Name: "upstream_healthy",
		Help: "1 when the upstream answered its last health probe, 0 otherwise.",
	}, []string{"upstream"})
	return m
}

func (m *metrics) query(t transport, a metricAction, rcode int) prometheus.Counter {
	ri := len(metricRcodes)
	for i, r := range metricRcodes {
		if r == rcode {
			ri = i
			break
		}
	}
	return m.queries[t][a][ri]
}
