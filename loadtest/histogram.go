package loadtest

import (
	"encoding/json"
	"math"
	"math/bits"
	"time"
)

// Histogram records durations in log-linear buckets, the layout
// HdrHistogram uses: values below 2^(subBits+1) ns get a bucket each, and
// every further power of two is split into 2^subBits equal buckets, so any
// recorded value is known to within 1/2^subBits (0.4 %) of its true value
// from 1 ns up to maxTrackable (about 18 minutes); larger values are
// clamped to maxTrackable and counted in Clamped. Count, Min, Max and the
// sum are exact.
//
// A Histogram is not safe for concurrent use: give each worker its own and
// Merge them at the end. The zero value is not ready; use NewHistogram.
type Histogram struct {
	counts  []uint64
	count   uint64
	sum     float64 // ns; float64 so long runs cannot overflow
	min     int64
	max     int64
	clamped uint64
}

const (
	subBits      = 8
	subCount     = 1 << subBits
	maxBits      = 40 // values up to 2^40 ns ≈ 18.3 min
	maxTrackable = int64(1)<<maxBits - 1
	bucketCount  = (maxBits - subBits + 1) * subCount
)

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	return &Histogram{counts: make([]uint64, bucketCount), min: math.MaxInt64}
}

// bucketIndex maps a non-negative value to its bucket.
func bucketIndex(v int64) int {
	u := uint64(v)
	n := bits.Len64(u)
	if n <= subBits+1 {
		return int(u)
	}
	shift := n - (subBits + 1)
	return shift*subCount + int(u>>uint(shift))
}

// bucketBounds returns the lowest value of bucket i and the bucket width.
func bucketBounds(i int) (low, width int64) {
	if i < 2*subCount {
		return int64(i), 1
	}
	shift := i>>subBits - 1
	sub := i - shift*subCount
	return int64(sub) << uint(shift), int64(1) << uint(shift)
}

// Record adds one duration. Negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	if v > maxTrackable {
		v = maxTrackable
		h.clamped++
	}
	h.counts[bucketIndex(v)]++
	h.count++
	h.sum += float64(v)
	if v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
}

// Merge adds every value recorded in o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil || o.count == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.count += o.count
	h.sum += o.sum
	h.clamped += o.clamped
	h.min = min(h.min, o.min)
	h.max = max(h.max, o.max)
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.count }

// Clamped is the number of values above the trackable range (recorded as the maximum).
func (h *Histogram) Clamped() uint64 { return h.clamped }

// Min is the smallest recorded value (0 when empty).
func (h *Histogram) Min() time.Duration {
	if h.count == 0 {
		return 0
	}
	return time.Duration(h.min)
}

// Max is the largest recorded value (0 when empty).
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean is the exact arithmetic mean (0 when empty).
func (h *Histogram) Mean() time.Duration {
	if h.count == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.count))
}

// Percentile returns the value below or at which q percent (0–100) of the
// recorded values fall, by the nearest-rank definition: the value of rank
// ceil(q/100·count). It answers with the middle of the bucket holding that
// rank, kept within [Min, Max], so it is within half a bucket width
// (0.2 %) of the exact nearest-rank value; the 100th percentile is Max. An empty histogram returns 0.
func (h *Histogram) Percentile(q float64) time.Duration {
	if h.count == 0 {
		return 0
	}
	q = min(max(q, 0), 100)
	rank := uint64(math.Ceil(q / 100 * float64(h.count)))
	rank = max(rank, 1)
	if rank >= h.count {
		return time.Duration(h.max)
	}
	var seen uint64
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		seen += c
		if seen >= rank {
			low, width := bucketBounds(i)
			v := low + (width-1)/2
			v = min(max(v, h.min), h.max)
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}

// Summary is the part of a histogram a report shows.
type Summary struct {
	Count uint64
	Min   time.Duration
	Mean  time.Duration
	P50   time.Duration
	P90   time.Duration
	P99   time.Duration
	P999  time.Duration
	Max   time.Duration
}

// MarshalJSON writes the durations as milliseconds (floats), the unit
// the comparison script and people read.
func (s Summary) MarshalJSON() ([]byte, error) {
	ms := func(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }
	return json.Marshal(struct {
		Count uint64  `json:"count"`
		Min   float64 `json:"min_ms"`
		Mean  float64 `json:"mean_ms"`
		P50   float64 `json:"p50_ms"`
		P90   float64 `json:"p90_ms"`
		P99   float64 `json:"p99_ms"`
		P999  float64 `json:"p999_ms"`
		Max   float64 `json:"max_ms"`
	}{s.Count, ms(s.Min), ms(s.Mean), ms(s.P50), ms(s.P90), ms(s.P99), ms(s.P999), ms(s.Max)})
}

// Summarize computes the report figures of h.
func (h *Histogram) Summarize() Summary {
	return Summary{
		Count: h.count,
		Min:   h.Min(),
		Mean:  h.Mean(),
		P50:   h.Percentile(50),
		P90:   h.Percentile(90),
		P99:   h.Percentile(99),
		P999:  h.Percentile(99.9),
		Max:   h.Max(),
	}
}
