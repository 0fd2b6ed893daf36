package categorizer

import (
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The cold-hit benchmark: Lookup of hosts under listed names, each host
// looked up once per pass over a set of coldHosts distinct hosts, so the
// table entries a lookup needs are not in any CPU cache (the set and the
// table are larger than the caches, and the order is random). It runs on
// the 2 M-name benchmark corpus (benchCorpus: the bundled lists extended by
// the seeded name generator), so it reads data in the repository only.

// coldHosts is how many distinct hosts a pass looks up (≥ 1 M).
const coldHosts = 1 << 20

// coldSeed fixes the lookup order.
const coldSeed = 12

var cold struct {
	once  sync.Once
	ix    *Index
	hosts []string // coldHosts 5-label hosts, each under a different listed name
}

func coldBench(b *testing.B) (*Index, []string) {
	b.Helper()
	ix, c := bench2M(b)
	cold.once.Do(func() {
		names := c.names
		cold.ix = ix
		// Hosts in random order, their bytes laid out in that order (a
		// real lookup reads its host from a packet already in cache; only
		// the index should miss).
		r := rand.New(rand.NewPCG(coldSeed, 2))
		order := r.Perm(len(names))[:coldHosts]
		var arena strings.Builder
		ends := make([]int, 0, coldHosts)
		for _, i := range order {
			n := names[i]
			for labels := strings.Count(n, ".") + 1; labels < 5; labels++ {
				arena.WriteString("x")
				arena.WriteString(strconv.Itoa(labels))
				arena.WriteString(".")
			}
			arena.WriteString(n)
			ends = append(ends, arena.Len())
		}
		all := arena.String()
		cold.hosts = make([]string, len(ends))
		start := 0
		for i, end := range ends {
			cold.hosts[i] = all[start:end]
			start = end
		}
	})
	if cold.ix == nil {
		b.Fatal("cold-hit corpus did not build")
	}
	return cold.ix, cold.hosts
}

// BenchmarkLookupCold measures Lookup of hosts that are not in any CPU
// cache: 2M/hit5-1M cycles through 1,048,576 distinct 5-label hosts
// under as many listed names, in random order, against the 2,000,000-entry
// benchmark index (bench2M); the -flushed variants additionally
// evict the CPU caches (write a buffer of twice the last-level cache)
// every coldBatch lookups, outside the timed part, so every batch starts
// from DRAM whatever the neighbours on the machine do. cpu-ns/op is the
// process CPU time of the timed part per lookup. memory-latency is the
// floor these are bound by on the machine at hand: one dependent random
// read in a buffer allocated like the domain table (same size, huge-page
// advice), a pointer chase through its cache lines.
func BenchmarkLookupCold(b *testing.B) {
	ix, hosts := coldBench(b)
	for _, h := range hosts[:64] {
		if ix.Lookup(h, "", netip.Addr{}).Categories.Empty() {
			b.Fatalf("Lookup(%q) found nothing, want a hit", h)
		}
	}
	lookup := func(host string) { ix.Lookup(host, "", netip.Addr{}) }
	for _, bc := range []struct {
		name   string
		lookup func(string)
	}{{"2M/hit5-1M", lookup}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			cpu := cpuTime()
			for b.Loop() {
				bc.lookup(hosts[i])
				if i++; i == len(hosts) {
					i = 0
				}
			}
			reportCPU(b, cpu)
		})
		b.Run(bc.name+"-flushed", func(b *testing.B) {
			flush := make([]byte, 2*lastLevelCache())
			b.ReportAllocs()
			i, n := 0, 0
			var cpu time.Duration
			start := cpuTime()
			for b.Loop() {
				if n == coldBatch {
					cpu += cpuTime() - start
					b.StopTimer()
					evict(flush)
					b.StartTimer()
					n = 0
					start = cpuTime()
				}
				bc.lookup(hosts[i])
				if i++; i == len(hosts) {
					i = 0
				}
				n++
			}
			cpu += cpuTime() - start
			b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
		})
	}
	b.Run("memory-latency", func(b *testing.B) {
		t := newTable(ix.domains.n) // the domain table's size and page advice
		lines := len(t.slots) / 4   // four 16-byte slots per 64-byte line
		perm := rand.New(rand.NewPCG(coldSeed, 3)).Perm(lines)
		for i, l := range perm {
			t.slots[l*4].val = uint32(perm[(i+1)%lines] * 4)
		}
		p := uint32(perm[0] * 4)
		cpu := cpuTime()
		for b.Loop() {
			p = t.slots[p].val
		}
		reportCPU(b, cpu)
		if p == 1 {
			b.Log(p) // keeps the loads
		}
	})
}

// coldBatch is how many lookups run between two cache evictions: few
// enough that they touch a small part of the table.
const coldBatch = 16384

// evict writes one byte per cache line of buf, pushing everything else
// out of the caches.
func evict(buf []byte) {
	for i := 0; i < len(buf); i += 64 {
		buf[i]++
	}
}

// lastLevelCache is the size of the largest CPU cache Linux reports (64
// MiB when unknown), at most 1 GiB.
func lastLevelCache() int {
	size := 64 << 20
	for i := 0; i < 8; i++ {
		b, err := os.ReadFile("/sys/devices/system/cpu/cpu0/cache/index" + strconv.Itoa(i) + "/size")
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(b))
		mult := 1
		switch {
		case strings.HasSuffix(s, "K"):
			mult, s = 1<<10, strings.TrimSuffix(s, "K")
		case strings.HasSuffix(s, "M"):
			mult, s = 1<<20, strings.TrimSuffix(s, "M")
		}
		if v, err := strconv.Atoi(s); err == nil && v*mult > size {
			size = v * mult
		}
	}
	return min(size, 1<<30)
}
