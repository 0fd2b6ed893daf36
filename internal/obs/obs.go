// Package obs holds the one metric namespace and the histogram buckets every
// room uses, so metric names and latency buckets cannot drift between the
// HTTP proxy, the DNS filter and the rest. It registers nothing itself.
package obs

// Namespace prefixes every Cordon metric: cordon_<subsystem>_<name>.
const Namespace = "cordon"

// LatencyBuckets are seconds, from 1 µs (a decision) to 10 s (a slow origin).
var LatencyBuckets = []float64{
	0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025,
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}
