package loadtest

import (
	"context"
	"math"
	"sync/atomic"
	"time"
)

// Limits bound a run in time and in count; both always apply.
type Limits struct {
	// Duration is how long requests are started for; in-flight requests
	// then finish within their timeout.
	Duration time.Duration `yaml:"duration"`
	// MaxRequests stops the run after this many requests were started.
	MaxRequests uint64 `yaml:"max_requests"`
	// Rate is the open-loop schedule in requests (or queries) per second
	// over all workers; 0 runs closed-loop, each worker sending its next
	// request as soon as the last one is answered.
	Rate float64 `yaml:"rate"`
}

// Progress is a snapshot of a running load, for a live progress line.
type Progress struct {
	Elapsed time.Duration
	Done    uint64 // answered requests
	Errors  uint64
}

// schedule hands out request slots to the workers of one run. In closed
// loop a slot is "now"; in open loop slot i is due at start + i/rate, and
// latency is measured from that due time, not from when the worker got to
// it (coordinated omission).
type schedule struct {
	start    time.Time
	end      time.Time
	max      uint64
	interval float64 // ns between slots; 0 = closed loop
	next     atomic.Uint64
	started  atomic.Uint64 // open loop: slots taken before the end
	done     atomic.Uint64
	errs     atomic.Uint64
}

func newSchedule(l Limits) *schedule {
	now := time.Now()
	s := &schedule{start: now, end: now.Add(l.Duration), max: l.MaxRequests}
	if l.Rate > 0 {
		s.interval = float64(time.Second) / l.Rate
	}
	return s
}

// take returns the number of the next request (0, 1, 2, … over all
// workers; it picks the target) and the time it is due, or ok=false when
// the run is over (duration, count or ctx). In open loop it waits until the
// due time.
func (s *schedule) take(ctx context.Context, timer *time.Timer) (i uint64, due time.Time, ok bool) {
	if ctx.Err() != nil {
		return 0, time.Time{}, false
	}
	i = s.next.Add(1) - 1
	if i >= s.max {
		return 0, time.Time{}, false
	}
	if s.interval == 0 {
		now := time.Now()
		return i, now, now.Before(s.end)
	}
	due = s.start.Add(time.Duration(float64(i) * s.interval))
	if !due.Before(s.end) || !time.Now().Before(s.end) {
		// Past the end, slots still due are not sent: missed() counts them.
		return 0, time.Time{}, false
	}
	s.started.Add(1)
	if wait := time.Until(due); wait > 0 {
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-ctx.Done():
			return 0, time.Time{}, false
		}
	}
	return i, due, true
}

// missed is, in open loop, the number of requests due before the end
// that no worker got to send because all were busy: the target could not
// keep up with the rate. Zero in closed loop.
func (s *schedule) missed() uint64 {
	if s.interval == 0 {
		return 0
	}
	slots := uint64(math.Ceil(float64(s.end.Sub(s.start)) / s.interval))
	slots = min(slots, s.max)
	return slots - min(slots, s.started.Load())
}

func (s *schedule) progress() Progress {
	return Progress{Elapsed: time.Since(s.start), Done: s.done.Load(), Errors: s.errs.Load()}
}

// watchProgress calls fn every second until stop is closed.
func (s *schedule) watchProgress(fn func(Progress), stop <-chan struct{}) {
	if fn == nil {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			fn(s.progress())
		case <-stop:
			return
		}
	}
}

func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}
