package dnsfilter

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error; none means valid
	}{
		{name: "zero value", yaml: "{}"},
		{name: "full", yaml: `
listen: "127.0.0.1:5353"
upstreams: ["1.1.1.1", "udp://9.9.9.9:53", "tcp://[2620:fe::fe]:53", "tls://1.1.1.1:853#cloudflare-dns.com", "https://dns.google/dns-query"]
strategy: round_robin
upstream_timeout: 500ms
query_timeout: 2s
health_check_interval: 30s
health_check_name: example.com
cache: {max_entries: 1000, min_ttl: 5s, max_ttl: 1h, max_negative_ttl: 5m, prefetch_hits: 5}
rate_limit: {qps: 50, burst: 100, max_clients: 1000}
max_udp_size: 1400
block_ttl: 30s
sinkhole_ipv4: ["192.0.2.10"]
sinkhole_ipv6: ["2001:db8::10"]
filtered_rules: [parental]
any: refuse
youtube_restrict: moderate
`},
		{name: "bad everything", yaml: `
listen: "5353"
upstreams: ["ftp://x", "udp://"]
strategy: random
upstream_timeout: 5s
query_timeout: 1s
cache: {min_ttl: 2h, max_ttl: 1h, max_entries: -1}
rate_limit: {qps: -1}
max_udp_size: 100
sinkhole_ipv4: ["2001:db8::1"]
sinkhole_ipv6: ["192.0.2.1"]
any: all
youtube_restrict: off
`, want: []string{"listen", "upstreams[0]", "upstreams[1]", "strategy", "query_timeout", "cache.min_ttl",
			"cache.max_entries", "rate_limit.qps", "max_udp_size", "sinkhole_ipv4", "sinkhole_ipv6", "any:", "youtube_restrict"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Config
			dec := yaml.NewDecoder(bytes.NewReader([]byte(tt.yaml)))
			dec.KnownFields(true)
			if err := dec.Decode(&c); err != nil {
				t.Fatalf("decode: %v", err)
			}
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate() = %v, want ErrInvalidConfig", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	d := Config{}.withDefaults()
	if d.Listen != ":5353" || d.Strategy != StrategyFastest || d.MaxUDPSize != 1232 ||
		time.Duration(d.BlockTTL) != 10*time.Second || d.Cache.MaxEntries != 100000 ||
		d.RateLimit.QPS != 500 || d.RateLimit.Burst != 1000 || len(d.Upstreams) != 2 || d.Any != AnyHINFO {
		t.Errorf("defaults = %+v", d)
	}
}

func TestParseUpstream(t *testing.T) {
	tests := []struct {
		in       string
		kind     upstreamKind
		addr     string
		sni, url string
		err      bool
	}{
		{in: "1.1.1.1", kind: kindUDP, addr: "1.1.1.1:53"},
		{in: "1.1.1.1:5300", kind: kindUDP, addr: "1.1.1.1:5300"},
		{in: "udp://[2606:4700::1111]", kind: kindUDP, addr: "[2606:4700::1111]:53"},
		{in: "2606:4700::1111", kind: kindUDP, addr: "[2606:4700::1111]:53"},
		{in: "tcp://9.9.9.9", kind: kindTCP, addr: "9.9.9.9:53"},
		{in: "tls://1.1.1.1", kind: kindTLS, addr: "1.1.1.1:853", sni: "1.1.1.1"},
		{in: "tls://1.1.1.1:8853#one.one.one.one", kind: kindTLS, addr: "1.1.1.1:8853", sni: "one.one.one.one"},
		{in: "https://dns.google/dns-query", kind: kindHTTPS, url: "https://dns.google/dns-query"},
		{in: "tls://1.1.1.1#", err: true},
		{in: "quic://1.1.1.1", err: true},
		{in: "udp://", err: true},
		{in: "https://", err: true},
		{in: "udp://a b", err: true},
	}
	for _, tt := range tests {
		u, err := parseUpstream(tt.in)
		if tt.err {
			if err == nil {
				t.Errorf("parseUpstream(%q) = %+v, want error", tt.in, u)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseUpstream(%q): %v", tt.in, err)
			continue
		}
		if u.kind != tt.kind || u.addr != tt.addr || u.sni != tt.sni || u.url != tt.url {
			t.Errorf("parseUpstream(%q) = kind %v addr %q sni %q url %q, want %v %q %q %q",
				tt.in, u.kind, u.addr, u.sni, u.url, tt.kind, tt.addr, tt.sni, tt.url)
		}
	}
}

func TestSafeSearchTarget(t *testing.T) {
	tests := []struct{ host, want string }{
		{"www.google.com", "forcesafesearch.google.com."},
		{"google.co.uk", "forcesafesearch.google.com."},
		{"www.google.de", "forcesafesearch.google.com."},
		{"mail.google.com", ""},
		{"google.evil.example.com", ""},
		{"www.bing.com", "strict.bing.com."},
		{"duckduckgo.com", "safe.duckduckgo.com."},
		{"m.youtube.com", "restrict.youtube.com."},
		{"example.com", ""},
	}
	for _, tt := range tests {
		if got := safeSearchTarget(tt.host, "strict"); got != tt.want {
			t.Errorf("safeSearchTarget(%q) = %q, want %q", tt.host, got, tt.want)
		}
	}
	if got := safeSearchTarget("www.youtube.com", "moderate"); got != "restrictmoderate.youtube.com." {
		t.Errorf("moderate youtube = %q", got)
	}
}
