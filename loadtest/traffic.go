package loadtest

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// Target is one URL of a traffic file, pre-split for the wire.
type Target struct {
	HTTPS    bool
	Host     string // host name or IP literal, no brackets, lower case
	Port     string
	HostPort string // host:port, what CONNECT names and what a direct run dials
	HostHdr  string // Host header: host, or host:port when the port is not the scheme's default
	Path     string // origin-form request target: path and query
	Abs      string // absolute-form request target, what a proxy gets for http
}

// URLOptions say how scheme-less lines of a URL file become URLs.
type URLOptions struct {
	HTTPS     bool   // scheme-less lines become https URLs
	HTTPPort  string // port of scheme-less http lines; "" = 18080 (the local origin)
	HTTPSPort string // port of scheme-less https lines; "" = 18443 (the local origin)
}

// ReadURLFile reads a URL file; see ParseURLs.
func ReadURLFile(path string, opts URLOptions) ([]Target, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: urls: %w", ErrUsage, err)
	}
	defer f.Close()
	ts, err := ParseURLs(f, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ts, nil
}

// ParseURLs reads one URL per line. Blank lines and lines starting with #
// are skipped. A line is either a full http:// or https:// URL, used as it
// is, or a scheme-less host[:port][/path] (the form of
// loadtest/traffic/urls.txt), which becomes http://host:18080/path, or
// https://host:18443/path with opts.HTTPS, so the same file drives both
// plain and tunnelled load at the local origin.
func ParseURLs(r io.Reader, opts URLOptions) ([]Target, error) {
	httpPort, httpsPort := cmp.Or(opts.HTTPPort, portOf(DefaultOriginHTTP)), cmp.Or(opts.HTTPSPort, portOf(DefaultOriginHTTPS))
	var out []Target
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		t, err := parseURLLine(line, opts.HTTPS, httpPort, httpsPort)
		if err != nil {
			return nil, fmt.Errorf("%w: urls line %d %q: %w", ErrUsage, n, line, err)
		}
		out = append(out, t)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: urls: %w", ErrUsage, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: url file has no URL lines", ErrNoTargets)
	}
	return out, nil
}

func parseURLLine(line string, https bool, httpPort, httpsPort string) (Target, error) {
	if i := strings.IndexFunc(line, func(r rune) bool { return r <= ' ' || r == 0x7f }); i >= 0 {
		return Target{}, fmt.Errorf("white space or control character at byte %d", i)
	}
	raw := line
	if !strings.Contains(line, "://") {
		scheme, port := "http", httpPort
		if https {
			scheme, port = "https", httpsPort
		}
		end := strings.IndexAny(line, "/?#")
		if end < 0 {
			end = len(line)
		}
		hostport, rest := line[:end], line[end:]
		if _, _, err := net.SplitHostPort(hostport); err != nil {
			hostport = net.JoinHostPort(strings.Trim(hostport, "[]"), port)
		}
		if !strings.HasPrefix(rest, "/") {
			rest = "/" + rest
		}
		raw = scheme + "://" + hostport + rest
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Target{}, err
	}
	var t Target
	defPort := "80"
	switch u.Scheme {
	case "http":
	case "https":
		t.HTTPS, defPort = true, "443"
	default:
		return Target{}, fmt.Errorf("scheme %q: want http or https", u.Scheme)
	}
	if u.User != nil {
		return Target{}, fmt.Errorf("user info in URL: use --user for proxy credentials")
	}
	t.Host = strings.ToLower(u.Hostname())
	if t.Host == "" {
		return Target{}, fmt.Errorf("no host")
	}
	if ip := net.ParseIP(t.Host); ip == nil && !isHostName(t.Host) {
		return Target{}, fmt.Errorf("host %q: not a host name", t.Host)
	}
	t.Port = cmp.Or(u.Port(), defPort)
	if p, err := strconv.Atoi(t.Port); err != nil || p < 1 || p > 65535 {
		return Target{}, fmt.Errorf("port %q: want 1-65535", t.Port)
	}
	t.HostPort = net.JoinHostPort(t.Host, t.Port)
	t.HostHdr = t.HostPort
	if t.Port == defPort {
		t.HostHdr = t.Host
		if strings.Contains(t.Host, ":") {
			t.HostHdr = "[" + t.Host + "]"
		}
	}
	t.Path = u.EscapedPath()
	if t.Path == "" {
		t.Path = "/"
	}
	if u.RawQuery != "" {
		t.Path += "?" + u.RawQuery
	}
	scheme := "http://"
	if t.HTTPS {
		scheme = "https://"
	}
	t.Abs = scheme + t.HostHdr + t.Path
	return t, nil
}

// Query is one line of a name file.
type Query struct {
	Name string // fully qualified, lower case
	Type uint16
}

// ReadNameFile reads a name file; see ParseNames.
func ReadNameFile(path string) ([]Query, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: names: %w", ErrUsage, err)
	}
	defer f.Close()
	qs, err := ParseNames(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return qs, nil
}

// ParseNames reads one query per line: a domain name, optionally followed
// by a record type (A when absent), the format of dnsperf data files.
// Blank lines and lines starting with # or ; are skipped.
func ParseNames(r io.Reader) ([]Query, error) {
	var out []Query
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0][0] == '#' || fields[0][0] == ';' {
			continue
		}
		if len(fields) > 2 {
			return nil, fmt.Errorf("%w: names line %d: want \"name [TYPE]\", got %d fields", ErrUsage, n, len(fields))
		}
		name := strings.ToLower(dns.Fqdn(fields[0]))
		if !isHostName(name) {
			return nil, fmt.Errorf("%w: names line %d: %q is not a domain name", ErrUsage, n, fields[0])
		}
		q := Query{Name: name, Type: dns.TypeA}
		if len(fields) == 2 {
			t, ok := dns.StringToType[strings.ToUpper(fields[1])]
			if !ok {
				return nil, fmt.Errorf("%w: names line %d: unknown record type %q", ErrUsage, n, fields[1])
			}
			q.Type = t
		}
		out = append(out, q)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: names: %w", ErrUsage, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: name file has no name lines", ErrNoTargets)
	}
	return out, nil
}

func portOf(hostport string) string {
	_, p, _ := net.SplitHostPort(hostport)
	return p
}

// isHostName accepts DNS names made of letters, digits, '-' and '_' (the
// names real traffic carries), with or without the final dot; it refuses
// the root, empty labels and labels over 63 bytes.
func isHostName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := range len(label) {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
