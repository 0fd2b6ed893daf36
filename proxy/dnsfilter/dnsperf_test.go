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
	"strconv"
	"strings"
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

	up := startDNS(t, wildcardZone{})

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

	var rows []string
	for _, srv := range []struct{ name, port string }{{"cordon", cport}, {"unbound", uport}} {
		miss := filepath.Join(dir, "miss-"+srv.name+".txt")
		writeLines(t, miss, 3_000_000, func(i int) string { return fmt.Sprintf("m%d.%s.miss.example A", i, srv.name) })
		runPerf(t, dnsperf, srv.port, hot, 2) // warm the hot set
		for _, load := range []struct{ name, file string }{{"cached_allowed", hot}, {"blocked", blocked}, {"cache_miss", miss}} {
			out := runPerf(t, dnsperf, srv.port, load.file, secs)
			rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s | %s |", srv.name, load.name,
				perfField(out, "Queries per second"), perfField(out, "Average Latency (s)"), perfField(out, "Queries lost")))
		}
	}
	t.Logf("dnsperf -l %d, GOMAXPROCS %d, %d CPUs\n| server | load | QPS | avg latency (s) | lost |\n|---|---|---|---|---|\n%s",
		secs, runtime.GOMAXPROCS(0), runtime.NumCPU(), strings.Join(rows, "\n"))
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
