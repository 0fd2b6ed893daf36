package reports

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cordon-gw/cordon/policies"
)

// Deps are the parts a Pipeline is built from.
type Deps struct {
	// Store receives the aggregates. Required. The Pipeline does not
	// close it.
	Store Store
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Registerer for the cordon_reports_* metrics; nil registers into a
	// private registry.
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Compactor is implemented by stores that need periodic maintenance
// (LocalStore). The pipeline calls Compact every Config.CompactInterval
// from the goroutine that writes to the store.
type Compactor interface {
	Compact(ctx context.Context) error
}

// Pipeline takes access events from the adapters and turns them into the
// access log, syslog messages and stored aggregates. Record never blocks;
// one worker goroutine logs and aggregates, one writer goroutine hands
// aggregated deltas to the Store, buffering them (bounded) while the
// store fails and retrying with capped backoff.
type Pipeline struct {
	cfg    Config
	store  Store
	logger *slog.Logger
	now    func() time.Time
	m      *metrics
	priv   *privacy
	origin string

	q        eventQueue
	flushReq chan chan struct{}
	stop     chan struct{}
	closed   atomic.Bool
	workerWG sync.WaitGroup
	writerWG sync.WaitGroup

	// worker-only state
	spare      []policies.AccessEvent // the slots of the last batch
	delta      *Delta
	line       []byte
	logFailing bool
	alog       *accessLog
	slog       *syslogWriter

	// store buffer, shared by worker and writer
	mu            sync.Mutex
	pending       *Delta
	pendingFields int
	inflight      *Batch
	inflightCells int
	inflightSpill int64 // > 0: the in-flight batch is that many bytes of the spill file
	dropWarned    bool
	spill         *spill // nil: overflow is dropped
	spillSeq      uint64
	kick          chan struct{} // new aggregates pending
	force         chan struct{} // Flush or Close waits: retry now
	writerStop    chan struct{}
	seq           uint64
}

var _ interface{ Record(*policies.AccessEvent) } = (*Pipeline)(nil)

// New builds a Pipeline and starts its goroutines. Stop it with Close.
func New(cfg Config, deps Deps) (*Pipeline, error) {
	p, err := newPipeline(cfg, deps)
	if err != nil {
		return nil, err
	}
	p.start()
	return p, nil
}

func (p *Pipeline) start() {
	p.workerWG.Add(1)
	p.writerWG.Add(1)
	go p.work()
	go p.write()
	if p.spill != nil && p.spill.Pending() > 0 {
		p.logger.Info("replaying aggregates spilled by an earlier run", "events", p.spill.Pending())
		p.kick <- struct{}{}
	}
}

// newPipeline builds a Pipeline without starting its goroutines.
func newPipeline(cfg Config, deps Deps) (*Pipeline, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Store == nil {
		return nil, errors.New("reports: new pipeline: Deps.Store is required")
	}
	cfg.fill()
	p := &Pipeline{
		cfg: cfg, store: deps.Store, logger: deps.Logger, now: deps.Now,
		q:        eventQueue{max: cfg.QueueSize, kick: make(chan struct{}, 1)},
		flushReq: make(chan chan struct{}),
		stop:     make(chan struct{}), writerStop: make(chan struct{}),
		kick: make(chan struct{}, 1), force: make(chan struct{}, 1),
		delta: NewDelta(), pending: NewDelta(),
	}
	if p.logger == nil {
		p.logger = slog.Default()
	}
	p.logger = p.logger.With("component", "reports")
	if p.now == nil {
		p.now = time.Now
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	p.origin = hex.EncodeToString(id[:])
	priv, err := newPrivacy(cfg, deps.Store)
	if err != nil {
		return nil, err
	}
	p.priv = priv
	if _, local := deps.Store.(*LocalStore); !local && cfg.SpillMaxMB > 0 {
		if p.spill, err = newSpill(filepath.Join(cfg.Dir, "spill.log"), int64(cfg.SpillMaxMB)<<20); err != nil {
			return nil, err
		}
	}
	p.m = newMetrics(deps.Registerer, func() float64 { return float64(p.q.len()) }, func() float64 {
		if p.spill == nil {
			return 0
		}
		return float64(p.spill.Bytes())
	})
	if cfg.AccessLog.Enabled {
		if p.alog, err = openAccessLog(cfg.AccessLog, p.now); err != nil {
			return nil, err
		}
	}
	if cfg.Syslog.Address != "" {
		p.slog = newSyslogWriter(cfg.Syslog, p.now)
	}
	return p, nil
}

// Origin is this process's id in stored batches (random per start).
func (p *Pipeline) Origin() string { return p.origin }

// Record queues a copy of ev. It never blocks: when the queue is full (or
// the pipeline closed) the event is dropped and counted.
func (p *Pipeline) Record(ev *policies.AccessEvent) {
	if ev == nil {
		return
	}
	if p.closed.Load() {
		p.m.dropClosed.Inc()
		return
	}
	if !p.q.add(ev) {
		p.m.dropQueueFull.Inc()
		return
	}
	p.m.received.Inc()
}

// Batching of the hand-off from adapters to the worker: the worker wakes
// when a batch starts and takes it queueDelay later, or at once when it
// reached queueBatch events; a busy proxy pays one wake-up and one access
// log write per batch instead of per event.
const (
	queueBatch = 256
	queueDelay = 5 * time.Millisecond
)

// eventQueue is the bounded queue between Record and the worker. Events
// are copied into reused slots (their slices keep their capacity), so
// steady-state recording allocates nothing.
type eventQueue struct {
	mu   sync.Mutex
	cur  []policies.AccessEvent // slots; the first n hold queued events
	n    int
	max  int
	kick chan struct{} // cap 1: a batch started or filled up
}

// add copies ev into the queue; false when it is full.
func (q *eventQueue) add(ev *policies.AccessEvent) bool {
	q.mu.Lock()
	if q.n >= q.max {
		q.mu.Unlock()
		return false
	}
	if q.n == len(q.cur) {
		q.cur = append(q.cur, policies.AccessEvent{})
		q.cur = q.cur[:cap(q.cur)]
	}
	c := &q.cur[q.n]
	groups, cats, threats := c.Groups[:0], c.Categories[:0], c.Threats[:0]
	*c = *ev
	c.Groups = append(groups, ev.Groups...)
	c.Categories = append(cats, ev.Categories...)
	c.Threats = append(threats, ev.Threats...)
	q.n++
	n := q.n
	q.mu.Unlock()
	if n == 1 || n == queueBatch {
		select {
		case q.kick <- struct{}{}:
		default:
		}
	}
	return true
}

// take swaps the queued events for the slots of spare and returns them;
// they stay valid until passed back as spare.
func (q *eventQueue) take(spare []policies.AccessEvent) []policies.AccessEvent {
	q.mu.Lock()
	batch := q.cur[:q.n]
	q.cur, q.n = spare[:cap(spare)], 0
	q.mu.Unlock()
	return batch
}

func (q *eventQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// work is the single worker: log, syslog, aggregate; hand the delta to the
// store buffer every FlushInterval.
func (p *Pipeline) work() {
	defer p.workerWG.Done()
	t := time.NewTicker(p.cfg.FlushInterval)
	defer t.Stop()
	batchT := time.NewTimer(time.Hour)
	batchT.Stop()
	armed := false
	for {
		select {
		case <-p.q.kick:
			if p.q.len() < queueBatch {
				if !armed {
					batchT.Reset(queueDelay)
					armed = true
				}
				continue
			}
			p.drain()
		case <-batchT.C:
			armed = false
			p.drain()
		case <-t.C:
			p.handOff()
		case done := <-p.flushReq:
			p.drain()
			p.handOff()
			close(done)
		case <-p.stop:
			p.drain()
			p.handOff()
			return
		}
	}
}

// drain handles every queued event, then writes the access log out.
func (p *Pipeline) drain() {
	for {
		batch := p.q.take(p.spare)
		for i := range batch {
			p.handle(&batch[i])
		}
		p.spare = batch
		if len(batch) < queueBatch {
			break
		}
	}
	p.flushLog()
}

func (p *Pipeline) flushLog() {
	if p.alog == nil {
		return
	}
	p.logResult(p.alog.Flush())
}

// logResult counts access log errors and logs the first of a run of
// failures and the recovery, not every line (a full disk fails them all).
func (p *Pipeline) logResult(err error) {
	switch {
	case err != nil:
		p.m.logErrors.Inc()
		if !p.logFailing {
			p.logFailing = true
			p.logger.Error("access log write failed; counting further errors in cordon_reports_access_log_errors_total", "err", err)
		}
	case p.logFailing:
		p.logFailing = false
		p.logger.Info("access log writes succeed again")
	}
}

func (p *Pipeline) handle(ev *policies.AccessEvent) {
	if ev.Time.IsZero() {
		ev.Time = p.now()
	}
	if ev.Proto == "" {
		ev.Proto = ev.Protocol.String()
	}
	ev.User = p.priv.User(ev.User)
	if p.priv.dropPaths {
		ev.Path = ""
	}
	if p.alog != nil || p.slog != nil {
		line, err := marshalEvent(p.line[:0], ev)
		p.line = line
		if err == nil {
			if p.alog != nil {
				n, rotated, werr := p.alog.Write(line)
				p.m.logBytes.Add(float64(n))
				if rotated {
					p.m.logRotations.Inc()
				}
				if werr != nil {
					p.logResult(werr)
				}
			}
			if p.slog != nil {
				if err := p.slog.Send(ev, line); err != nil {
					p.m.syslogSent.WithLabelValues("dropped").Inc()
				} else {
					p.m.syslogSent.WithLabelValues("sent").Inc()
				}
			}
		}
	}
	p.delta.Add(ev)
}

// handOff moves the worker's delta into the bounded store buffer, or
// drops it (counted) when the buffer is full.
func (p *Pipeline) handOff() {
	d := p.delta
	if d.Empty() {
		return
	}
	p.delta = NewDelta()
	n := d.Fields()
	p.mu.Lock()
	if p.inflightCells+p.pendingFields+n > p.cfg.BufferMaxFields {
		p.pendingFields = p.pending.Fields() // the running sum over-counts merged cells
	}
	if p.inflightCells+p.pendingFields+n > p.cfg.BufferMaxFields {
		warn := !p.dropWarned
		p.dropWarned = true
		p.mu.Unlock()
		if p.spill != nil {
			p.spillSeq++
			err := p.spill.Append(&Batch{Origin: p.origin + "-s", Seq: p.spillSeq, Rows: d.Rows, Events: d.Events})
			if err == nil {
				p.m.spilled.Add(float64(d.Events))
				if warn {
					p.logger.Warn("reports buffer full; spilling aggregates to disk until the store takes them", "buffer_max_fields", p.cfg.BufferMaxFields)
				}
				return
			}
			p.logger.Error("reports spill failed; dropping aggregates", "err", err, "events", d.Events)
		}
		p.m.dropped.WithLabelValues(dropBufferFull).Add(float64(d.Events))
		if warn {
			p.logger.Warn("reports buffer full; dropping aggregates until the store takes them (counted in cordon_reports_events_dropped_total)",
				"events", d.Events, "cells", n, "buffer_max_fields", p.cfg.BufferMaxFields)
		}
		return
	}
	p.pending.Merge(d, p.cfg.MaxDomainsPerRow)
	p.pendingFields += n
	p.m.bufferedCells.Set(float64(p.inflightCells + p.pendingFields))
	p.m.bufferedEvts.Set(float64(p.pending.Events + p.inflightEvents()))
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

func (p *Pipeline) inflightEvents() int64 {
	if p.inflight == nil {
		return 0
	}
	return p.inflight.Events
}

// write is the store writer: it sends the in-flight batch (retrying the
// same batch after an error, so the store can skip rows it already has),
// then the next pending delta, and compacts periodically.
func (p *Pipeline) write() {
	defer p.writerWG.Done()
	var retry <-chan time.Time
	var backoff time.Duration
	failing := false
	compact := time.NewTicker(p.cfg.CompactInterval)
	defer compact.Stop()
	for {
		select {
		case <-p.kick:
			if failing {
				continue // new aggregates wait for the retry timer
			}
		case <-p.force:
		case <-retry:
		case <-compact.C:
			if c, ok := p.store.(Compactor); ok {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				if err := c.Compact(ctx); err != nil {
					p.m.compactions.WithLabelValues("error").Inc()
					p.logger.Error("reports store compaction failed", "err", err)
				} else {
					p.m.compactions.WithLabelValues("ok").Inc()
				}
				cancel()
			}
			continue
		case <-p.writerStop:
			return
		}
		retry = nil
		for {
			err := p.flushOnce()
			if err == nil {
				if failing {
					p.logger.Info("reports store reachable again; buffered aggregates written")
				}
				failing, backoff = false, 0
				if p.idle() {
					break
				}
				continue
			}
			if !failing {
				p.logger.Warn("reports store write failed; buffering aggregates in memory", "err", err)
			}
			failing = true
			switch {
			case backoff == 0:
				backoff = p.cfg.FlushInterval
			case backoff < 30*time.Second:
				backoff = min(2*backoff, 30*time.Second)
			}
			retry = time.After(backoff)
			break
		}
	}
}

// flushOnce writes the in-flight batch, promoting the pending delta first
// when nothing is in flight. Nothing to do is success.
func (p *Pipeline) flushOnce() error {
	p.mu.Lock()
	if p.inflight == nil {
		if p.pending.Empty() {
			p.mu.Unlock()
			if p.spill == nil {
				return nil
			}
			b, n, err := p.spill.Next()
			if err != nil || b == nil {
				return err
			}
			p.mu.Lock()
			p.inflight, p.inflightSpill = b, n
		} else {
			p.seq++
			p.inflight = &Batch{Origin: p.origin, Seq: p.seq, Rows: p.pending.Rows, Events: p.pending.Events}
			p.inflightCells = p.pendingFields
			p.pending, p.pendingFields = NewDelta(), 0
		}
	}
	b, spilled := p.inflight, p.inflightSpill
	p.mu.Unlock()

	timeout := max(5*p.cfg.FlushInterval, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	start := time.Now()
	err := p.store.Apply(ctx, b)
	cancel()
	p.m.flushSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		p.m.flushes.WithLabelValues("error").Inc()
		return err
	}
	p.m.flushes.WithLabelValues("ok").Inc()
	p.m.storedEvents.Add(float64(b.Events))
	if spilled > 0 {
		if err := p.spill.Done(b, spilled); err != nil {
			p.logger.Error("reports spill bookkeeping failed", "err", err)
		}
	}
	p.mu.Lock()
	p.inflight, p.inflightCells, p.inflightSpill = nil, 0, 0
	p.dropWarned = false
	p.m.bufferedCells.Set(float64(p.pendingFields))
	p.m.bufferedEvts.Set(float64(p.pending.Events))
	p.mu.Unlock()
	return nil
}

func (p *Pipeline) idle() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inflight == nil && p.pending.Empty() && (p.spill == nil || p.spill.Pending() == 0)
}

// Flush hands everything recorded so far to the store and waits until the
// store acknowledged it (retrying a failing store) or ctx is done.
func (p *Pipeline) Flush(ctx context.Context) error {
	if p.closed.Load() {
		return ErrClosed
	}
	if err := p.sync(ctx); err != nil {
		return err
	}
	return p.waitIdle(ctx)
}

// sync makes the worker process every queued event and hand its delta to
// the store buffer.
func (p *Pipeline) sync(ctx context.Context) error {
	done := make(chan struct{})
	select {
	case p.flushReq <- done:
	case <-ctx.Done():
		return fmt.Errorf("reports: flush: %w", ctx.Err())
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("reports: flush: %w", ctx.Err())
	}
}

func (p *Pipeline) waitIdle(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !p.idle() {
		select {
		case p.force <- struct{}{}:
		default:
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("reports: flush: %w", ctx.Err())
		}
	}
	return nil
}

// Close stops accepting events, processes what is queued, writes the
// aggregates to the store (retrying until ctx is done) and closes the
// logs. It does not close the Store. Aggregates still buffered when ctx
// ends go to the spill file for the next start, or, without one, are lost
// and counted as buffer_full drops.
func (p *Pipeline) Close(ctx context.Context) error {
	if p.closed.Swap(true) {
		return nil
	}
	close(p.stop)
	p.workerWG.Wait()
	// Events a racing Record queued after the worker's last drain.
	p.drain()
	p.handOff()
	var errs []error
	werr := p.waitIdle(ctx)
	close(p.writerStop)
	p.writerWG.Wait()
	if werr != nil {
		errs = append(errs, p.spillOnClose(werr))
	}
	if p.spill != nil {
		_ = p.spill.Close()
	}
	if n := len(p.q.take(nil)); n > 0 { // queued after the last drain: counted, not silently lost
		p.m.dropClosed.Add(float64(n))
	}
	if c, ok := p.store.(Compactor); ok {
		if err := c.Compact(ctx); err != nil && !errors.Is(err, ErrClosed) {
			errs = append(errs, err)
		}
	}
	if p.alog != nil {
		if err := p.alog.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if p.slog != nil {
		_ = p.slog.Close()
	}
	return errors.Join(errs...)
}

// spillOnClose saves what the store did not take before Close gave up:
// the in-flight batch as it is (same origin and sequence, so rows the
// store already has are skipped on replay) and the pending delta as the
// next batch. Without a spill file it is counted as dropped.
func (p *Pipeline) spillOnClose(cause error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var batches []*Batch
	if p.inflight != nil && p.inflightSpill == 0 {
		batches = append(batches, p.inflight)
	}
	if !p.pending.Empty() {
		p.seq++
		batches = append(batches, &Batch{Origin: p.origin, Seq: p.seq, Rows: p.pending.Rows, Events: p.pending.Events})
	}
	var lost int64
	for _, b := range batches {
		if p.spill != nil {
			if err := p.spill.Append(b); err == nil {
				p.m.spilled.Add(float64(b.Events))
				continue
			}
		}
		lost += b.Events
	}
	p.inflight, p.pending = nil, NewDelta()
	if lost == 0 {
		if len(batches) > 0 {
			p.logger.Warn("store unreachable at close; buffered aggregates spilled for the next start")
		}
		return nil
	}
	p.m.dropped.WithLabelValues(dropBufferFull).Add(float64(lost))
	return fmt.Errorf("reports: close: %d events not stored: %w", lost, cause)
}
