package loadtest

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// exactPercentile is the nearest-rank reference the histogram must agree with.
func exactPercentile(sorted []int64, q float64) int64 {
	rank := int(math.Ceil(q / 100 * float64(len(sorted))))
	rank = max(rank, 1)
	return sorted[rank-1]
}

func TestBucketIndexBoundsRoundTrip(t *testing.T) {
	prev := -1
	for _, v := range []int64{0, 1, 2, 255, 256, 511, 512, 513, 1000, 1 << 20, 123456789, maxTrackable} {
		i := bucketIndex(v)
		if i < prev {
			t.Errorf("bucketIndex(%d) = %d, smaller than for a smaller value (%d)", v, i, prev)
		}
		prev = i
		if i >= bucketCount {
			t.Fatalf("bucketIndex(%d) = %d, out of range %d", v, i, bucketCount)
		}
		low, width := bucketBounds(i)
		if v < low || v >= low+width {
			t.Errorf("value %d in bucket %d = [%d, %d)", v, i, low, low+width)
		}
		if low >= 2*subCount && float64(width)/float64(low) > 1.0/subCount {
			t.Errorf("bucket %d relative width %g > %g", i, float64(width)/float64(low), 1.0/subCount)
		}
	}
	// Every bucket starts where the previous one ended.
	end := int64(0)
	for i := range bucketCount {
		low, width := bucketBounds(i)
		if low != end {
			t.Fatalf("bucket %d starts at %d, want %d", i, low, end)
		}
		end = low + width
	}
	if end-1 != maxTrackable {
		t.Errorf("last bucket ends at %d, want %d", end-1, maxTrackable)
	}
}

func TestHistogramPercentiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name string
		gen  func() int64
	}{
		{"uniform 1µs-10ms", func() int64 { return 1000 + rng.Int64N(10_000_000) }},
		{"lognormal around 300µs", func() int64 { return int64(math.Exp(rng.NormFloat64()*1.2) * 300_000) }},
		{"bimodal 50µs and 40ms", func() int64 {
			if rng.IntN(100) < 3 {
				return 40_000_000 + rng.Int64N(1_000_000)
			}
			return 50_000 + rng.Int64N(5_000)
		}},
		{"small exact values", func() int64 { return rng.Int64N(400) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHistogram()
			vals := make([]int64, 200_000)
			var sum float64
			for i := range vals {
				vals[i] = tt.gen()
				h.Record(time.Duration(vals[i]))
				sum += float64(vals[i])
			}
			slices.Sort(vals)
			for _, q := range []float64{0, 1, 50, 90, 99, 99.9, 99.99, 100} {
				want := exactPercentile(vals, q)
				got := int64(h.Percentile(q))
				if diff := math.Abs(float64(got - want)); diff > float64(want)/subCount+1 {
					t.Errorf("Percentile(%v) = %d, want %d ± %.0f", q, got, want, float64(want)/subCount+1)
				}
			}
			if h.Count() != uint64(len(vals)) {
				t.Errorf("Count() = %d, want %d", h.Count(), len(vals))
			}
			if int64(h.Min()) != vals[0] || int64(h.Max()) != vals[len(vals)-1] {
				t.Errorf("Min, Max = %d, %d, want %d, %d", h.Min(), h.Max(), vals[0], vals[len(vals)-1])
			}
			if mean := sum / float64(len(vals)); math.Abs(float64(h.Mean())-mean) > 1 {
				t.Errorf("Mean() = %d, want %.0f", h.Mean(), mean)
			}
		})
	}
}

func TestHistogramMergeEqualsSingle(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	all, a, b := NewHistogram(), NewHistogram(), NewHistogram()
	for i := range 50_000 {
		d := time.Duration(rng.Int64N(int64(time.Second)))
		all.Record(d)
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	a.Merge(b)
	a.Merge(nil)
	a.Merge(NewHistogram())
	if got, want := a.Summarize(), all.Summarize(); got != want {
		t.Errorf("merged Summarize() = %+v, want %+v", got, want)
	}
}

func TestHistogramEdges(t *testing.T) {
	h := NewHistogram()
	if s := h.Summarize(); s != (Summary{}) {
		t.Errorf("empty Summarize() = %+v, want zero", s)
	}
	h.Record(-5)
	h.Record(2 * time.Hour)
	if h.Min() != 0 {
		t.Errorf("Min() after a negative value = %v, want 0", h.Min())
	}
	if h.Clamped() != 1 || h.Max() != time.Duration(maxTrackable) {
		t.Errorf("Clamped, Max = %d, %v, want 1, %v", h.Clamped(), h.Max(), time.Duration(maxTrackable))
	}
	if got := h.Percentile(100); got != time.Duration(maxTrackable) {
		t.Errorf("Percentile(100) = %v, want %v", got, time.Duration(maxTrackable))
	}
}

func TestSummaryJSON(t *testing.T) {
	s := Summary{Count: 3, Min: 1500 * time.Microsecond, P99: 2 * time.Millisecond, Max: 12345678}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]float64
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"count": 3, "min_ms": 1.5, "mean_ms": 0, "p50_ms": 0, "p90_ms": 0, "p99_ms": 2, "p999_ms": 0, "max_ms": 12.346}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("json %s = %v, want %v (all: %s)", k, got[k], v, b)
		}
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	h := NewHistogram()
	b.ReportAllocs()
	d := time.Duration(1)
	for b.Loop() {
		h.Record(d)
		d = d*7 + 13
		if d > time.Second {
			d = 1
		}
	}
}
