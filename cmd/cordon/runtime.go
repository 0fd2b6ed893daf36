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
// GOGC stays at Go's 100: with the 1.6 M-entry bench index the live heap is
// about 70 MB of mostly pointer-free tables, the proxy allocates about
// 0.4 KB per request, and at 20k requests/s the collector runs every ~10 s
// for 2-5 ms of CPU (measured with GODEBUG=gctrace=1); a higher GOGC only
// buys memory (GOGC=400: RSS 383 MB against 199 MB) for nothing visible in
// the p99.
//
// GOMEMLIMIT, when not set, becomes 90 % of the cgroup memory limit (the
// container's), so a heap that would double across a feed rebuild collects
// earlier instead of hitting the OOM killer; outside a memory-limited
// cgroup there is no limit. An explicit GOMEMLIMIT or GOGC always wins.

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
