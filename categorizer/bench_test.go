package categorizer

import (
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cordon-gw/cordon/internal/testutil"
)

// benchCorpus is a set of real domain names from the shared data,
// replicated with extra leading labels until it holds n distinct names.
type benchCorpus struct {
	names []string // listed (normalized) names
	hits  []string // 5-label hosts under listed names
	miss  []string // 5-label hosts under names that are not listed
}

var (
	corpusOnce sync.Once
	corpus     benchCorpus
)

const benchEntries = 2_000_000

// benchHosts is how many different hosts a lookup benchmark cycles
// through: more than the caches hold, so each lookup pays the memory
// accesses real traffic would.
const benchHosts = 16384

func loadBenchCorpus(b testing.TB) *benchCorpus {
	corpusOnce.Do(func() {
		seen := make(map[string]struct{}, benchEntries)
		add := func(e Entry) {
			if e.Kind == KindDomain && !e.Wildcard && !e.Exception {
				seen[e.Host] = struct{}{}
			}
		}
		for _, f := range []struct {
			format Format
			rel    string
		}{
			{FormatDomains, "blocklistproject/alt-version/phishing-nl.txt"},
			{FormatHosts, "stevenblack/hosts"},
			{FormatAdblock, "adguard/Filters/filter.txt"},
			{FormatDomains, "ut1/older-commits/2025-07-13_c638798/blacklists/malware/domains"},
			{FormatDomains, "ut1/older-commits/2026-06-08_10d4b89/blacklists/phishing/domains"},
			{FormatHosts, "stevenblack/data/KADhosts/hosts"},
		} {
			parseFile(b, f.format, f.rel, add)
		}
		if _, err := ParseUT1Dir(testutil.SharedData(b, "ut1/blacklists"), nil, add); err != nil {
			b.Fatal(err)
		}
		base := make([]string, 0, len(seen))
		for n := range seen {
			base = append(base, n)
		}
		names := append([]string(nil), base...)
		prefixes := []string{"www", "cdn", "m", "api", "static", "img", "mail", "app", "login", "secure", "dl", "news"}
		for r := 0; len(names) < benchEntries; r++ {
			p := prefixes[r%len(prefixes)]
			if r >= len(prefixes) {
				p = fmt.Sprintf("%s%d", p, r/len(prefixes))
			}
			for _, n := range base {
				if len(names) >= benchEntries {
					break
				}
				name := p + "." + n
				if _, dup := seen[name]; dup {
					continue
				}
				seen[name] = struct{}{}
				names = append(names, name)
			}
		}
		corpus.names = names
		pad := func(n string) string {
			for strings.Count(n, ".") < 4 {
				n = "x" + fmt.Sprint(strings.Count(n, ".")) + "." + n
			}
			return n
		}
		for i := 0; i < benchHosts; i++ {
			corpus.hits = append(corpus.hits, pad(base[(i*7919)%len(base)]))
		}
		umb, err := os.ReadFile(testutil.SharedData(b, "umbrella/umbrella-top-100k.txt"))
		if err != nil {
			b.Fatal(err)
		}
		for _, n := range strings.Fields(string(umb)) {
			if len(corpus.miss) == 2*benchHosts {
				break
			}
			if _, listed := seen[n]; !listed && strings.Count(n, ".") <= 4 {
				corpus.miss = append(corpus.miss, pad(n))
			}
		}
	})
	return &corpus
}

func buildBench(b testing.TB, names []string) *Index {
	bl := NewBuilder()
	f, err := bl.AddFeed("bench", []string{"malware"}, true)
	if err != nil {
		b.Fatal(err)
	}
	bl.Grow(len(names))
	for _, n := range names {
		bl.addDomain(f, n, bl.feeds[f].cats, false, false)
		bl.feeds[f].entries++
	}
	ix, err := bl.Build(1)
	if err != nil {
		b.Fatal(err)
	}
	return ix
}

var benchIndex struct {
	once sync.Once
	ix   *Index
}

func bench2M(b *testing.B) (*Index, *benchCorpus) {
	c := loadBenchCorpus(b)
	benchIndex.once.Do(func() {
		benchIndex.ix = buildBench(b, c.names)
		// Misses are popular names with no listed parent domain.
		miss := c.miss[:0]
		for _, h := range c.miss {
			if benchIndex.ix.Lookup(h, "", netip.Addr{}).Categories.Empty() {
				miss = append(miss, h)
			}
		}
		for i := 0; len(miss) < benchHosts; i++ {
			miss = append(miss, miss[i])
		}
		c.miss = miss
	})
	return benchIndex.ix, c
}

// BenchmarkLookup measures Lookup of 5-label hosts against 2M domains,
// cycling through benchHosts different hosts (hit5: under listed names;
// miss5: popular Umbrella names with no listed parent), and one host over
// and over (hit5-same: everything in cache).
func BenchmarkLookup(b *testing.B) {
	ix, c := bench2M(b)
	for _, bc := range []struct {
		name  string
		hosts []string
		hit   bool
	}{{"2M/hit5", c.hits, true}, {"2M/miss5", c.miss, false}} {
		b.Run(bc.name, func(b *testing.B) {
			for _, h := range bc.hosts[:16] {
				if got := !ix.Lookup(h, "", netip.Addr{}).Categories.Empty(); got != bc.hit {
					b.Fatalf("Lookup(%q) hit = %v, want %v", h, got, bc.hit)
				}
			}
			b.ReportAllocs()
			i := 0
			cpu := cpuTime()
			for b.Loop() {
				ix.Lookup(bc.hosts[i&(benchHosts-1)], "", netip.Addr{})
				i++
			}
			reportCPU(b, cpu)
		})
	}
	b.Run("2M/hit5-same", func(b *testing.B) {
		b.ReportAllocs()
		h := c.hits[0]
		cpu := cpuTime()
		for b.Loop() {
			ix.Lookup(h, "", netip.Addr{})
		}
		reportCPU(b, cpu)
	})
}

// cpuTime is the CPU time (user + system, all threads) the process used
// so far. On a shared machine wall time per op includes waiting for a
// CPU; CPU time per op does not.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

// BenchmarkBuild measures compiling 2M domain names (already parsed) into
// an Index, and reports the Index's heap size per entry.
func BenchmarkBuild(b *testing.B) {
	c := loadBenchCorpus(b)
	b.Run("2M", func(b *testing.B) {
		b.ReportAllocs()
		var ix *Index
		var before runtime.MemStats
		var cpu time.Duration
		for b.Loop() {
			ix = nil
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := cpuTime()
			ix = buildBench(b, c.names)
			cpu += cpuTime() - start
		}
		b.StopTimer()
		b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(ix.Len()), "bytes/entry")
		b.ReportMetric(float64(ix.Len()), "entries")
		runtime.KeepAlive(ix)
	})
}

// BenchmarkParseBuildReal measures parsing and compiling real feed files
// (about 1.1M lines) end to end.
func BenchmarkParseBuildReal(b *testing.B) {
	cpu := cpuTime()
	var ix *Index
	defer func() {
		b.ReportMetric((cpuTime()-cpu).Seconds()/float64(b.N), "cpu-s/op")
		b.ReportMetric(float64(ix.Len()), "entries")
	}()
	for b.Loop() {
		bl := NewBuilder()
		for _, f := range []struct {
			name   string
			format Format
			rel    string
		}{
			{"phishing", FormatDomains, "blocklistproject/alt-version/phishing-nl.txt"},
			{"stevenblack", FormatHosts, "stevenblack/hosts"},
			{"adguard", FormatAdblock, "adguard/Filters/filter.txt"},
			{"ipsum", FormatIPs, "ipsum/ipsum.txt"},
		} {
			id, err := bl.AddFeed(f.name, []string{f.name}, false)
			if err != nil {
				b.Fatal(err)
			}
			parseFile(b, f.format, f.rel, bl.Emit(id))
		}
		ut1 := testutil.SharedData(b, "ut1/blacklists")
		dirs, err := os.ReadDir(ut1)
		if err != nil {
			b.Fatal(err)
		}
		all := map[string]string{}
		for _, d := range dirs {
			if d.IsDir() {
				all[d.Name()] = "ut1"
			}
		}
		id, err := bl.AddFeed("ut1", nil, false)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ParseUT1Dir(ut1, all, bl.Emit(id)); err != nil {
			b.Fatal(err)
		}
		if ix, err = bl.Build(1); err != nil {
			b.Fatal(err)
		}
	}
}
