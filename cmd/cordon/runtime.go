package main

import (
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// Garbage collector defaults of `cordon serve`.
//
// GOGC defaults to 25 instead of Go's 100. The live heap is dominated by
// the feed index (64 MB of pointer-free tables at the 1.6 M-entry bench
// index, out of ~70 MB live), which the collector does not scan but which
// sets its heap goal: at GOGC=100 the heap grows to twice the index under
// load, and RSS with it. Measured with the bench harness (1 KiB GETs at 50
// connections, 10 s, then idle): RSS after load 172 MB at GOGC=100, 143 MB
// at 50, 126 MB at 25, with no CPU per request difference above the noise
// (the proxy allocates ~0.4 KB per request, so at 30k requests/s the
// collector runs about every 1.5 s, each cycle marking the few MB of
// pointerful heap).
//
// GOMEMLIMIT, when not set, becomes 90 % of the cgroup memory limit (the
// container's), so a heap that would double across a feed rebuild collects
// earlier instead of hitting the OOM killer; outside a memory-limited
// cgroup there is no limit. An explicit GOMEMLIMIT or GOGC always wins.

// defaultGOGC is the collector's target when GOGC is not set.
const defaultGOGC = 25

// applyGCPercent sets defaultGOGC unless GOGC is set, and returns the
// percentage it set (0: left alone).
func applyGCPercent() int {
	if os.Getenv("GOGC") != "" {
		return 0
	}
	debug.SetGCPercent(defaultGOGC)
	return defaultGOGC
}

// cgroupMemoryFiles are where cgroup v2 and v1 publish the memory limit.
var cgroupMemoryFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// applyMemoryLimit sets the soft memory limit from the cgroup when
// GOMEMLIMIT is unset, and returns the limit it set (0: none).
func applyMemoryLimit(log *slog.Logger) int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0
	}
	limit := cgroupMemoryLimit(cgroupMemoryFiles)
	if limit <= 0 {
		return 0
	}
	soft := limit / 10 * 9
	debug.SetMemoryLimit(soft)
	log.Info("memory limit from the cgroup", "cgroup_bytes", limit, "gomemlimit_bytes", soft)
	return soft
}

// cgroupMemoryLimit reads the first limit found; 0 when there is none
// ("max", a v1 "unlimited" near 2^63, or no cgroup file).
func cgroupMemoryLimit(files []string) int64 {
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return 0
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 || n >= 1<<62 {
			return 0
		}
		return n
	}
	return 0
}

// releaseBuildMemory returns to the system the memory a feed build or a
// snapshot decode used and the index it replaced: a build of the 1.6 M-entry
// bench index peaks near 330 MB, of which the runtime would otherwise hand
// back only slowly (RSS still 200 MB minutes later, against a live heap of
// 65 MB). One forced collection per index swap, i.e. per feed update.
func releaseBuildMemory() { debug.FreeOSMemory() }
