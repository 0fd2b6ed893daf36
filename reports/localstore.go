package reports

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// LocalStore is the embedded, durable Store kept in a directory (by
// default <data-dir>/reports/agg). Its layout:
//
//   - state-file (state.json): a checkpoint of the rows of hours not yet
//     sealed, the last batch sequence per origin, and the checkpoint
//     generation G; written to a temporary file, fsync'd and renamed.
//   - wal-G.log: every batch applied since checkpoint G, one record each
//     (length, CRC-32C, JSON), fsync'd before Apply returns. A torn last
//     record (crash mid-write) fails its checksum and is cut off on open.
//   - seg-H.seg: the sealed rows of Unix hour H, one immutable file per
//     hour: a JSON header line (generation, and an index of subject →
//     offset, length, CRC) followed by one JSON blob per row, so a query
//     for one user reads only that user's blob of each hour.
//
// Compact seals every hour before the current one into its segment
// (merging with an existing one when late rows arrived), writes a new
// state file with generation G+1 and starts wal-(G+1). A crash at any step
// is recovered on open without double counting: a segment whose
// generation is newer than the state file already holds the open rows of
// its hour, so those are dropped; a WAL of an older generation is
// discarded. Retention is applied by Compact (segments older than the
// retention are deleted) and by Rows (older hours are never returned).
type LocalStore struct {
	dir        string
	retention  time.Duration
	maxDomains int
	logger     *slog.Logger
	now        func() time.Time

	mu   sync.RWMutex
	gen  uint64
	open map[RowKey]*Counters
	seqs map[string]uint64
	segs map[int64]uint64 // hour → generation of its segment file

	idxMu      sync.Mutex
	idx        map[int64]*segIndex // parsed segment headers
	idxEntries int
	wal        *os.File
	walLen     int64
	closed     bool
}

var _ Store = (*LocalStore)(nil)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

const stateFile = "state.json"

type storedRow struct {
	Scope   string    `json:"s"`
	Subject string    `json:"k"`
	Hour    int64     `json:"h"`
	C       *Counters `json:"c"`
}

type stateDoc struct {
	Gen  uint64            `json:"gen"`
	Seqs map[string]uint64 `json:"seqs,omitempty"`
	Rows []storedRow       `json:"rows,omitempty"`
}

type walRecord struct {
	Origin string      `json:"o"`
	Seq    uint64      `json:"q"`
	Rows   []storedRow `json:"rows"`
}

type segHeader struct {
	Version int                 `json:"v"`
	Gen     uint64              `json:"gen"`
	Hour    int64               `json:"hour"`
	Index   map[string][3]int64 `json:"index"` // scope code ":" subject → offset, length, crc
}

// OpenLocal opens (creating it when missing) the store in cfg.Dir/agg,
// with cfg.Retention (rows older are never returned and are deleted by
// Compact) and cfg.MaxDomainsPerRow. Zero fields mean their defaults;
// logger nil means slog.Default().
func OpenLocal(cfg Config, logger *slog.Logger) (*LocalStore, error) {
	cfg.fill()
	if logger == nil {
		logger = slog.Default()
	}
	dir := filepath.Join(cfg.Dir, "agg")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("reports: local store: %w", err)
	}
	s := &LocalStore{
		dir: dir, retention: cfg.Retention, maxDomains: cfg.MaxDomainsPerRow, now: time.Now,
		logger: logger.With("component", "reports.localstore"),
		open:   make(map[RowKey]*Counters), seqs: make(map[string]uint64), segs: make(map[int64]uint64),
		idx: make(map[int64]*segIndex),
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *LocalStore) load() error {
	b, err := os.ReadFile(filepath.Join(s.dir, stateFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("reports: local store: %w", err)
	default:
		var st stateDoc
		if err := json.Unmarshal(b, &st); err != nil {
			return fmt.Errorf("reports: local store: %s: %w: %w", stateFile, ErrCorrupt, err)
		}
		s.gen = st.Gen
		for k, v := range st.Seqs {
			s.seqs[k] = v
		}
		for _, r := range st.Rows {
			k, ok := r.key()
			if !ok || r.C == nil {
				return fmt.Errorf("reports: local store: %s: %w: bad row scope %q", stateFile, ErrCorrupt, r.Scope)
			}
			s.merge(k, r.C)
		}
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("reports: local store: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, "seg-") && strings.HasSuffix(name, ".seg"):
			h, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(name, "seg-"), ".seg"), 10, 64)
			if err != nil {
				continue
			}
			ix, err := loadSegIndex(filepath.Join(s.dir, name))
			if err != nil {
				return fmt.Errorf("reports: local store: %s: %w", name, err)
			}
			s.segs[h] = ix.gen
			s.cacheIndex(h, ix)
		case strings.HasPrefix(name, "wal-") && name != s.walName():
			// A WAL of another generation is already in the state file.
			if err := os.Remove(filepath.Join(s.dir, name)); err != nil {
				return fmt.Errorf("reports: local store: %w", err)
			}
		case strings.HasSuffix(name, ".tmp"):
			_ = os.Remove(filepath.Join(s.dir, name))
		}
	}
	if err := s.replayWAL(); err != nil {
		return err
	}
	// Segments written by an interrupted checkpoint already hold the open
	// rows of their hour.
	for k := range s.open {
		if g, ok := s.segs[k.Hour]; ok && g > s.gen {
			delete(s.open, k)
		}
	}
	return nil
}

func (s *LocalStore) walName() string { return "wal-" + strconv.FormatUint(s.gen, 10) + ".log" }

func (r storedRow) key() (RowKey, bool) {
	sc, ok := ParseScope(r.Scope)
	return RowKey{Scope: sc, Subject: r.Subject, Hour: r.Hour}, ok
}

func (s *LocalStore) merge(k RowKey, c *Counters) {
	cur := s.open[k]
	if cur == nil {
		cur = &Counters{}
		s.open[k] = cur
	}
	cur.MergeCapped(c, s.maxDomains)
}

func (s *LocalStore) replayWAL() error {
	path := filepath.Join(s.dir, s.walName())
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("reports: local store: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("reports: local store: %w", err)
	}
	size := st.Size()
	r := bufio.NewReader(f)
	var good int64
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			break // EOF or torn header
		}
		n := binary.LittleEndian.Uint32(hdr[:4])
		if int64(n) > size-good-8 {
			break // torn: the record runs past the end of the file
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			break
		}
		if crc32.Checksum(payload, crcTable) != binary.LittleEndian.Uint32(hdr[4:]) {
			break
		}
		var rec walRecord
		if err := json.Unmarshal(payload, &rec); err != nil {
			break
		}
		s.applyRecord(&rec)
		good += 8 + int64(n)
	}
	if size > good {
		s.logger.Warn("cutting torn aggregate log tail", "file", path, "bytes", size-good)
		if err := f.Truncate(good); err != nil {
			_ = f.Close()
			return fmt.Errorf("reports: local store: truncate wal: %w", err)
		}
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		_ = f.Close()
		return fmt.Errorf("reports: local store: %w", err)
	}
	s.wal, s.walLen = f, good
	return nil
}

func (s *LocalStore) applyRecord(rec *walRecord) {
	if rec.Origin != "" {
		if last, ok := s.seqs[rec.Origin]; ok && rec.Seq <= last {
			return
		}
		s.seqs[rec.Origin] = rec.Seq
	}
	for _, r := range rec.Rows {
		if k, ok := r.key(); ok && r.C != nil {
			s.merge(k, r.C)
		}
	}
}

func rowsOf(m map[RowKey]*Counters) []storedRow {
	out := make([]storedRow, 0, len(m))
	for k, c := range m {
		out = append(out, storedRow{Scope: k.Scope.Code(), Subject: k.Subject, Hour: k.Hour, C: c})
	}
	return out
}

// Apply appends b to the write-ahead log, fsyncs it and adds it to the
// open rows. A batch whose Seq was already applied for its Origin is
// skipped.
func (s *LocalStore) Apply(ctx context.Context, b *Batch) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	rec := walRecord{Origin: b.Origin, Seq: b.Seq, Rows: rowsOf(b.Rows)}
	payload, err := json.Marshal(&rec)
	if err != nil {
		return fmt.Errorf("reports: local store: encode batch: %w", err)
	}
	buf := make([]byte, 8+len(payload))
	binary.LittleEndian.PutUint32(buf[:4], uint32(len(payload)))
	binary.LittleEndian.PutUint32(buf[4:8], crc32.Checksum(payload, crcTable))
	copy(buf[8:], payload)

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if last, ok := s.seqs[b.Origin]; ok && b.Origin != "" && b.Seq <= last {
		return nil
	}
	if _, err := s.wal.Write(buf); err != nil {
		_ = s.wal.Truncate(s.walLen)
		_, _ = s.wal.Seek(s.walLen, io.SeekStart)
		return fmt.Errorf("reports: local store: write wal: %w", err)
	}
	if err := s.wal.Sync(); err != nil {
		_ = s.wal.Truncate(s.walLen)
		_, _ = s.wal.Seek(s.walLen, io.SeekStart)
		return fmt.Errorf("reports: local store: sync wal: %w", err)
	}
	s.walLen += int64(len(buf))
	s.applyRecord(&rec)
	return nil
}

// Rows implements Store.
func (s *LocalStore) Rows(ctx context.Context, scope Scope, subject string, fromHour, toHour int64) ([]Row, error) {
	if min := HourOf(s.now().Add(-s.retention)); fromHour < min {
		fromHour = min
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	byHour := make(map[int64]*Counters)
	for h := fromHour; h <= toHour; h++ {
		if c := s.open[RowKey{scope, subject, h}]; c != nil {
			byHour[h] = c.Clone()
		}
	}
	for h, gen := range s.segs {
		if h < fromHour || h > toHour {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c, err := s.readSegRow(h, gen, scope, subject)
		if err != nil {
			return nil, err
		}
		if c == nil {
			continue
		}
		if cur := byHour[h]; cur != nil {
			cur.Merge(c)
		} else {
			byHour[h] = c
		}
	}
	out := make([]Row, 0, len(byHour))
	for h, c := range byHour {
		out = append(out, Row{Hour: h, Counters: c})
	}
	return out, nil
}

func (s *LocalStore) segPath(h int64) string {
	return filepath.Join(s.dir, "seg-"+strconv.FormatInt(h, 10)+".seg")
}

func segIndexKey(sc Scope, subject string) string { return sc.Code() + ":" + subject }

func readSegHeader(path string) (*segHeader, *os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	br := bufio.NewReader(f)
	line, err := br.ReadBytes('\n')
	if err != nil {
		_ = f.Close()
		return nil, nil, fmt.Errorf("%w: header: %w", ErrCorrupt, err)
	}
	var h segHeader
	if err := json.Unmarshal(line, &h); err != nil || h.Version != 1 {
		_ = f.Close()
		return nil, nil, fmt.Errorf("%w: header: version %d: %v", ErrCorrupt, h.Version, err)
	}
	if _, err := f.Seek(int64(len(line)), io.SeekStart); err != nil {
		_ = f.Close()
		return nil, nil, err
	}
	return &h, f, nil
}

// segIndex is a segment's parsed header, cached per hour so a query does
// not decode the index of every hour again.
type segIndex struct {
	gen   uint64
	base  int64 // offset of the first blob (header length)
	size  int64 // file size
	index map[string][3]int64
}

// maxCachedIndexEntries bounds the segment index cache (about 100 bytes
// an entry).
const maxCachedIndexEntries = 500_000

func loadSegIndex(path string) (*segIndex, error) {
	h, f, err := readSegHeader(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	base, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return &segIndex{gen: h.Gen, base: base, size: st.Size(), index: h.Index}, nil
}

// segmentIndex returns the index of hour h's segment (generation gen),
// from the cache when it is current.
func (s *LocalStore) segmentIndex(h int64, gen uint64) (*segIndex, error) {
	s.idxMu.Lock()
	c := s.idx[h]
	s.idxMu.Unlock()
	if c != nil && c.gen == gen {
		return c, nil
	}
	c, err := loadSegIndex(s.segPath(h))
	if err != nil {
		return nil, err
	}
	s.cacheIndex(h, c)
	return c, nil
}

func (s *LocalStore) cacheIndex(h int64, c *segIndex) {
	s.idxMu.Lock()
	defer s.idxMu.Unlock()
	if old := s.idx[h]; old != nil {
		s.idxEntries -= len(old.index)
		delete(s.idx, h)
	}
	for k, v := range s.idx { // evict arbitrary hours until it fits
		if s.idxEntries+len(c.index) <= maxCachedIndexEntries {
			break
		}
		s.idxEntries -= len(v.index)
		delete(s.idx, k)
	}
	if len(c.index) <= maxCachedIndexEntries {
		s.idx[h] = c
		s.idxEntries += len(c.index)
	}
}

func (s *LocalStore) uncacheIndex(h int64) {
	s.idxMu.Lock()
	defer s.idxMu.Unlock()
	if old := s.idx[h]; old != nil {
		s.idxEntries -= len(old.index)
		delete(s.idx, h)
	}
}

// readSegRow reads one subject's row of hour h's segment; nil when absent.
func (s *LocalStore) readSegRow(h int64, gen uint64, sc Scope, subject string) (*Counters, error) {
	path := s.segPath(h)
	ix, err := s.segmentIndex(h, gen)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reports: local store: %s: %w", filepath.Base(path), err)
	}
	e, ok := ix.index[segIndexKey(sc, subject)]
	if !ok {
		return nil, nil
	}
	if e[0] < 0 || e[1] < 0 || e[0] > ix.size || e[1] > ix.size-ix.base-e[0] {
		return nil, fmt.Errorf("reports: local store: %s: %w: index entry out of range", filepath.Base(path), ErrCorrupt)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reports: local store: %w", err)
	}
	defer f.Close()
	blob := make([]byte, e[1])
	if _, err := f.ReadAt(blob, ix.base+e[0]); err != nil {
		return nil, fmt.Errorf("reports: local store: %s: %w: %w", filepath.Base(path), ErrCorrupt, err)
	}
	if int64(crc32.Checksum(blob, crcTable)) != e[2] {
		return nil, fmt.Errorf("reports: local store: %s: %w: checksum", filepath.Base(path), ErrCorrupt)
	}
	c := &Counters{}
	if err := json.Unmarshal(blob, c); err != nil {
		return nil, fmt.Errorf("reports: local store: %s: %w: %w", filepath.Base(path), ErrCorrupt, err)
	}
	return c, nil
}

// readSeg reads every row of a segment.
func readSeg(path string) (map[RowKey]*Counters, error) {
	h, f, err := readSegHeader(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	body, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	out := make(map[RowKey]*Counters, len(h.Index))
	for key, ix := range h.Index {
		code, subject, _ := strings.Cut(key, ":")
		sc, ok := ParseScope(code)
		if !ok || ix[0] < 0 || ix[1] < 0 || ix[0] > int64(len(body)) || ix[1] > int64(len(body))-ix[0] {
			return nil, fmt.Errorf("%w: index entry %q", ErrCorrupt, key)
		}
		blob := body[ix[0] : ix[0]+ix[1]]
		if int64(crc32.Checksum(blob, crcTable)) != ix[2] {
			return nil, fmt.Errorf("%w: checksum of %q", ErrCorrupt, key)
		}
		c := &Counters{}
		if err := json.Unmarshal(blob, c); err != nil {
			return nil, fmt.Errorf("%w: %q: %w", ErrCorrupt, key, err)
		}
		out[RowKey{sc, subject, h.Hour}] = c
	}
	return out, nil
}

func writeSeg(path string, gen uint64, hour int64, rows map[RowKey]*Counters) error {
	keys := make([]RowKey, 0, len(rows))
	for k := range rows {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Scope != keys[j].Scope {
			return keys[i].Scope < keys[j].Scope
		}
		return keys[i].Subject < keys[j].Subject
	})
	var body bytes.Buffer
	hdr := segHeader{Version: 1, Gen: gen, Hour: hour, Index: make(map[string][3]int64, len(rows))}
	for _, k := range keys {
		blob, err := json.Marshal(rows[k])
		if err != nil {
			return err
		}
		hdr.Index[segIndexKey(k.Scope, k.Subject)] = [3]int64{int64(body.Len()), int64(len(blob)), int64(crc32.Checksum(blob, crcTable))}
		body.Write(blob)
	}
	head, err := json.Marshal(&hdr)
	if err != nil {
		return err
	}
	head = append(head, '\n')
	return writeFileSync(path, head, body.Bytes())
}

// writeFileSync writes parts to path atomically: a temporary file, fsync,
// rename.
func writeFileSync(path string, parts ...[]byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	for _, p := range parts {
		if _, err := f.Write(p); err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
			return err
		}
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		_ = os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Compact seals every hour before the current one into its segment file,
// drops rows and segments older than the retention, writes a new
// checkpoint and starts a new write-ahead log. The pipeline calls it
// periodically and on Close.
func (s *LocalStore) Compact(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return s.compactLocked(ctx)
}

func (s *LocalStore) compactLocked(ctx context.Context) error {
	now := s.now()
	current := HourOf(now)
	oldest := HourOf(now.Add(-s.retention))
	next := s.gen + 1

	sealed := make(map[int64]map[RowKey]*Counters)
	for k, c := range s.open {
		if k.Hour < oldest {
			continue
		}
		if k.Hour < current {
			m := sealed[k.Hour]
			if m == nil {
				m = make(map[RowKey]*Counters)
				sealed[k.Hour] = m
			}
			m[k] = c
		}
	}
	for h, rows := range sealed {
		if err := ctx.Err(); err != nil {
			return err
		}
		path := s.segPath(h)
		old, err := readSeg(path)
		if err != nil {
			return fmt.Errorf("reports: local store: compact %s: %w", filepath.Base(path), err)
		}
		for k, c := range old {
			if cur := rows[k]; cur != nil {
				c.MergeCapped(cur, s.maxDomains)
			}
			rows[k] = c
		}
		if err := writeSeg(path, next, h, rows); err != nil {
			return fmt.Errorf("reports: local store: compact %s: %w", filepath.Base(path), err)
		}
		// The segment now holds these rows: never merge them twice, even
		// when a later step of this checkpoint fails.
		s.segs[h] = next
		for k := range sealed[h] {
			delete(s.open, k)
		}
	}
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("reports: local store: compact: %w", err)
	}
	keep := make(map[RowKey]*Counters)
	for k, c := range s.open {
		if k.Hour >= current {
			keep[k] = c
		}
	}
	st := stateDoc{Gen: next, Seqs: s.seqs, Rows: rowsOf(keep)}
	b, err := json.Marshal(&st)
	if err != nil {
		return fmt.Errorf("reports: local store: compact: %w", err)
	}
	if err := writeFileSync(filepath.Join(s.dir, stateFile), b); err != nil {
		return fmt.Errorf("reports: local store: compact: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("reports: local store: compact: %w", err)
	}
	// The checkpoint is durable: switch to the new generation's WAL.
	oldWAL := s.wal
	oldName := s.walName()
	s.gen = next
	f, err := os.OpenFile(filepath.Join(s.dir, s.walName()), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("reports: local store: compact: new wal: %w", err)
	}
	s.wal, s.walLen = f, 0
	_ = oldWAL.Close()
	_ = os.Remove(filepath.Join(s.dir, oldName))
	s.open = keep
	for h := range s.segs {
		if h < oldest {
			if err := os.Remove(s.segPath(h)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("reports: local store: expire: %w", err)
			}
			delete(s.segs, h)
			s.uncacheIndex(h)
		}
	}
	return nil
}

// Close checkpoints and closes the store.
func (s *LocalStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	err := s.compactLocked(context.Background())
	s.closed = true
	if cerr := s.wal.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("reports: local store: %w", cerr)
	}
	return err
}
