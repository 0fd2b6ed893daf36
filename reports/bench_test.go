package reports

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"
)

func benchPipeline(b *testing.B, accessLog bool) *Pipeline {
	cfg := Defaults()
	cfg.Dir = b.TempDir()
	cfg.AccessLog.Enabled = accessLog
	cfg.AccessLog.Path = filepath.Join(cfg.Dir, "access.log")
	cfg.QueueSize = 1 << 20
	st, err := OpenLocal(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	p, err := New(cfg, Deps{Store: st, Logger: testLogger(b)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = p.Close(context.Background())
		_ = st.Close()
	})
	return p
}

// BenchmarkRecord is the cost an adapter pays per event (copy + queue).
func BenchmarkRecord(b *testing.B) {
	p := benchPipeline(b, false)
	evs := genEvents(1024, time.Now(), 1)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		p.Record(evs[i&1023])
		i++
	}
	b.ReportMetric(promtest.ToFloat64(p.m.dropped.WithLabelValues(dropQueueFull)), "dropped")
}

// BenchmarkRecordSteady is Record alone when the worker keeps up: the
// queue is emptied (outside the timer) every 512 events, so copies come
// from the pool.
func BenchmarkRecordSteady(b *testing.B) {
	cfg := Defaults()
	cfg.Dir = b.TempDir()
	cfg.AccessLog.Enabled = false
	st, err := OpenLocal(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	p, err := newPipeline(cfg, Deps{Store: st, Logger: testLogger(b)}) // worker not started
	if err != nil {
		b.Fatal(err)
	}
	evs := genEvents(512, time.Now(), 1)
	b.ReportAllocs()
	for b.Loop() {
		for _, ev := range evs {
			p.Record(ev)
		}
		b.StopTimer()
		p.spare = p.q.take(p.spare)
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs)), "ns/event")
}

// BenchmarkPipeline measures end-to-end throughput of one worker:
// JSON access log line, aggregation, and the store flush.
func BenchmarkPipeline(b *testing.B) {
	for _, tc := range []struct {
		name string
		log  bool
	}{{"aggregate", false}, {"aggregate+accesslog", true}} {
		b.Run(tc.name, func(b *testing.B) {
			p := benchPipeline(b, tc.log)
			evs := genEvents(1024, time.Now(), 2)
			const batch = 10000
			start := time.Now()
			n := 0
			for b.Loop() {
				for i := range batch {
					p.Record(evs[i&1023])
				}
				if err := p.Flush(b.Context()); err != nil {
					b.Fatal(err)
				}
				n += batch
			}
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events/s")
			b.ReportMetric(promtest.ToFloat64(p.m.dropped.WithLabelValues(dropQueueFull)), "dropped")
		})
	}
}

func BenchmarkDeltaAdd(b *testing.B) {
	evs := genEvents(1024, time.Now(), 3)
	d := NewDelta()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		d.Add(evs[i&1023])
		i++
	}
}

// BenchmarkReport30Days is a 30-day user report from the local store
// with 720 sealed hour segments of 50 users each.
func BenchmarkReport30Days(b *testing.B) {
	s, err := OpenLocal(Config{Dir: b.TempDir()}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	h := HourOf(now)
	for i := int64(0); i < 720; i++ {
		d := NewDelta()
		for _, ev := range genEvents(200, HourTime(h-i).Add(59*time.Minute), uint64(i)) {
			ev.Time = HourTime(h - i).Add(time.Minute)
			for u := range 50 {
				ev.User = "user" + string(rune('a'+u%26)) + string(rune('a'+u/26))
				d.Add(ev)
			}
		}
		rows := make(map[RowKey]*Counters)
		for k, c := range d.Rows {
			rows[k] = c
		}
		if err := writeSeg(s.segPath(h-i), 1, h-i, rows); err != nil {
			b.Fatal(err)
		}
		s.segs[h-i] = 1
	}
	r := &Reader{store: s, priv: &privacy{}, topN: 10, now: time.Now}
	q := Query{From: now.Add(-30 * 24 * time.Hour), To: now, Top: 10}
	b.ReportAllocs()
	for b.Loop() {
		rep, err := r.Report(b.Context(), ScopeUser, "useraa", q)
		if err != nil || rep.Requests == 0 {
			b.Fatalf("report: %v %+v", err, rep)
		}
	}
}
