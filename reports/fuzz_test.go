package reports

import (
	"encoding/binary"
	"hash/crc32"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var fuzzNow = time.Date(2026, 11, 23, 14, 30, 0, 0, time.UTC)

func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{
		"", "from=24h", "from=7d&to=now", "since=2w&top=50", "from=2026-11-20T10:00:00Z&to=2026-11-21T10:00:00+02:00",
		"from=2026-11-01", "from=90m&format=csv", "top=0", "top=1001", "from=1h&to=2h", "from=400d", "from=-5h",
		"from=9223372036854775807ns", "from=%00", "to=0001-01-01T00:00:00Z", "from=1e3h", "from=366d", "from=53w",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := ParseQuery(v, fuzzNow, DefaultTopN)
		if err != nil {
			return
		}
		if q.From.After(q.To) {
			t.Fatalf("ParseQuery(%q): from %v after to %v", raw, q.From, q.To)
		}
		if q.To.Sub(q.From) > MaxRange {
			t.Fatalf("ParseQuery(%q): range %v > %v", raw, q.To.Sub(q.From), MaxRange)
		}
		if q.Top < 1 || q.Top > MaxTop {
			t.Fatalf("ParseQuery(%q): top %d", raw, q.Top)
		}
		// The range is small enough to walk hour by hour.
		if n := HourOf(q.To) - HourOf(q.From); n < 0 || n > int64(MaxRange/time.Hour)+1 {
			t.Fatalf("ParseQuery(%q): %d hours", raw, n)
		}
		// Absolute times round-trip through their RFC 3339 form.
		for _, tm := range []time.Time{q.From, q.To} {
			back, err := ParseTime(tm.Format(time.RFC3339Nano), fuzzNow)
			if err != nil || !back.Equal(tm) {
				t.Fatalf("ParseTime(%q) = %v, %v; want %v", tm.Format(time.RFC3339Nano), back, err, tm)
			}
		}
	})
}

func FuzzParseSince(f *testing.F) {
	for _, s := range []string{"24h", "7d", "2w", "90m", "1h30m", "0", "366d", "367d", "53w", "d", "-1d", "+3d", "٣d", "1.5h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseSince(s)
		s = strings.TrimSpace(s)
		if err != nil {
			return
		}
		if d < 0 || d > MaxRange {
			t.Fatalf("ParseSince(%q) = %v out of range", s, d)
		}
		// Days and weeks agree with the same number of hours.
		if n := len(s); n > 1 && (s[n-1] == 'd' || s[n-1] == 'w') {
			v, err := strconv.Atoi(strings.TrimPrefix(s[:n-1], "+"))
			if err != nil {
				t.Fatalf("ParseSince(%q) accepted a non-integer count", s)
			}
			h := v * 24
			if s[n-1] == 'w' {
				h *= 7
			}
			if d != time.Duration(h)*time.Hour {
				t.Fatalf("ParseSince(%q) = %v, want %dh", s, d, h)
			}
		}
	})
}

// walRecordBytes frames payload as one WAL record.
func walRecordBytes(payload string) []byte {
	b := make([]byte, 8+len(payload))
	binary.LittleEndian.PutUint32(b, uint32(len(payload)))
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum([]byte(payload), crcTable))
	copy(b[8:], payload)
	return b
}

// FuzzLocalStoreFiles feeds arbitrary bytes as the write-ahead log and as
// a segment: opening and querying must not panic, and a WAL never makes
// the store fail to open (a bad tail is cut off).
func FuzzLocalStoreFiles(f *testing.F) {
	h := HourOf(fuzzNow)
	good := `{"o":"e1","q":1,"rows":[{"s":"u","k":"alice","h":` + strconv.FormatInt(h, 10) + `,"c":{"req":3,"d":{"a.example":3},"b":{"a.example\u001fnews\u001fr1":{"c":1,"t":5}}}}]}`
	f.Add(walRecordBytes(good), []byte("{\"v\":1,\"gen\":1,\"hour\":1,\"index\":{\"u:alice\":[0,9,0]}}\n{\"req\":1}"))
	f.Add(append(walRecordBytes(good), 1, 2, 3), []byte("garbage"))
	f.Add(walRecordBytes(`{"rows":[{"s":"x","h":1}]}`), []byte("{\"v\":1,\"index\":{\"u:alice\":[-5,9999,1]}}\n"))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}, []byte{})
	f.Fuzz(func(t *testing.T, wal, seg []byte) {
		dir := filepath.Join(t.TempDir(), "agg")
		if err := os.MkdirAll(dir, 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "wal-0.log"), wal, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "seg-"+strconv.FormatInt(h, 10)+".seg"), seg, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := OpenLocal(Config{Dir: filepath.Dir(dir)}, nil)
		if err != nil {
			return // a corrupt segment header is reported, not ignored
		}
		defer s.wal.Close() // not Close: its checkpoint fsyncs, too slow for fuzzing
		s.now = func() time.Time { return fuzzNow }
		_, _ = s.Rows(t.Context(), ScopeUser, "alice", h-2, h+2)
		_, _ = readSeg(s.segPath(h))
	})
}

// FuzzSpillFile feeds arbitrary bytes as a spill file: opening keeps the
// valid records, cuts the rest, and replay never panics.
func FuzzSpillFile(f *testing.F) {
	h := strconv.FormatInt(HourOf(fuzzNow), 10)
	good := `{"o":"e1-s","q":1,"n":3,"rows":[{"s":"a","k":"","h":` + h + `,"c":{"req":3}}]}`
	f.Add(walRecordBytes(good))
	f.Add(append(walRecordBytes(good), walRecordBytes(`{"rows":[{"s":"?"}]}`)...))
	f.Add(append(walRecordBytes(good), 0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "spill.log")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := newSpill(path, 1<<20)
		if err != nil {
			return
		}
		defer s.Close()
		if s.Bytes() > int64(len(data)) {
			t.Fatalf("spill keeps %d bytes of %d", s.Bytes(), len(data))
		}
		for range 100 {
			b, n, err := s.Next()
			if err != nil || b == nil {
				break
			}
			if err := s.Done(b, n); err != nil {
				t.Fatal(err)
			}
		}
		if s.Pending() != 0 && s.Bytes() == 0 {
			t.Fatalf("pending %d events in an empty spill", s.Pending())
		}
	})
}
