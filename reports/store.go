package reports

import "context"

// Batch is what the pipeline hands a Store on each flush: the rows of one
// Delta, tagged with the edge process that made it (Origin, random per
// process start) and a sequence number that grows by one per batch of
// that origin.
type Batch struct {
	Origin string
	Seq    uint64
	Rows   map[RowKey]*Counters
	// Events is how many access events the rows hold (for metrics).
	Events int64
}

// Row is one stored hour of one subject.
type Row struct {
	Hour     int64 // Unix hour
	Counters *Counters
}

// Store keeps aggregate rows and answers range reads. Implementations are
// safe for concurrent use.
type Store interface {
	// Apply adds every row of b to the stored aggregates. The pipeline
	// calls it from one goroutine per store, in Seq order. A nil error
	// means every row is durable (local: fsync'd; Redis: acknowledged).
	// On error some rows may have been applied: the caller retries the
	// very same Batch (same Origin and Seq), and the store must not count
	// a row of it twice.
	Apply(ctx context.Context, b *Batch) error
	// Rows returns the stored rows of one scope and subject for the Unix
	// hours fromHour..toHour inclusive, in any order; hours without data
	// are absent. The returned Counters belong to the caller.
	Rows(ctx context.Context, scope Scope, subject string, fromHour, toHour int64) ([]Row, error)
	// Close releases the store; it does not close a client it was given.
	Close() error
}
