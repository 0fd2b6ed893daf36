package redisstore_test

import (
	"testing"

	"github.com/cordon-gw/cordon/internal/testutil"
	"github.com/cordon-gw/cordon/reports"
)

// BenchmarkApply writes one flush worth of aggregates (1,000 events of 5
// users: about 20 rows) per iteration; events/s is what one edge's writer
// sustains against a local redis-server.
func BenchmarkApply(b *testing.B) {
	r := testutil.StartRedis(b)
	c := client(b, r)
	s, err := reportsStore(c)
	if err != nil {
		b.Fatal(err)
	}
	d := reports.NewDelta()
	for _, ev := range events(1000, 9) {
		d.Add(ev)
	}
	seq := uint64(0)
	b.ReportAllocs()
	for b.Loop() {
		seq++
		if err := s.Apply(b.Context(), &reports.Batch{Origin: "bench", Seq: seq, Rows: d.Rows, Events: d.Events}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(d.Rows)), "rows/batch")
	b.ReportMetric(float64(d.Events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
