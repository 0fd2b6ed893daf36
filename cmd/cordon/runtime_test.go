package main

import (
	"bytes"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"testing"
)

func TestCgroupMemoryLimit(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name  string
		files []string
		want  int64
	}{
		{"v2 limit", []string{write("v2", "536870912\n")}, 536870912},
		{"v2 max", []string{write("v2max", "max\n")}, 0},
		{"v1 unlimited", []string{filepath.Join(dir, "absent"), write("v1", "9223372036854771712\n")}, 0},
		{"v1 limit after a missing v2", []string{filepath.Join(dir, "absent"), write("v1l", "1073741824")}, 1073741824},
		{"garbage", []string{write("bad", "lots")}, 0},
		{"none", []string{filepath.Join(dir, "absent")}, 0},
	} {
		if got := cgroupMemoryLimit(tc.files); got != tc.want {
			t.Errorf("cgroupMemoryLimit(%s) = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestSampledProfile: the mutex profile is sampled only while it is
// asked for, and comes back as a pprof profile.
func TestSampledProfile(t *testing.T) {
	rec := httptest.NewRecorder()
	sampledProfile("mutex")(rec, httptest.NewRequest("GET", "/debug/pprof/mutex?seconds=1", nil))
	if rec.Code != 200 || rec.Body.Len() == 0 {
		t.Fatalf("mutex profile = %d, %d bytes", rec.Code, rec.Body.Len())
	}
	if !bytes.HasPrefix(rec.Body.Bytes(), []byte{0x1f, 0x8b}) {
		t.Errorf("mutex profile is not a gzipped pprof profile: % x", rec.Body.Bytes()[:min(8, rec.Body.Len())])
	}
	if f := runtime.SetMutexProfileFraction(-1); f != 0 {
		t.Errorf("mutex sampling left at %d after the request", f)
	}
}

func TestGCPercentDefault(t *testing.T) {
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)

	t.Setenv("GOGC", "")
	if got := applyGCPercent(); got != defaultGOGC {
		t.Errorf("applyGCPercent with GOGC unset = %d, want %d", got, defaultGOGC)
	}
	if now := debug.SetGCPercent(100); now != defaultGOGC {
		t.Errorf("GC percent after applyGCPercent = %d, want %d", now, defaultGOGC)
	}
	t.Setenv("GOGC", "200")
	if got := applyGCPercent(); got != 0 {
		t.Errorf("applyGCPercent with GOGC=200 = %d, want 0 (left alone)", got)
	}
	if now := debug.SetGCPercent(100); now != 100 {
		t.Errorf("applyGCPercent changed the GC percent to %d with GOGC set", now)
	}
}
