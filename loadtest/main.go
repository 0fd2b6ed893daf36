package loadtest

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"
)

const mainUsage = `usage: cordon loadtest <command> [flags]

commands:
  http    drive HTTP/HTTPS requests through a forward proxy (or straight to an origin)
  dns     drive DNS queries at a server over UDP or TCP
  origin  run the local origin: HTTP, HTTPS and an authoritative DNS server

run "cordon loadtest <command> -h" for the flags of a command`

// Main runs `cordon loadtest <command> [flags]`: args[0] is http, dns or
// origin. Results go to stdout (a table, or JSON with --json); usage, the
// live progress line (when stderr is a terminal) and logs go to stderr.
// Command-line errors wrap ErrUsage; -h returns flag.ErrHelp after
// printing the usage. origin runs until ctx is done.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, mainUsage)
		return fmt.Errorf("%w: missing command (http, dns or origin)", ErrUsage)
	}
	switch args[0] {
	case "http":
		return mainHTTP(ctx, args[1:], stdout, stderr)
	case "dns":
		return mainDNS(ctx, args[1:], stdout, stderr)
	case "origin":
		return mainOrigin(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stderr, mainUsage)
		return flag.ErrHelp
	default:
		fmt.Fprintln(stderr, mainUsage)
		return fmt.Errorf("%w: unknown command %q (want http, dns or origin)", ErrUsage, args[0])
	}
}

func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("cordon loadtest "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: cordon loadtest %s %s\n\nflags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and refuses positional leftovers.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %s: %w", ErrUsage, fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: %s: unexpected argument %q (flags only)", ErrUsage, fs.Name(), fs.Arg(0))
	}
	return nil
}

func usageErr(cmd, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrUsage, cmd, fmt.Sprintf(format, args...))
}

func mainHTTP(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := HTTPDefaults()
	fs := newFlagSet("http", "--urls FILE [--proxy HOST:PORT | --connect-to HOST:PORT] [flags]", stderr)
	proxy := fs.String("proxy", "127.0.0.1:3128", "forward proxy `host:port`; \"\" sends straight to the URL hosts (direct baseline)")
	connectTo := fs.String("connect-to", "", "direct run: dial this `host:port` for every URL instead of its host (implies --proxy \"\")")
	urls := fs.String("urls", "", "URL `file`: full http(s) URLs or scheme-less host/path lines (required)")
	https := fs.Bool("https", false, "scheme-less URL lines become https://host:<https-port>/path (CONNECT + TLS through the proxy)")
	httpPort := fs.String("http-port", portOf(DefaultOriginHTTP), "port of scheme-less http lines")
	httpsPort := fs.String("https-port", portOf(DefaultOriginHTTPS), "port of scheme-less https lines")
	user := fs.String("user", "", "Basic proxy credentials `user:password`")
	caFile := fs.String("ca", "", "PEM `file` of CAs to verify HTTPS origins with (default: no verification); the origin writes its CA with --ca-out")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long to start requests for")
	fs.IntVar(&cfg.Connections, "connections", cfg.Connections, "concurrent connections, one request in flight each")
	fs.Float64Var(&cfg.Rate, "rate", 0, "open loop: requests per second over all connections, latency counted from the scheduled time (0 = closed loop)")
	fs.Uint64Var(&cfg.MaxRequests, "requests", cfg.MaxRequests, "stop after this many requests")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "per-request timeout, including connection and tunnel set-up")
	fs.BoolVar(&cfg.NoTLSResume, "no-tls-resume", false, "full TLS handshake on every connection (default: resume sessions of hosts seen before, as browsers do)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	set := flagsSet(fs)
	switch {
	case *urls == "":
		return usageErr("http", "--urls FILE is required")
	case cfg.Connections < 1:
		return usageErr("http", "--connections %d: want at least 1", cfg.Connections)
	case cfg.Duration <= 0:
		return usageErr("http", "--duration %v: want > 0", cfg.Duration)
	case cfg.Rate < 0:
		return usageErr("http", "--rate %v: want >= 0", cfg.Rate)
	case cfg.MaxRequests == 0:
		return usageErr("http", "--requests 0: want at least 1")
	case cfg.Timeout <= 0:
		return usageErr("http", "--timeout %v: want > 0", cfg.Timeout)
	}
	cfg.Proxy, cfg.ConnectTo = *proxy, *connectTo
	if *connectTo != "" {
		if set["proxy"] && *proxy != "" {
			return usageErr("http", "--connect-to is for direct runs; with --proxy the proxy resolves the URL hosts")
		}
		cfg.Proxy = ""
	}
	if *user != "" {
		u, p, ok := strings.Cut(*user, ":")
		if !ok || u == "" {
			return usageErr("http", "--user %q: want user:password", *user)
		}
		if cfg.Proxy == "" {
			return usageErr("http", "--user needs a proxy")
		}
		cfg.ProxyUser, cfg.ProxyPassword = u, p
	}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return usageErr("http", "--ca: %v", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return usageErr("http", "--ca %s: no PEM certificate in it", *caFile)
		}
	}
	ts, err := ReadURLFile(*urls, URLOptions{HTTPS: *https, HTTPPort: *httpPort, HTTPSPort: *httpsPort})
	if err != nil {
		return err
	}
	cfg.Targets = ts
	cfg.Progress = progressLine(stderr)
	res, err := RunHTTP(ctx, cfg)
	endProgress(stderr, cfg.Progress)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, res)
	}
	return WriteHTTPTable(stdout, res)
}

func mainDNS(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := DNSDefaults()
	fs := newFlagSet("dns", "--names FILE [--server HOST:PORT] [flags]", stderr)
	fs.StringVar(&cfg.Server, "server", "127.0.0.1:5353", "DNS server `host:port`")
	namesFile := fs.String("names", "", "name `file`: one \"name [TYPE]\" per line (required)")
	fs.BoolVar(&cfg.TCP, "tcp", false, "query over TCP (one kept-alive connection per worker) instead of UDP")
	fs.IntVar(&cfg.Hot, "hot", 0, "use only the first N names: a hot set the cache answers (0 = all names)")
	fs.BoolVar(&cfg.Unique, "unique", false, "prefix every name with a unique label: every query misses every cache")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long to send queries for")
	fs.Float64Var(&cfg.Rate, "qps", 0, "open loop: queries per second, latency counted from the scheduled time (0 = closed loop)")
	fs.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "workers, one query in flight each")
	fs.Uint64Var(&cfg.MaxRequests, "queries", cfg.MaxRequests, "stop after this many queries")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "per-query timeout")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *namesFile == "":
		return usageErr("dns", "--names FILE is required")
	case cfg.Server == "":
		return usageErr("dns", "--server is required")
	case cfg.Concurrency < 1:
		return usageErr("dns", "--concurrency %d: want at least 1", cfg.Concurrency)
	case cfg.Duration <= 0:
		return usageErr("dns", "--duration %v: want > 0", cfg.Duration)
	case cfg.Rate < 0:
		return usageErr("dns", "--qps %v: want >= 0", cfg.Rate)
	case cfg.Hot < 0:
		return usageErr("dns", "--hot %d: want >= 0", cfg.Hot)
	case cfg.MaxRequests == 0:
		return usageErr("dns", "--queries 0: want at least 1")
	case cfg.Timeout <= 0:
		return usageErr("dns", "--timeout %v: want > 0", cfg.Timeout)
	}
	if _, _, err := net.SplitHostPort(cfg.Server); err != nil {
		return usageErr("dns", "--server %q: want host:port", cfg.Server)
	}
	qs, err := ReadNameFile(*namesFile)
	if err != nil {
		return err
	}
	cfg.Queries = qs
	cfg.Progress = progressLine(stderr)
	res, err := RunDNS(ctx, cfg)
	endProgress(stderr, cfg.Progress)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, res)
	}
	return WriteDNSTable(stdout, res)
}

func mainOrigin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := OriginDefaults()
	fs := newFlagSet("origin", "[--http ADDR] [--https ADDR] [--dns ADDR] [flags]", stderr)
	fs.StringVar(&cfg.HTTPAddr, "http", cfg.HTTPAddr, "HTTP listen `address` (\"\" = off); serves /1k and /64k for any host")
	fs.StringVar(&cfg.HTTPSAddr, "https", cfg.HTTPSAddr, "HTTPS listen `address` (\"\" = off); a certificate per SNI name from a CA made at start")
	fs.StringVar(&cfg.DNSAddr, "dns", cfg.DNSAddr, "authoritative DNS `address`, UDP and TCP (\"\" = off)")
	a := fs.String("a", "127.0.0.1", "IPv4 `address` every A query gets")
	aaaa := fs.String("aaaa", "", "IPv6 `address` AAAA queries get (default: none, NODATA)")
	fs.DurationVar(&cfg.TTL, "ttl", 300*time.Second, "TTL of DNS answers")
	fs.BoolVar(&cfg.CNAME, "cname", false, "answer A/AAAA with a CNAME to --cname-target plus its address")
	fs.StringVar(&cfg.CNAMETarget, "cname-target", "edge.origin.test.", "CNAME target `name`")
	fs.StringVar(&cfg.CAFile, "ca-out", "", "write the HTTPS CA certificate (PEM) to this `file`")
	debug := fs.Bool("debug", false, "log the servers' connection errors")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var err error
	if cfg.A, err = netip.ParseAddr(*a); err != nil || !cfg.A.Is4() {
		return usageErr("origin", "--a %q: want an IPv4 address", *a)
	}
	if *aaaa != "" {
		if cfg.AAAA, err = netip.ParseAddr(*aaaa); err != nil || !cfg.AAAA.Is6() {
			return usageErr("origin", "--aaaa %q: want an IPv6 address", *aaaa)
		}
	}
	if cfg.TTL <= 0 {
		return usageErr("origin", "--ttl %v: want > 0", cfg.TTL)
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	o, err := StartOrigin(cfg, logger)
	if err != nil {
		return err
	}
	defer o.Close()
	fmt.Fprintf(stdout, "origin ready: http=%s https=%s dns=%s (udp+tcp)\n", orOff(o.HTTPAddr()), orOff(o.HTTPSAddr()), orOff(o.DNSAddr()))
	<-ctx.Done()
	return o.Close()
}

func orOff(s string) string {
	if s == "" {
		return "off"
	}
	return s
}

func flagsSet(fs *flag.FlagSet) map[string]bool {
	set := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// progressLine returns a progress callback drawing one line on stderr when
// it is a terminal, else nil (no progress).
func progressLine(stderr io.Writer) func(Progress) {
	f, ok := stderr.(*os.File)
	if !ok {
		return nil
	}
	st, err := f.Stat()
	if err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	var last Progress
	return func(p Progress) {
		rate := float64(p.Done-last.Done) / (p.Elapsed - last.Elapsed).Seconds()
		last = p
		fmt.Fprintf(f, "\r\033[K%6.1fs  %d answered  %.0f/s  %d errors", p.Elapsed.Seconds(), p.Done, rate, p.Errors)
	}
}

func endProgress(stderr io.Writer, fn func(Progress)) {
	if fn != nil {
		fmt.Fprint(stderr, "\r\033[K")
	}
}
