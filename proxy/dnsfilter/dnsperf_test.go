package dnsfilter

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/cordon-gw/cordon/policies"
)

// TestDNSPerfCompare measures queries per second with dnsperf against the
// filter and against Unbound on this machine, both with the same 2M-name
// blocklist and the same local upstream. It runs only when
// CORDON_DNSPERF=1 (it takes minutes); CORDON_DNSPERF_SECONDS sets the
// length of each run (default 10). Results go to the test log; see
// BENCHMARKS.md for how they were recorded.
//
//	CORDON_DNSPERF=1 go test -run TestDNSPerfCompare -v -timeout 30m ./proxy/dnsfilter/
func TestDNSPerfCompare(t *testing.T) {
	if os.Getenv("CORDON_DNSPERF") != "1" {
		t.Skip("set CORDON_DNSPERF=1 to run the dnsperf comparison")
	}
	dnsperf := lookTool(t, "dnsperf")
	secs := 10
	if v, err := strconv.Atoi(os.Getenv("CORDON_DNSPERF_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	dir := t.TempDir()

	// The blocklist, for both servers.
	names := blocklistNames(t)
	zones := filepath.Join(dir, "blocklist.conf")
	blocked := filepath.Join(dir, "blocked.txt")
	writeLines(t, zones, len(names), func(i int) string { return "local-zone: \"" + names[i] + ".\" always_nxdomain" })
	writeLines(t, blocked, 10000, func(i int) string { return names[i*(len(names)/10000)] + " A" })
	ix := buildIndex(t, names)
	names = nil
	runtime.GC()

	// Query files: a hot set of allowed names (cached after the first
	// pass), and unique names for cache misses (more than a run sends).
	hot := filepath.Join(dir, "hot.txt")
	writeLines(t, hot, 1000, func(i int) string { return fmt.Sprintf("site%d.example.com A", i) })

	// The upstream runs in its own process (this test binary, see
	// TestDNSPerfUpstream), so its CPU time is not counted as Cordon's.
	up := "127.0.0.1:" + freeUDPTCPPort(t)
	helper := exec.Command(os.Args[0], "-test.run=^TestDNSPerfUpstream$")
	helper.Env = append(os.Environ(), "CORDON_DNSPERF_UPSTREAM="+up)
	helper.Stderr = os.Stderr
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = helper.Process.Kill(); _ = helper.Wait() }()
	waitAnswer(t, up, 30*time.Second)

	// Cordon.
	eng := policies.NewEngine(policies.EngineConfig{Logger: slog.New(slog.DiscardHandler)})
	if err := eng.SetIndex(ix); err != nil {
		t.Fatal(err)
	}
	setPolicy(t, eng, benchPolicy, 1)
	cport := freeUDPTCPPort(t)
	s, err := New(Config{Listen: "127.0.0.1:" + cport, Upstreams: []string{up}, RateLimit: RateLimitConfig{Disabled: true}},
		Deps{Engine: eng, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = s.ListenAndServe(ctx) }()
	waitAnswer(t, "127.0.0.1:"+cport, 10*time.Second)

	// Unbound, forwarding to the same upstream.
	uport := freeUDPTCPPort(t)
	conf := filepath.Join(dir, "unbound.conf")
	uh, upp, _ := net.SplitHostPort(up)
	writeFile(t, conf, fmt.Sprintf(`server:
  interface: 127.0.0.1
  port: %s
  do-ip6: no
  do-daemonize: no
  username: ""
  chroot: ""
  directory: %q
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  num-threads: %d
  so-reuseport: yes
  module-config: "iterator"
  qname-minimisation: no
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  include: %q
forward-zone:
  name: "."
  forward-addr: %s@%s
`, uport, dir, runtime.NumCPU(), zones, uh, upp))
	unbound, err := exec.LookPath("unbound")
	if err != nil {
		unbound = "/usr/sbin/unbound"
	}
	if _, err := os.Stat(unbound); err != nil {
		t.Skipf("unbound not installed: %v", err)
	}
	ub := exec.Command(unbound, "-d", "-c", conf)
	ub.Stderr = os.Stderr
	loadStart := time.Now()
	if err := ub.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ub.Process.Kill(); _ = ub.Wait() }()
	waitAnswer(t, "127.0.0.1:"+uport, 10*time.Minute)
	t.Logf("unbound loaded the blocklist in %s", time.Since(loadStart).Round(time.Second))

	runs := 3
	if v, err := strconv.Atoi(os.Getenv("CORDON_DNSPERF_RUNS")); err == nil && v > 0 {
		runs = v
	}
	servers := []struct {
		name, port string
		cpu        func() time.Duration
	}{{"cordon", cport, selfCPU}, {"unbound", uport, func() time.Duration { return procCPU(t, ub.Process.Pid) }}}
	misses := map[string]string{}
	for _, srv := range servers {
		misses[srv.name] = filepath.Join(dir, "miss-"+srv.name+".txt")
		runPerf(t, dnsperf, srv.port, hot, 2) // warm the hot set
	}
	// Runs alternate between the servers so a noisy neighbour on the
	// machine hits both alike; each cell is the median of its runs.
	var rows []string
	for _, load := range []string{"cached_allowed", "blocked", "cache_miss"} {
		qps := map[string][]float64{}
		cpu := map[string][]float64{}
		lat := map[string]string{}
		for r := range runs {
			for _, srv := range servers {
				file := hot
				switch load {
				case "blocked":
					file = blocked
				case "cache_miss":
					// fresh names every run: never asked before
					file = misses[srv.name]
					writeLines(t, file, 2_000_000, func(i int) string {
						return fmt.Sprintf("m%d-%d.%s.miss.example A", r, i, srv.name)
					})
				}
				c0 := srv.cpu()
				out := runPerf(t, dnsperf, srv.port, file, secs)
				used := srv.cpu() - c0
				v := perfNumber(perfField(out, "Queries per second"))
				n := perfNumber(perfField(out, "Queries completed"))
				qps[srv.name] = append(qps[srv.name], v)
				if n > 0 {
					cpu[srv.name] = append(cpu[srv.name], float64(used.Microseconds())/n)
				}
				lat[srv.name] = perfField(out, "Average Latency (s)")
				if lost := perfField(out, "Queries lost"); !strings.HasPrefix(lost, "0 ") {
					t.Logf("%s %s run %d lost queries: %s", srv.name, load, r, lost)
				}
			}
		}
		for _, srv := range servers {
			rows = append(rows, fmt.Sprintf("| %s | %s | %.0f | %s | %.1f | %s |", load, srv.name, median(qps[srv.name]),
				fmtRuns(qps[srv.name]), median(cpu[srv.name]), lat[srv.name]))
		}
	}
	t.Logf("dnsperf -l %d, %d runs each, GOMAXPROCS %d, %d CPUs\n| load | server | median QPS | runs | median server CPU µs/query | avg latency of last run (s) |\n|---|---|---|---|---|---|\n%s",
		secs, runs, runtime.GOMAXPROCS(0), runtime.NumCPU(), strings.Join(rows, "\n"))
}

// TestDNSPerfUpstream is the upstream resolver of TestDNSPerfCompare, run
// in a child process: it answers every A query on the address in
// CORDON_DNSPERF_UPSTREAM until killed (bounded to 30 minutes).
func TestDNSPerfUpstream(t *testing.T) {
	addr := os.Getenv("CORDON_DNSPERF_UPSTREAM")
	if addr == "" {
		t.Skip("helper process of TestDNSPerfCompare")
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = (&dns.Server{Listener: ln, Handler: wildcardZone{}}).ActivateAndServe() }()
	go func() { _ = (&dns.Server{PacketConn: pc, Handler: wildcardZone{}}).ActivateAndServe() }()
	time.Sleep(30 * time.Minute)
}

// selfCPU is the CPU time (user+system) this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is the CPU time (user+system) of process pid, from
// /proc/pid/stat (clock ticks of 10 ms).
func procCPU(t *testing.T, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

func perfNumber(s string) float64 {
	v, _ := strconv.ParseFloat(strings.Fields(s + " 0")[0], 64)
	return v
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func fmtRuns(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = strconv.FormatFloat(x, 'f', 0, 64)
	}
	return strings.Join(parts, ", ")
}

func runPerf(t *testing.T, dnsperf, port, file string, secs int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Duration(secs+30)*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, dnsperf, "-s", "127.0.0.1", "-p", port, "-d", file, "-l", strconv.Itoa(secs)).CombinedOutput()
	if err != nil {
		t.Fatalf("dnsperf: %v\n%s", err, out)
	}
	return string(out)
}

var perfLine = regexp.MustCompile(`(?m)^\s*([A-Za-z ()]+):\s+(.*)$`)

func perfField(out, name string) string {
	for _, m := range perfLine.FindAllStringSubmatch(out, -1) {
		if strings.TrimSpace(m[1]) == name {
			return strings.TrimSpace(m[2])
		}
	}
	return "?"
}

func writeLines(t *testing.T, path string, n int, line func(int) string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for i := range n {
		w.WriteString(line(i))
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// freeUDPTCPPort returns a port free on 127.0.0.1 for both UDP and TCP a
// moment ago.
func freeUDPTCPPort(t *testing.T) string {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		_, port, _ := net.SplitHostPort(pc.LocalAddr().String())
		pc.Close()
		if err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return ""
}

// waitAnswer polls addr until it answers a query, for at most d.
func waitAnswer(t *testing.T, addr string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	c := &dns.Client{Net: "udp", Timeout: 500 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion("ready.example.com.", dns.TypeA)
	for time.Now().Before(deadline) {
		if _, _, err := c.Exchange(m, addr); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s did not answer within %s", addr, d)
}
