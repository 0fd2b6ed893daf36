package reports

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"sync"
)

// spill is the overflow of the store buffer on disk (<dir>/spill.log):
// when the in-memory buffer is full while the store is unreachable, or
// when the pipeline closes before the store took everything, batches are
// appended here (length, CRC-32C, JSON; fsync'd) with their origin and
// sequence number. The writer replays them in order once the store is
// back, and a pipeline started later replays what an earlier process
// left. Replaying a batch the store already has is harmless: stores skip
// a (origin, seq) they applied. The file is bounded (Config.SpillMaxMB);
// it is truncated once everything in it was stored.
type spill struct {
	mu     sync.Mutex
	path   string
	max    int64
	f      *os.File // nil until first use
	size   int64    // bytes written
	read   int64    // bytes replayed (stored)
	events int64    // events in unreplayed records
}

func newSpill(path string, maxBytes int64) (*spill, error) {
	s := &spill{path: path, max: maxBytes}
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reports: spill: %w", err)
	}
	if err := s.open(); err != nil {
		return nil, err
	}
	// Count what an earlier process left, and cut a torn tail.
	r := bufio.NewReader(io.NewSectionReader(s.f, 0, st.Size()))
	var good int64
	for {
		b, n, err := readSpillRecord(r, st.Size()-good)
		if err != nil {
			break
		}
		good += n
		s.events += b.Events
	}
	if good < st.Size() {
		if err := s.f.Truncate(good); err != nil {
			return nil, fmt.Errorf("reports: spill: %w", err)
		}
	}
	s.size = good
	return s, nil
}

func (s *spill) open() error {
	if s.f != nil {
		return nil
	}
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("reports: spill: %w", err)
	}
	s.f = f
	return nil
}

type spillRecord struct {
	Origin string      `json:"o"`
	Seq    uint64      `json:"q"`
	Events int64       `json:"n"`
	Rows   []storedRow `json:"rows"`
}

// Append writes b durably. It fails (and writes nothing) when the file
// would exceed its bound.
func (s *spill) Append(b *Batch) error {
	payload, err := json.Marshal(&spillRecord{Origin: b.Origin, Seq: b.Seq, Events: b.Events, Rows: rowsOf(b.Rows)})
	if err != nil {
		return fmt.Errorf("reports: spill: %w", err)
	}
	buf := make([]byte, 8+len(payload))
	binary.LittleEndian.PutUint32(buf[:4], uint32(len(payload)))
	binary.LittleEndian.PutUint32(buf[4:8], crc32.Checksum(payload, crcTable))
	copy(buf[8:], payload)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.size-s.read+int64(len(buf)) > s.max {
		return fmt.Errorf("reports: spill: file would exceed %d bytes", s.max)
	}
	if err := s.open(); err != nil {
		return err
	}
	if _, err := s.f.WriteAt(buf, s.size); err != nil {
		_ = s.f.Truncate(s.size)
		return fmt.Errorf("reports: spill: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		_ = s.f.Truncate(s.size)
		return fmt.Errorf("reports: spill: %w", err)
	}
	s.size += int64(len(buf))
	s.events += b.Events
	return nil
}

// Next returns the first unreplayed batch and its length in the file,
// nil when none.
func (s *spill) Next() (*Batch, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil || s.read >= s.size {
		return nil, 0, nil
	}
	r := bufio.NewReader(io.NewSectionReader(s.f, s.read, s.size-s.read))
	b, n, err := readSpillRecord(r, s.size-s.read)
	if err != nil {
		return nil, 0, fmt.Errorf("reports: spill: record at %d: %w", s.read, err)
	}
	return b, n, nil
}

// Done marks the batch Next returned (n bytes) as stored; once all is
// stored the file is emptied.
func (s *spill) Done(b *Batch, n int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.read += n
	s.events -= b.Events
	if s.read < s.size {
		return nil
	}
	s.read, s.size, s.events = 0, 0, 0
	if err := s.f.Truncate(0); err != nil {
		return fmt.Errorf("reports: spill: %w", err)
	}
	return nil
}

// Pending is how many events wait in the file.
func (s *spill) Pending() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.events
}

// Bytes is the size of unreplayed records.
func (s *spill) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size - s.read
}

func (s *spill) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

func readSpillRecord(r *bufio.Reader, remaining int64) (*Batch, int64, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, 0, err
	}
	n := binary.LittleEndian.Uint32(hdr[:4])
	if int64(n) > remaining-8 {
		return nil, 0, fmt.Errorf("%w: record runs past the end", ErrCorrupt)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return nil, 0, err
	}
	if crc32.Checksum(payload, crcTable) != binary.LittleEndian.Uint32(hdr[4:]) {
		return nil, 0, fmt.Errorf("%w: checksum", ErrCorrupt)
	}
	var rec spillRecord
	if err := json.Unmarshal(payload, &rec); err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	b := &Batch{Origin: rec.Origin, Seq: rec.Seq, Events: rec.Events, Rows: make(map[RowKey]*Counters, len(rec.Rows))}
	for _, row := range rec.Rows {
		k, ok := row.key()
		if !ok || row.C == nil {
			return nil, 0, fmt.Errorf("%w: bad row", ErrCorrupt)
		}
		if cur := b.Rows[k]; cur != nil {
			cur.Merge(row.C)
		} else {
			b.Rows[k] = row.C
		}
	}
	return b, 8 + int64(n), nil
}
