package categorizer

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cordon-gw/cordon/internal/testutil"
)

// benchCorpus is the 2 M-name benchmark corpus: every domain name of the
// bundled default lists, extended by testutil.BenchNames (siblings drawn
// from a character model of the real names, then subdomains under
// real-looking leading labels) to exactly benchEntries distinct names.
type benchCorpus struct {
	names []string // listed (normalized) names
	hits  []string // 5-label hosts under listed real names
	miss  []string // 5-label hosts under popular names that are not listed
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

// bundledDomains returns the distinct domain names of every bundled list.
func bundledDomains(b testing.TB) []string {
	seen := map[string]struct{}{}
	for _, f := range DefaultFeeds() {
		r, err := openBundled(f.Source)
		if err != nil {
			b.Fatal(err)
		}
		_, err = Parse(f.Format, f.Source, r, func(e Entry) {
			if e.Kind == KindDomain && !e.Wildcard && !e.Exception {
				seen[e.Host] = struct{}{}
			}
		})
		r.Close()
		if err != nil {
			b.Fatal(err)
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func loadBenchCorpus(b testing.TB) *benchCorpus {
	corpusOnce.Do(func() {
		base := bundledDomains(b)
		corpus.names = testutil.BenchNames(base, benchEntries, 1)
		pad := func(n string) string {
			for strings.Count(n, ".") < 4 {
				n = "x" + fmt.Sprint(strings.Count(n, ".")) + "." + n
			}
			return n
		}
		// Spread over the sorted names; not from index 0, where sorting
		// puts the odd ones ("0---...").
		for i := 1; i <= benchHosts; i++ {
			corpus.hits = append(corpus.hits, pad(base[(i*7919)%len(base)]))
		}
		listed := make(map[string]struct{}, len(base))
		for _, n := range base {
			listed[n] = struct{}{}
		}
		// Popular names: the OpenDNS top 10,000 (bundled as the newly-seen
		// baseline), then OpenDNS's random sample of benign names.
		top, err := openBundled(bundledPrefix + popularFile)
		if err != nil {
			b.Fatal(err)
		}
		topText, err := io.ReadAll(top)
		top.Close()
		if err != nil {
			b.Fatal(err)
		}
		for _, text := range [][]byte{topText, testutil.ReadData(b, "opendns/opendns-random-domains.txt")} {
			for _, n := range strings.Fields(string(text)) {
				n = strings.TrimSuffix(strings.ToLower(n), ".")
				if len(corpus.miss) == 2*benchHosts {
					break
				}
				if _, ok := listed[n]; !ok && strings.Count(n, ".") <= 4 {
					corpus.miss = append(corpus.miss, pad(n))
				}
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
// miss5: popular OpenDNS names with no listed parent), and one host over
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
// end to end: every bundled default list (hosts, domains, URL and IP
// lists, about 640k entries), decompressed before the timer starts, so
// the figure is parsing and building only (BenchmarkBuildBundled includes
// the decompression).
func BenchmarkParseBuildReal(b *testing.B) {
	type list struct {
		f    FeedConfig
		text []byte
	}
	var lists []list
	for _, f := range DefaultFeeds() {
		r, err := openBundled(f.Source)
		if err != nil {
			b.Fatal(err)
		}
		text, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			b.Fatal(err)
		}
		lists = append(lists, list{f, text})
	}
	cpu := cpuTime()
	var ix *Index
	defer func() {
		b.ReportMetric((cpuTime()-cpu).Seconds()/float64(b.N), "cpu-s/op")
		b.ReportMetric(float64(ix.Len()), "entries")
	}()
	for b.Loop() {
		bl := NewBuilder()
		for _, l := range lists {
			id, err := bl.AddFeed(l.f.Name, l.f.Categories, l.f.Threat)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := Parse(l.f.Format, l.f.Name, bytes.NewReader(l.text), bl.Emit(id)); err != nil {
				b.Fatal(err)
			}
		}
		var err error
		if ix, err = bl.Build(1); err != nil {
			b.Fatal(err)
		}
	}
}
