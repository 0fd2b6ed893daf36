package reports

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cordon-gw/cordon/policies"
)

func TestAccessLogRotatesBySizeAndAge(t *testing.T) {
	dir := t.TempDir()
	clock := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	l, err := openAccessLog(AccessLogConfig{Path: filepath.Join(dir, "access.log"), MaxAge: time.Hour, MaxFiles: 3}, func() time.Time { return clock })
	if err != nil {
		t.Fatal(err)
	}
	l.maxSize = 1000 // bytes, for the test
	line := []byte(`{"time":"2026-11-23T10:00:00Z","host":"` + strings.Repeat("x", 80) + `"}` + "\n")
	rotations := 0
	for i := range 60 { // 60 × 119 bytes: a rotation about every 8 lines
		clock = clock.Add(time.Millisecond)
		_, rotated, err := l.Write(line)
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if rotated {
			rotations++
		}
	}
	if rotations != 7 {
		t.Errorf("size rotations = %d, want 7", rotations)
	}
	rot, _ := l.rotated()
	if len(rot) != 3 {
		t.Errorf("kept %d rotated files, want 3: %v", len(rot), rot)
	}
	// Age: a line after MaxAge rotates even though the file is small.
	clock = clock.Add(time.Hour)
	if _, rotated, err := l.Write(line); err != nil || !rotated {
		t.Errorf("write after max_age: rotated=%v err=%v, want a rotation", rotated, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rot, _ = l.rotated()
	for _, f := range append(rot, l.path) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(b)%len(line) != 0 {
			t.Errorf("%s holds a partial line (%d bytes)", f, len(b))
		}
	}
}

func TestAccessLogLines(t *testing.T) {
	cfg := testConfig(t)
	st := openLocal(t, cfg.Dir)
	defer st.Close()
	p := newTestPipeline(t, cfg, st, nil)
	evs := genEvents(300, time.Now(), 10)
	record(p, evs)
	flush(t, p)
	f, err := os.Open(cfg.AccessLog.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		var ev policies.AccessEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %d: %v", n+1, err)
		}
		if ev.ID != evs[n].ID || ev.Host != evs[n].Host || ev.Proto != evs[n].Proto || ev.ClientIP != evs[n].ClientIP {
			t.Errorf("line %d = %+v, want %+v", n+1, ev, evs[n])
		}
		n++
	}
	if n != len(evs) {
		t.Errorf("%d lines, want %d", n, len(evs))
	}
}

func TestAccessLogKeepsWritingWhenRotationFails(t *testing.T) {
	dir := t.TempDir()
	clock := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	l, err := openAccessLog(AccessLogConfig{Path: filepath.Join(dir, "access.log"), MaxFiles: 3}, func() time.Time { return clock })
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.maxSize = 100
	line := []byte(strings.Repeat("x", 79) + "\n")
	if _, _, err := l.Write(line); err != nil {
		t.Fatal(err)
	}
	// A directory where the rotated file must go makes the rename fail.
	clock = clock.Add(time.Second)
	stamp := clock.UTC().Format("20060102T150405.000000000")
	if err := os.Mkdir(filepath.Join(dir, "access-"+stamp+".log"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "access-"+stamp+".log", "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, rotated, err := l.Write(line); err == nil || rotated {
		t.Fatalf("Write with a failing rotation: rotated=%v err=%v, want an error", rotated, err)
	}
	if _, _, err := l.Write(line); err != nil {
		t.Fatalf("next Write (rotation waits): %v", err)
	}
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(l.path)
	if len(b) != 3*len(line) {
		t.Errorf("live file has %d bytes, want all 3 lines (%d)", len(b), 3*len(line))
	}
}
