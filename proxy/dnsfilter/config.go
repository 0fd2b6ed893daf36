package dnsfilter

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"
)

// Config configures the DNS filter. The zero value is usable: every field
// documents the default its zero value stands for. cmd/cordon decodes it
// strictly from the `dns:` section of the one YAML file.
type Config struct {
	// Listen is the address of both the UDP and the TCP listener used by
	// ListenAndServe. Default ":5353", which needs no privileges. Port 53
	// (":53") needs root or CAP_NET_BIND_SERVICE
	// (setcap cap_net_bind_service=+ep ./cordon).
	Listen string `yaml:"listen"`

	// Upstreams are the resolvers queries are forwarded to, tried in the
	// order the Strategy gives and failed over on error. Forms:
	// "1.1.1.1" or "udp://1.1.1.1:53" (UDP, retried over TCP when the
	// answer is truncated), "tcp://9.9.9.9:53", "tls://1.1.1.1:853" or
	// "tls://1.1.1.1:853#cloudflare-dns.com" (DNS over TLS, the part after
	// # is the TLS server name) and "https://dns.google/dns-query"
	// (DNS over HTTPS, RFC 8484). Default ["udp://1.1.1.1:53",
	// "udp://9.9.9.9:53"].
	Upstreams []string `yaml:"upstreams"`
	// Strategy picks the first upstream to ask: "fastest" (lowest smoothed
	// round-trip time among healthy upstreams) or "round_robin". Either
	// way the others are tried next when one fails. Default "fastest".
	Strategy string `yaml:"strategy"`
	// UpstreamTimeout bounds one attempt against one upstream. Default
	// "1500ms".
	UpstreamTimeout Duration `yaml:"upstream_timeout"`
	// QueryTimeout bounds the whole resolution of one query, failovers
	// included; when it passes the client gets SERVFAIL. Default "3s".
	QueryTimeout Duration `yaml:"query_timeout"`
	// MaxInflight bounds the upstream resolutions in flight at once
	// (concurrent misses of one name count once); past it a cache miss
	// gets SERVFAIL at once. Default 10000.
	MaxInflight int `yaml:"max_inflight"`
	// UpstreamCAFile is a PEM bundle of CAs that verify DoT and DoH
	// upstreams (a private resolver); "" means the system roots.
	// Deps.RootCAs, when set, takes precedence.
	UpstreamCAFile string `yaml:"upstream_ca_file"`
	// HealthCheckInterval is how often each upstream is probed with a
	// query for HealthCheckName. Default "10s".
	HealthCheckInterval Duration `yaml:"health_check_interval"`
	// HealthCheckName is the name probed (type NS). Default "." (the root).
	HealthCheckName string `yaml:"health_check_name"`

	// Cache configures the answer cache.
	Cache CacheConfig `yaml:"cache"`

	// RateLimit configures per-client rate limiting.
	RateLimit RateLimitConfig `yaml:"rate_limit"`

	// MaxUDPSize is the largest UDP answer sent and the EDNS buffer size
	// advertised to clients and upstreams. Default 1232 (DNS flag day
	// 2020); clients without EDNS get at most 512 bytes.
	MaxUDPSize int `yaml:"max_udp_size"`

	// BlockTTL is the TTL of block answers (NXDOMAIN SOA, null and
	// sinkhole addresses), short so an unblock takes effect fast.
	// Default "10s".
	BlockTTL Duration `yaml:"block_ttl"`
	// SinkholeIPv4 and SinkholeIPv6 are the addresses of the edge's block
	// page, answered for blocked names when the policy's DNS block mode is
	// "sinkhole". When the family asked for has no address, the null
	// address (0.0.0.0 or ::) is answered instead. Default none.
	SinkholeIPv4 []string `yaml:"sinkhole_ipv4"`
	SinkholeIPv6 []string `yaml:"sinkhole_ipv6"`
	// FilteredRules lists policy rule IDs that are filtering the client
	// chose (opted-in parental control and the like). Blocks by these
	// rules carry Extended DNS Error 17 "Filtered"; every other block is
	// operator policy and carries 15 "Blocked" (RFC 8914). Default none.
	FilteredRules []string `yaml:"filtered_rules"`
	// Any says how queries of type ANY are answered: "hinfo" (RFC 8482: a
	// single synthesized HINFO record) or "refuse" (REFUSED). Default
	// "hinfo".
	Any string `yaml:"any"`
	// YouTubeRestrict is the YouTube restricted-mode level used by safe
	// search: "strict" (restrict.youtube.com) or "moderate"
	// (restrictmoderate.youtube.com). Default "strict".
	YouTubeRestrict string `yaml:"youtube_restrict"`
}

// CacheConfig configures the answer cache.
type CacheConfig struct {
	// Disabled turns the cache off (every query goes upstream). Default
	// false.
	Disabled bool `yaml:"disabled"`
	// MaxEntries bounds the number of cached answers (about 0.5 KiB each
	// for a typical answer). Default 100000.
	MaxEntries int `yaml:"max_entries"`
	// MinTTL raises shorter answer TTLs. Default "0s" (no raise).
	MinTTL Duration `yaml:"min_ttl"`
	// MaxTTL caps answer TTLs. Default "24h".
	MaxTTL Duration `yaml:"max_ttl"`
	// MaxNegativeTTL caps how long NXDOMAIN and NODATA answers are cached
	// (RFC 2308: the SOA minimum, capped here). Answers without an SOA are
	// not cached. Default "1h".
	MaxNegativeTTL Duration `yaml:"max_negative_ttl"`
	// PrefetchHits is how many hits make a name popular: a popular entry
	// is refreshed from upstream in the background when less than a tenth
	// of its TTL is left, so clients keep getting cached answers.
	// Default 3.
	PrefetchHits int `yaml:"prefetch_hits"`
	// NoPrefetch turns prefetching off. Default false.
	NoPrefetch bool `yaml:"no_prefetch"`
}

// RateLimitConfig configures the per-client token bucket
// (golang.org/x/time/rate). A client over its limit gets REFUSED.
type RateLimitConfig struct {
	// Disabled turns rate limiting off. Default false.
	Disabled bool `yaml:"disabled"`
	// QPS is the sustained queries per second allowed per client IPv4
	// address or IPv6 /64. Default 500.
	QPS float64 `yaml:"qps"`
	// Burst is the bucket size. Default 2×QPS.
	Burst int `yaml:"burst"`
	// MaxClients bounds how many clients are tracked; idle clients are
	// forgotten first. Default 65536.
	MaxClients int `yaml:"max_clients"`
}

// Defaults.
const (
	DefaultListen              = ":5353"
	DefaultStrategy            = StrategyFastest
	DefaultUpstreamTimeout     = 1500 * time.Millisecond
	DefaultQueryTimeout        = 3 * time.Second
	DefaultHealthCheckInterval = 10 * time.Second
	DefaultMaxUDPSize          = 1232
	DefaultMaxInflight         = 10000
	DefaultBlockTTL            = 10 * time.Second
	DefaultCacheEntries        = 100000
	DefaultCacheMaxTTL         = 24 * time.Hour
	DefaultCacheMaxNegTTL      = time.Hour
	DefaultPrefetchHits        = 3
	DefaultRateQPS             = 500
	DefaultRateMaxClients      = 65536

	StrategyFastest    = "fastest"
	StrategyRoundRobin = "round_robin"
	AnyHINFO           = "hinfo"
	AnyRefuse          = "refuse"
)

// DefaultUpstreams are the resolvers used when Config.Upstreams is empty.
var DefaultUpstreams = []string{"udp://1.1.1.1:53", "udp://9.9.9.9:53"}

// Duration is a time.Duration written as a string ("5s", "250ms") in YAML.
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("dnsfilter: duration %q: %w", b, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// String is the Go duration string.
func (d Duration) String() string { return time.Duration(d).String() }

func orDur(d Duration, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return time.Duration(d)
}

// withDefaults returns c with every zero field replaced by its default.
func (c Config) withDefaults() Config {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if len(c.Upstreams) == 0 {
		c.Upstreams = append([]string(nil), DefaultUpstreams...)
	}
	if c.Strategy == "" {
		c.Strategy = DefaultStrategy
	}
	c.UpstreamTimeout = Duration(orDur(c.UpstreamTimeout, DefaultUpstreamTimeout))
	c.QueryTimeout = Duration(orDur(c.QueryTimeout, DefaultQueryTimeout))
	c.HealthCheckInterval = Duration(orDur(c.HealthCheckInterval, DefaultHealthCheckInterval))
	if c.HealthCheckName == "" {
		c.HealthCheckName = "."
	}
	if c.Cache.MaxEntries == 0 {
		c.Cache.MaxEntries = DefaultCacheEntries
	}
	c.Cache.MaxTTL = Duration(orDur(c.Cache.MaxTTL, DefaultCacheMaxTTL))
	c.Cache.MaxNegativeTTL = Duration(orDur(c.Cache.MaxNegativeTTL, DefaultCacheMaxNegTTL))
	if c.Cache.PrefetchHits == 0 {
		c.Cache.PrefetchHits = DefaultPrefetchHits
	}
	if c.RateLimit.QPS == 0 {
		c.RateLimit.QPS = DefaultRateQPS
	}
	if c.RateLimit.Burst == 0 {
		c.RateLimit.Burst = int(2 * c.RateLimit.QPS)
		if c.RateLimit.Burst < 1 {
			c.RateLimit.Burst = 1
		}
	}
	if c.RateLimit.MaxClients == 0 {
		c.RateLimit.MaxClients = DefaultRateMaxClients
	}
	if c.MaxUDPSize == 0 {
		c.MaxUDPSize = DefaultMaxUDPSize
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = DefaultMaxInflight
	}
	c.BlockTTL = Duration(orDur(c.BlockTTL, DefaultBlockTTL))
	if c.Any == "" {
		c.Any = AnyHINFO
	}
	if c.YouTubeRestrict == "" {
		c.YouTubeRestrict = "strict"
	}
	return c
}

// Validate reports every invalid field at once (errors.Join), each naming
// the field and why. It checks the configuration as written, with zero
// values standing for their defaults.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("dnsfilter: %s: %s: %w", field, fmt.Sprintf(format, args...), ErrInvalidConfig))
	}
	d := c.withDefaults()
	if _, _, err := splitListen(d.Listen); err != nil {
		bad("listen", "%v", err)
	}
	if len(d.Upstreams) > maxUpstreams {
		bad("upstreams", "%d configured, at most %d", len(d.Upstreams), maxUpstreams)
	}
	for i, u := range d.Upstreams {
		if _, err := parseUpstream(u); err != nil {
			bad(fmt.Sprintf("upstreams[%d]", i), "%v", err)
		}
	}
	if d.Strategy != StrategyFastest && d.Strategy != StrategyRoundRobin {
		bad("strategy", "%q is not %q or %q", d.Strategy, StrategyFastest, StrategyRoundRobin)
	}
	for _, f := range []struct {
		name string
		v    Duration
	}{
		{"upstream_timeout", c.UpstreamTimeout}, {"query_timeout", c.QueryTimeout},
		{"health_check_interval", c.HealthCheckInterval}, {"block_ttl", c.BlockTTL},
		{"cache.min_ttl", c.Cache.MinTTL}, {"cache.max_ttl", c.Cache.MaxTTL},
		{"cache.max_negative_ttl", c.Cache.MaxNegativeTTL},
	} {
		if f.v < 0 {
			bad(f.name, "must not be negative, got %s", f.v)
		}
	}
	if d.QueryTimeout < d.UpstreamTimeout {
		bad("query_timeout", "%s is shorter than upstream_timeout %s", d.QueryTimeout, d.UpstreamTimeout)
	}
	if d.Cache.MinTTL > d.Cache.MaxTTL {
		bad("cache.min_ttl", "%s is above cache.max_ttl %s", d.Cache.MinTTL, d.Cache.MaxTTL)
	}
	if c.Cache.MaxEntries < 0 {
		bad("cache.max_entries", "must not be negative, got %d", c.Cache.MaxEntries)
	}
	if c.Cache.PrefetchHits < 0 {
		bad("cache.prefetch_hits", "must not be negative, got %d", c.Cache.PrefetchHits)
	}
	if c.MaxInflight < 0 {
		bad("max_inflight", "must not be negative, got %d", c.MaxInflight)
	}
	if c.RateLimit.QPS < 0 {
		bad("rate_limit.qps", "must not be negative, got %g", c.RateLimit.QPS)
	}
	if c.RateLimit.Burst < 0 {
		bad("rate_limit.burst", "must not be negative, got %d", c.RateLimit.Burst)
	}
	if c.RateLimit.MaxClients < 0 {
		bad("rate_limit.max_clients", "must not be negative, got %d", c.RateLimit.MaxClients)
	}
	if d.MaxUDPSize < 512 || d.MaxUDPSize > 65535 {
		bad("max_udp_size", "%d is outside 512..65535", d.MaxUDPSize)
	}
	if d.BlockTTL > Duration(24*time.Hour) {
		bad("block_ttl", "%s is above 24h", d.BlockTTL)
	}
	if _, err := parseAddrs(c.SinkholeIPv4, true); err != nil {
		bad("sinkhole_ipv4", "%v", err)
	}
	if _, err := parseAddrs(c.SinkholeIPv6, false); err != nil {
		bad("sinkhole_ipv6", "%v", err)
	}
	if d.Any != AnyHINFO && d.Any != AnyRefuse {
		bad("any", "%q is not %q or %q", d.Any, AnyHINFO, AnyRefuse)
	}
	if d.YouTubeRestrict != "strict" && d.YouTubeRestrict != "moderate" {
		bad("youtube_restrict", "%q is not \"strict\" or \"moderate\"", d.YouTubeRestrict)
	}
	if c.UpstreamCAFile != "" {
		if _, err := os.Stat(c.UpstreamCAFile); err != nil {
			bad("upstream_ca_file", "%v", err)
		}
	}
	if strings.TrimSpace(d.HealthCheckName) == "" {
		bad("health_check_name", "must not be blank")
	}
	return errors.Join(errs...)
}

func splitListen(addr string) (host, port string, err error) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return "", "", fmt.Errorf("%q has no port", addr)
	}
	host, port = addr[:i], addr[i+1:]
	if port == "" {
		return "", "", fmt.Errorf("%q has no port", addr)
	}
	return host, port, nil
}

func parseAddrs(ss []string, v4 bool) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, s := range ss {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", s, err)
		}
		if a.Is4() != v4 || a.Is4In6() {
			fam := "IPv6"
			if v4 {
				fam = "IPv4"
			}
			return nil, fmt.Errorf("%q is not an %s address", s, fam)
		}
		out = append(out, a)
	}
	return out, nil
}
