package reports

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// accessLog is the JSON-lines access log: one event per line, rotated when
// the file reaches MaxSizeMB or is older than MaxAge. A rotated file is
// renamed to <base>-<UTC time>.<ext> beside the live file; only the newest
// MaxFiles rotated files are kept. Only the pipeline worker touches it.
type accessLog struct {
	path     string
	maxSize  int64
	maxAge   time.Duration
	maxFiles int
	now      func() time.Time

	f       *os.File
	w       *bufio.Writer
	size    int64
	opened  time.Time
	retryAt time.Time // after a failed rotation, no new attempt before
}

func openAccessLog(cfg AccessLogConfig, now func() time.Time) (*accessLog, error) {
	l := &accessLog{
		path: cfg.Path, maxSize: int64(cfg.MaxSizeMB) << 20, maxAge: cfg.MaxAge,
		maxFiles: cfg.MaxFiles, now: now,
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o750); err != nil {
		return nil, fmt.Errorf("reports: access log: %w", err)
	}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *accessLog) open() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("reports: access log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("reports: access log: %w", err)
	}
	l.f, l.size, l.opened = f, st.Size(), l.now()
	if l.size > 0 {
		l.opened = firstEventTime(l.path, l.opened)
	}
	if l.w == nil {
		l.w = bufio.NewWriterSize(f, 64<<10)
	} else {
		l.w.Reset(f)
	}
	return nil
}

// firstEventTime is the time of the first line of an existing log, so age
// rotation survives restarts; def when it cannot be read.
func firstEventTime(path string, def time.Time) time.Time {
	f, err := os.Open(path)
	if err != nil {
		return def
	}
	defer f.Close()
	line, err := bufio.NewReader(io.LimitReader(f, 64<<10)).ReadBytes('\n')
	if err != nil {
		return def
	}
	var v struct {
		Time time.Time `json:"time"`
	}
	if json.Unmarshal(line, &v) != nil || v.Time.IsZero() || v.Time.After(def) {
		return def
	}
	return v.Time
}

// Write appends one line (which must end in '\n'), rotating first when
// due. It returns the bytes written, whether it rotated, and an error when
// the write or the rotation failed (a failed rotation still writes the
// line into the live file).
func (l *accessLog) Write(line []byte) (int, bool, error) {
	rotated := false
	var rerr error
	full := l.maxSize > 0 && l.size+int64(len(line)) > l.maxSize
	if l.size > 0 && (full || l.maxAge > 0) && l.rotateDue(full) {
		if rerr = l.rotate(); rerr != nil {
			// Keep writing into the live file; try again in a minute.
			l.retryAt = l.now().Add(time.Minute)
		} else {
			rotated = true
		}
	}
	n, err := l.w.Write(line)
	l.size += int64(n)
	if err != nil {
		return n, rotated, fmt.Errorf("reports: access log: %w", err)
	}
	return n, rotated, rerr
}

// rotateDue reports whether the live file must rotate before the next
// line: it is full or too old, and no failed rotation is waiting for its
// retry. One clock read per line.
func (l *accessLog) rotateDue(full bool) bool {
	now := l.now()
	if now.Before(l.retryAt) {
		return false
	}
	return full || now.Sub(l.opened) >= l.maxAge
}

// Flush writes buffered lines to the file.
func (l *accessLog) Flush() error {
	if err := l.w.Flush(); err != nil {
		return fmt.Errorf("reports: access log: %w", err)
	}
	return nil
}

func (l *accessLog) rotate() error {
	if err := l.w.Flush(); err != nil {
		return fmt.Errorf("reports: access log: rotate: %w", err)
	}
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("reports: access log: rotate: %w", err)
	}
	ext := filepath.Ext(l.path)
	base := strings.TrimSuffix(l.path, ext)
	stamp := l.now().UTC().Format("20060102T150405.000000000")
	if err := os.Rename(l.path, base+"-"+stamp+ext); err != nil {
		// Keep logging into the live file rather than into a closed one.
		if oerr := l.open(); oerr != nil {
			return fmt.Errorf("reports: access log: rotate: %w (reopen: %w)", err, oerr)
		}
		return fmt.Errorf("reports: access log: rotate: %w", err)
	}
	if err := l.open(); err != nil {
		return err
	}
	l.opened = l.now()
	return l.prune()
}

// rotated lists rotated files, oldest first (the stamp sorts by time).
func (l *accessLog) rotated() ([]string, error) {
	ext := filepath.Ext(l.path)
	base := strings.TrimSuffix(l.path, ext)
	all, err := filepath.Glob(globEscape(base) + "-*" + globEscape(ext))
	if err != nil {
		return nil, err
	}
	sort.Strings(all)
	return all, nil
}

func (l *accessLog) prune() error {
	if l.maxFiles <= 0 {
		return nil
	}
	all, err := l.rotated()
	if err != nil {
		return fmt.Errorf("reports: access log: prune: %w", err)
	}
	for len(all) > l.maxFiles {
		if err := os.Remove(all[0]); err != nil {
			return fmt.Errorf("reports: access log: prune: %w", err)
		}
		all = all[1:]
	}
	return nil
}

func globEscape(s string) string {
	r := strings.NewReplacer(`*`, `\*`, `?`, `\?`, `[`, `\[`, `\`, `\\`)
	return r.Replace(s)
}

// Close flushes and closes the file.
func (l *accessLog) Close() error {
	ferr := l.w.Flush()
	cerr := l.f.Close()
	if ferr != nil {
		return fmt.Errorf("reports: access log: %w", ferr)
	}
	if cerr != nil {
		return fmt.Errorf("reports: access log: %w", cerr)
	}
	return nil
}
