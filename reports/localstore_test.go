package reports

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cordon-gw/cordon/policies"
)

func batchAt(origin string, seq uint64, hours ...int64) *Batch {
	d := NewDelta()
	for _, h := range hours {
		for _, ev := range genEvents(10, HourTime(h).Add(59*time.Minute), uint64(h)+seq) {
			ev.Time = HourTime(h).Add(time.Minute)
			d.Add(ev)
		}
	}
	return &Batch{Origin: origin, Seq: seq, Rows: d.Rows, Events: d.Events}
}

func totalRequests(t *testing.T, s *LocalStore, from, to int64) int64 {
	t.Helper()
	rows, err := s.Rows(t.Context(), ScopeAll, "", from, to)
	if err != nil {
		t.Fatalf("Rows: %v", err)
	}
	var n int64
	for _, r := range rows {
		n += r.Counters.Requests
	}
	return n
}

func TestLocalStoreSkipsAppliedBatches(t *testing.T) {
	s := openLocal(t, t.TempDir())
	defer s.Close()
	h := HourOf(time.Now())
	b := batchAt("e1", 1, h)
	for range 3 {
		if err := s.Apply(t.Context(), b); err != nil {
			t.Fatal(err)
		}
	}
	if got := totalRequests(t, s, h, h); got != 10 {
		t.Errorf("requests after applying one batch 3 times = %d, want 10", got)
	}
}

func TestLocalStoreCrashDuringCheckpoint(t *testing.T) {
	dir := t.TempDir()
	s := openLocal(t, dir)
	h := HourOf(time.Now())
	if err := s.Apply(t.Context(), batchAt("e1", 1, h-3, h)); err != nil {
		t.Fatal(err)
	}
	// A checkpoint that wrote the segment of hour h-3 and then crashed
	// before its state file: the segment is newer than the state.
	sealed := make(map[RowKey]*Counters)
	for k, c := range s.open {
		if k.Hour == h-3 {
			sealed[k] = c
		}
	}
	if err := writeSeg(s.segPath(h-3), s.gen+1, h-3, sealed); err != nil {
		t.Fatal(err)
	}
	s.wal.Close() // crash

	s2 := openLocal(t, dir)
	if got := totalRequests(t, s2, h-3, h-3); got != 10 {
		t.Errorf("hour h-3 after recovery = %d requests, want 10 (not double)", got)
	}
	if got := totalRequests(t, s2, h, h); got != 10 {
		t.Errorf("hour h after recovery = %d requests, want 10", got)
	}
	// The next checkpoint completes and nothing is counted twice.
	if err := s2.Compact(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s2.Apply(t.Context(), batchAt("e1", 2, h-3)); err != nil { // late rows for a sealed hour
		t.Fatal(err)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	s3 := openLocal(t, dir)
	defer s3.Close()
	if got := totalRequests(t, s3, h-3, h); got != 30 {
		t.Errorf("after checkpoint, late rows and restart = %d requests, want 30", got)
	}
	if _, err := os.Stat(s3.segPath(h - 3)); err != nil {
		t.Errorf("segment of hour h-3: %v", err)
	}
}

func TestLocalStoreTornWAL(t *testing.T) {
	dir := t.TempDir()
	s := openLocal(t, dir)
	h := HourOf(time.Now())
	for seq := uint64(1); seq <= 2; seq++ {
		if err := s.Apply(t.Context(), batchAt("e1", seq, h)); err != nil {
			t.Fatal(err)
		}
	}
	s.wal.Close()
	walPath := filepath.Join(dir, "agg", "wal-0.log")
	full, err := os.ReadFile(walPath)
	if err != nil {
		t.Fatal(err)
	}
	// A crash in the middle of writing a third record.
	third := walRecordBytes(`{"o":"e1","q":3,"rows":[]}`)
	if err := os.WriteFile(walPath, append(full, third[:len(third)-3]...), 0o600); err != nil {
		t.Fatal(err)
	}
	s2 := openLocal(t, dir)
	if got := totalRequests(t, s2, h, h); got != 20 {
		t.Errorf("requests after torn tail = %d, want 20", got)
	}
	if err := s2.Apply(t.Context(), batchAt("e1", 3, h)); err != nil {
		t.Fatal(err)
	}
	s2.wal.Close()
	s3 := openLocal(t, dir)
	defer s3.Close()
	if got := totalRequests(t, s3, h, h); got != 30 {
		t.Errorf("requests after a write past the cut tail = %d, want 30", got)
	}
}

func TestLocalStoreRetention(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenLocal(Config{Dir: dir, Retention: 2 * time.Hour}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	s.now = func() time.Time { return now }
	h := HourOf(now)
	if err := s.Apply(t.Context(), batchAt("e1", 1, h-5, h-1, h)); err != nil {
		t.Fatal(err)
	}
	if got := totalRequests(t, s, h-10, h); got != 20 {
		t.Errorf("requests within 2h retention = %d, want 20 (hour h-5 expired)", got)
	}
	if err := s.Compact(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.segPath(h - 5)); !os.IsNotExist(err) {
		t.Errorf("segment of an expired hour exists: %v", err)
	}
	// Two hours later, hour h-1 has expired as well and its segment goes.
	now = now.Add(2 * time.Hour)
	if err := s.Compact(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.segPath(h - 1)); !os.IsNotExist(err) {
		t.Errorf("segment of hour h-1 after it expired: %v", err)
	}
	if got := totalRequests(t, s, h-10, h+2); got != 10 {
		t.Errorf("requests after expiry = %d, want 10", got)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := Defaults().Validate(); err != nil {
		t.Errorf("Defaults().Validate() = %v", err)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("Config{}.Validate() = %v", err)
	}
	bad := Config{QueueSize: -1, FlushInterval: time.Nanosecond, Retention: time.Minute, TopN: -2,
		Syslog:  SyslogConfig{Address: "nohost", Network: "sctp", Facility: 30},
		Privacy: PrivacyConfig{PseudonymKey: "short"}}
	err := bad.Validate()
	if err == nil {
		t.Fatal("Validate of a bad config = nil")
	}
	for _, field := range []string{"queue_size", "flush_interval", "retention", "top_n", "syslog.address", "syslog.network", "syslog.facility", "privacy.pseudonym_key"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("Validate error lacks %s: %v", field, err)
		}
	}
	if strings.Contains(err.Error(), "short") {
		t.Error("Validate error prints the secret")
	}
}

func TestLocalStoreDomainCap(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenLocal(Config{Dir: dir, MaxDomainsPerRow: 5}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	h := HourOf(time.Now())
	var want int64
	for seq := uint64(1); seq <= 4; seq++ {
		d := NewDelta()
		for i := range 10 {
			d.Add(&policies.AccessEvent{Time: HourTime(h).Add(time.Minute), User: "u",
				Host: fmt.Sprintf("h%d-%d.example", seq, i), Action: "block", RuleID: "r"})
			want++
		}
		if err := s.Apply(t.Context(), &Batch{Origin: "e", Seq: seq, Rows: d.Rows, Events: d.Events}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil { // seals nothing (current hour) but checkpoints
		t.Fatal(err)
	}
	s, err = OpenLocal(Config{Dir: dir, MaxDomainsPerRow: 5}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rows, err := s.Rows(t.Context(), ScopeUser, "u", h, h)
	if err != nil || len(rows) != 1 {
		t.Fatalf("Rows = %v, %v", rows, err)
	}
	c := rows[0].Counters
	var sum int64
	for _, n := range c.Domains {
		sum += n
	}
	if c.Requests != want || sum != want || len(c.Domains) != 6 || c.Domains[OtherName] != want-5 {
		t.Errorf("requests %d, domain sum %d, domains %v; want %d, 5 names and %s=%d", c.Requests, sum, c.Domains, want, OtherName, want-5)
	}
	if len(c.Attempts) != 6 || c.Attempts[OtherAttemptKey].Count != want-5 {
		t.Errorf("attempts = %v, want 5 and other = %d", c.Attempts, want-5)
	}
}
