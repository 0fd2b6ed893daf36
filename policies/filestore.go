package policies

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// FileStore keeps policy state in a directory:
//
//	versions/000000000042.json   one file per version (policy + metadata)
//	audit.jsonl                  the append-only audit log, one JSON entry per line
//	tokens/<id>.json             API token records (hashes only)
//	reviews/<id>.json            review requests
//	changes/<id>.json            change requests (comments, approvals)
//	stage.json                   the running staged rollout
//
// Every write is durable before it returns: data goes to a temporary file
// that is fsynced, then renamed (or hard-linked, for versions, so two
// writers cannot both create the same number) and the directory fsynced;
// audit lines are appended and fsynced. Versions are safe to share
// between processes; the audit sequence assumes one writing process per
// directory.
type FileStore struct {
	dir string
	// PollInterval is how often Watch looks for versions written by
	// another process. Zero means 500ms.
	PollInterval time.Duration

	mu      sync.Mutex // audit appends, sequence and index
	nextSeq int64
	// audit index: offset, length and sequence of every complete entry,
	// in file order, so pages are read with ReadAt instead of rescanning.
	auditIdx []auditPos
	auditEnd int64 // file size after the last complete line

	chMu     sync.Mutex   // change and stage compare-and-set
	stageGen atomic.Int64 // bumped by every PutStage
}

type auditPos struct {
	off int64
	n   int32
	seq int64
}

var _ Store = (*FileStore)(nil)

// OpenFileStore opens (creating it if needed) a store in dir.
func OpenFileStore(dir string) (*FileStore, error) {
	for _, d := range []string{dir, filepath.Join(dir, "versions"), filepath.Join(dir, "tokens"), filepath.Join(dir, "reviews")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("policies: file store: %w", err)
		}
	}
	s := &FileStore{dir: dir, nextSeq: 1}
	if err := s.indexAudit(); err != nil {
		return nil, err
	}
	return s, nil
}

// indexAudit scans the audit log once, recording where each complete
// entry is. A line cut by a crash (its write never succeeded) is skipped.
func (s *FileStore) indexAudit() error {
	f, err := os.Open(filepath.Join(s.dir, "audit.jsonl"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("policies: file store: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	var off int64
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			var e struct {
				Seq int64 `json:"seq"`
			}
			if json.Unmarshal(bytes.TrimSpace(line), &e) == nil && e.Seq > 0 {
				s.auditIdx = append(s.auditIdx, auditPos{off: off, n: int32(len(line)), seq: e.Seq})
				s.nextSeq = e.Seq + 1
			}
			off += int64(len(line))
			s.auditEnd = off
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("policies: file store: read audit: %w", err)
		}
	}
}

// Dir is the store's directory.
func (s *FileStore) Dir() string { return s.dir }

func (s *FileStore) versionPath(n int64) string {
	return filepath.Join(s.dir, "versions", fmt.Sprintf("%012d.json", n))
}

// versionNumbers lists the stored version numbers in ascending order.
func (s *FileStore) versionNumbers() ([]int64, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, "versions"))
	if err != nil {
		return nil, fmt.Errorf("policies: file store: %w", err)
	}
	var ns []int64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(name, ".") {
			continue
		}
		if n, err := strconv.ParseInt(name, 10, 64); err == nil && n > 0 {
			ns = append(ns, n)
		}
	}
	slices.Sort(ns)
	return ns, nil
}

// LatestVersion implements Store.
func (s *FileStore) LatestVersion(ctx context.Context) (*Version, error) {
	ns, err := s.versionNumbers()
	if err != nil {
		return nil, err
	}
	if len(ns) == 0 {
		return nil, ErrNotFound
	}
	return s.GetVersion(ctx, ns[len(ns)-1])
}

// GetVersion implements Store.
func (s *FileStore) GetVersion(_ context.Context, n int64) (*Version, error) {
	b, err := os.ReadFile(s.versionPath(n))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("policies: file store: %w", err)
	}
	var v Version
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("policies: file store: version %d: %w", n, err)
	}
	return &v, nil
}

// ListVersions implements Store.
func (s *FileStore) ListVersions(ctx context.Context) ([]VersionInfo, error) {
	ns, err := s.versionNumbers()
	if err != nil {
		return nil, err
	}
	out := make([]VersionInfo, 0, len(ns))
	for _, n := range ns {
		vi, err := s.versionInfo(n)
		if err != nil {
			return nil, err
		}
		out = append(out, vi)
	}
	return out, nil
}

// versionInfo reads a version file's metadata, which is written before
// the policy, without decoding the policy.
func (s *FileStore) versionInfo(n int64) (VersionInfo, error) {
	var vi VersionInfo
	f, err := os.Open(s.versionPath(n))
	if err != nil {
		return vi, fmt.Errorf("policies: file store: %w", err)
	}
	defer f.Close()
	dec := json.NewDecoder(bufio.NewReader(f))
	fields := map[string]json.RawMessage{}
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return vi, fmt.Errorf("policies: file store: version %d: not a JSON object", n)
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return vi, fmt.Errorf("policies: file store: version %d: %w", n, err)
		}
		key, _ := t.(string)
		if key == "policy" {
			break
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return vi, fmt.Errorf("policies: file store: version %d: %w", n, err)
		}
		fields[key] = raw
	}
	b, _ := json.Marshal(fields)
	if err := json.Unmarshal(b, &vi); err != nil {
		return vi, fmt.Errorf("policies: file store: version %d: %w", n, err)
	}
	return vi, nil
}

// PutVersion implements Store.
func (s *FileStore) PutVersion(ctx context.Context, v *Version, audit *AuditEntry) error {
	ns, err := s.versionNumbers()
	if err != nil {
		return err
	}
	var latest int64
	if len(ns) > 0 {
		latest = ns[len(ns)-1]
	}
	if v.Number != latest+1 {
		return ErrConflict
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("policies: file store: %w", err)
	}
	final := s.versionPath(v.Number)
	tmp, err := writeTemp(filepath.Dir(final), b, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, final); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return ErrConflict
		}
		return fmt.Errorf("policies: file store: %w", err)
	}
	if err := syncDir(filepath.Dir(final)); err != nil {
		return err
	}
	audit.Version = v.Number
	return s.AppendAudit(ctx, audit)
}

// AppendAudit implements Store.
func (s *FileStore) AppendAudit(_ context.Context, e *AuditEntry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e.Seq = s.nextSeq
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("policies: file store: %w", err)
	}
	path := filepath.Join(s.dir, "audit.jsonl")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("policies: file store: %w", err)
	}
	// A crash mid-line leaves a partial last line: start on a new one.
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("policies: file store: %w", err)
	}
	off := st.Size()
	if off > s.auditEnd {
		b = append([]byte{'\n'}, b...)
		off++
	}
	b = append(b, '\n')
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("policies: file store: append audit: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("policies: file store: sync audit: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("policies: file store: %w", err)
	}
	n := len(b)
	if b[0] == '\n' {
		n--
	}
	s.auditIdx = append(s.auditIdx, auditPos{off: off, n: int32(n), seq: e.Seq})
	s.auditEnd = off + int64(n)
	s.nextSeq++
	return nil
}

// AuditBefore implements Store, reading only the entries of the page.
func (s *FileStore) AuditBefore(_ context.Context, before int64, n int) ([]AuditEntry, error) {
	s.mu.Lock()
	idx := s.auditIdx
	s.mu.Unlock()
	// Entries are in ascending seq order: find the first with seq >= before.
	end := len(idx)
	if before > 0 {
		end = sort.Search(len(idx), func(i int) bool { return idx[i].seq >= before })
	}
	start := max(end-n, 0)
	if start >= end {
		return nil, nil
	}
	f, err := os.Open(filepath.Join(s.dir, "audit.jsonl"))
	if err != nil {
		return nil, fmt.Errorf("policies: file store: %w", err)
	}
	defer f.Close()
	first, last := idx[start], idx[end-1]
	buf := make([]byte, last.off+int64(last.n)-first.off)
	if _, err := f.ReadAt(buf, first.off); err != nil {
		return nil, fmt.Errorf("policies: file store: read audit: %w", err)
	}
	out := make([]AuditEntry, 0, end-start)
	for i := end - 1; i >= start; i-- {
		p := idx[i]
		var e AuditEntry
		if err := json.Unmarshal(buf[p.off-first.off:p.off-first.off+int64(p.n)], &e); err != nil {
			return nil, fmt.Errorf("policies: file store: audit entry %d: %w", p.seq, err)
		}
		out = append(out, e)
	}
	return out, nil
}

func safeID(id string) bool {
	return id != "" && len(id) <= 64 && !strings.ContainsAny(id, "/\\.") && validName(id)
}

func (s *FileStore) putJSON(sub, id string, v any) error {
	if !safeID(id) {
		return fmt.Errorf("policies: file store: %w: id %q", ErrBadRequest, id)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("policies: file store: %w", err)
	}
	return writeFileAtomic(filepath.Join(s.dir, sub, id+".json"), b, 0o600)
}

func (s *FileStore) getJSON(sub, id string, v any) error {
	if !safeID(id) {
		return ErrNotFound
	}
	b, err := os.ReadFile(filepath.Join(s.dir, sub, id+".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("policies: file store: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("policies: file store: %s/%s: %w", sub, id, err)
	}
	return nil
}

func listJSON[T any](dir string) ([]T, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("policies: file store: %w", err)
	}
	var out []T
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("policies: file store: %w", err)
		}
		var v T
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, fmt.Errorf("policies: file store: %s: %w", e.Name(), err)
		}
		out = append(out, v)
	}
	return out, nil
}

// PutToken implements Store.
func (s *FileStore) PutToken(_ context.Context, t TokenRecord) error {
	return s.putJSON("tokens", t.ID, t)
}

// GetToken implements Store.
func (s *FileStore) GetToken(_ context.Context, id string) (TokenRecord, error) {
	var t TokenRecord
	err := s.getJSON("tokens", id, &t)
	return t, err
}

// ListTokens implements Store.
func (s *FileStore) ListTokens(context.Context) ([]TokenRecord, error) {
	ts, err := listJSON[TokenRecord](filepath.Join(s.dir, "tokens"))
	slices.SortFunc(ts, func(a, b TokenRecord) int { return a.Created.Compare(b.Created) })
	return ts, err
}

// DeleteToken implements Store.
func (s *FileStore) DeleteToken(_ context.Context, id string) error {
	if !safeID(id) {
		return ErrNotFound
	}
	p := filepath.Join(s.dir, "tokens", id+".json")
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return ErrNotFound
		}
		return fmt.Errorf("policies: file store: %w", err)
	}
	return syncDir(filepath.Dir(p))
}

// PutReview implements Store.
func (s *FileStore) PutReview(_ context.Context, r Review) error {
	return s.putJSON("reviews", r.ID, r)
}

// GetReview implements Store.
func (s *FileStore) GetReview(_ context.Context, id string) (Review, error) {
	var r Review
	err := s.getJSON("reviews", id, &r)
	return r, err
}

// ListReviews implements Store.
func (s *FileStore) ListReviews(context.Context) ([]Review, error) {
	rs, err := listJSON[Review](filepath.Join(s.dir, "reviews"))
	slices.SortFunc(rs, func(a, b Review) int { return a.Time.Compare(b.Time) })
	return rs, err
}

// Watch implements Store by polling the versions directory.
func (s *FileStore) Watch(ctx context.Context, fn func(int64)) error {
	every := s.PollInterval
	if every <= 0 {
		every = 500 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var last int64 = -1
	for {
		if ns, err := s.versionNumbers(); err == nil && len(ns) > 0 && ns[len(ns)-1] != last {
			last = ns[len(ns)-1]
			fn(last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// writeTemp writes data to a new fsynced temporary file in dir.
func writeTemp(dir string, data []byte, perm os.FileMode) (string, error) {
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return "", fmt.Errorf("policies: write: %w", err)
	}
	name := f.Name()
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(name)
		return "", fmt.Errorf("policies: write %s: %w", name, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(name)
		return "", fmt.Errorf("policies: write %s: %w", name, err)
	}
	return name, nil
}

// writeFileAtomic replaces path with data durably: temp file, fsync,
// rename, fsync of the directory.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := writeTemp(filepath.Dir(path), data, perm)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("policies: write %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("policies: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("policies: sync %s: %w", dir, err)
	}
	return nil
}
