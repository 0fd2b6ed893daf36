package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"
)

// Config configures the HTTP/HTTPS forward proxy. The zero value of every
// field means the documented default; Defaults returns them filled in.
type Config struct {
	// Listen is the proxy listener address. Default ":3128".
	Listen string `yaml:"listen"`

	// ReadHeaderTimeout bounds reading a client's request head (slow
	// clients are cut off). Default 10s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// IdleTimeout closes an idle client keep-alive connection, and bounds
	// each wait for more of a request body (a client trickling an upload)
	// and between requests in a decrypted tunnel. Default 90s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// DialTimeout bounds connecting to an origin. Default 10s.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// TLSHandshakeTimeout bounds an upstream TLS handshake and waiting for
	// a client's TLS ClientHello after CONNECT. Default 10s.
	TLSHandshakeTimeout time.Duration `yaml:"tls_handshake_timeout"`
	// ResponseHeaderTimeout bounds waiting for an origin's response head.
	// Default 60s.
	ResponseHeaderTimeout time.Duration `yaml:"response_header_timeout"`
	// TunnelIdleTimeout closes a CONNECT tunnel (or upgraded connection)
	// with no traffic in either direction for this long. Default 10m.
	TunnelIdleTimeout time.Duration `yaml:"tunnel_idle_timeout"`
	// MaxHeaderBytes limits a client request head. Default 65536.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// MaxConnsPerClient limits concurrent connections from one client IP;
	// beyond it new connections get 429 and are closed. Default 512.
	MaxConnsPerClient int `yaml:"max_conns_per_client"`
	// AuthFailuresPerMinute is how many failed proxy logins one client
	// address may make per minute; beyond it the client gets 429 and its
	// credentials are not checked until the minute is over. Negative
	// disables the limit. Default 20.
	AuthFailuresPerMinute int `yaml:"auth_failures_per_minute"`
	// MaxIdleConnsPerHost is the upstream keep-alive pool size per origin.
	// Default 64.
	MaxIdleConnsPerHost int `yaml:"max_idle_conns_per_host"`

	// Via is the pseudonym added to Via headers ("1.1 <via>") and used to
	// detect forwarding loops. "off" adds no Via header. Default "cordon".
	Via string `yaml:"via"`
	// XForwardedFor is what happens to X-Forwarded-For towards origins:
	// "strip" removes it (clients' addresses stay private), "append" adds
	// the client address to any received value, "keep" passes the client's
	// value unchanged. Default "strip".
	XForwardedFor string `yaml:"x_forwarded_for"`

	// AllowPrivateDestinations lists CIDRs the proxy may dial although they
	// are loopback, private, link-local or shared address space. Empty (the
	// default) refuses all of them, including 127.0.0.0/8, ::1,
	// 169.254.0.0/16 (cloud metadata), 10/8, 172.16/12, 192.168/16,
	// 100.64/10 and fc00::/7. Unspecified and multicast addresses and the
	// proxy's own listeners are always refused.
	AllowPrivateDestinations []string `yaml:"allow_private_destinations"`
	// ResolveOverrides maps host names to IP addresses, consulted before
	// DNS (benchmarks and tests point names at loopback origins with it;
	// the destinations must still pass AllowPrivateDestinations).
	// Default none.
	ResolveOverrides map[string]string `yaml:"resolve_overrides"`
	// HostsFile is an /etc/hosts-format file read at start and merged under
	// ResolveOverrides. Default "" (none).
	HostsFile string `yaml:"hosts_file"`
	// DNSCacheTTL is how long a resolution is reused. Default 30s; a
	// negative value disables the cache.
	DNSCacheTTL time.Duration `yaml:"dns_cache_ttl"`

	// ConnectPorts are the destination ports CONNECT may reach (as
	// Squid's SSL_ports): anything else is refused with 403, so the proxy
	// is no generic TCP relay. A list containing 0 allows every port; an
	// explicit empty list (connect_ports: []) refuses every CONNECT.
	// Default (absent) [443, 8443].
	ConnectPorts []int `yaml:"connect_ports"`

	// ConnectWarn is how a "warn" decision is enforced on an uninspected
	// CONNECT, where no page can be shown: "block" answers 403 telling the
	// user to open http://<host>/ to confirm (after which the tunnel is
	// allowed for the warn TTL), "allow" lets it pass and logs rule action
	// "warn", as the DNS filter does. Default "block".
	ConnectWarn string `yaml:"connect_warn"`
	// WarnTTL is how long a "continue" on a warn page is remembered per
	// user (or client address) and host when the policy gives no TTL.
	// Default 1h.
	WarnTTL time.Duration `yaml:"warn_ttl"`

	// SupportContact is shown on block and warn pages ("Contact ...").
	// Default "" (not shown).
	SupportContact string `yaml:"support_contact"`
	// PageTemplates overrides the embedded page templates.
	PageTemplates PageTemplates `yaml:"page_templates"`

	// PAC configures the proxy auto-config file.
	PAC PACConfig `yaml:"pac"`

	// TLSInspection configures optional HTTPS decryption (off by default).
	TLSInspection InspectConfig `yaml:"tls_inspection"`
}

// PageTemplates names html/template files that replace the embedded
// pages. Each template receives a PageData. Empty means the embedded one.
type PageTemplates struct {
	Block string `yaml:"block"` // blocked request
	Warn  string `yaml:"warn"`  // warning with "continue"
	Error string `yaml:"error"` // upstream or proxy error, refused destination
}

// PACConfig configures /proxy.pac and /wpad.dat.
type PACConfig struct {
	// Edges are the proxies offered in order (failover), "host:port".
	// Default: the host the PAC was fetched from, on the proxy port.
	Edges []string `yaml:"edges"`
	// Direct appends "DIRECT" after the edges, so browsers go direct when
	// no edge answers. Default false (fail closed).
	Direct bool `yaml:"direct"`
	// InternalDomains are DNS suffixes reached directly ("corp.example"
	// matches it and its subdomains). Default none.
	InternalDomains []string `yaml:"internal_domains"`
	// Bypass are shell patterns on the host (shExpMatch, "*.internal",
	// "10.1.*") reached directly. Default none.
	Bypass []string `yaml:"bypass"`
	// KeepPlainHostNames sends dot-less host names through the proxy too.
	// Default false: plain host names go direct.
	KeepPlainHostNames bool `yaml:"keep_plain_host_names"`
	// KeepPrivateNetworks sends IP literals in loopback, private and
	// link-local ranges through the proxy too. Default false: direct.
	KeepPrivateNetworks bool `yaml:"keep_private_networks"`
	// Locations override Edges, Direct, InternalDomains and Bypass for
	// ?location=<name>; unset fields inherit the top level.
	Locations map[string]PACLocation `yaml:"locations"`
}

// PACLocation is the PAC variant of one location.
type PACLocation struct {
	Edges           []string `yaml:"edges"`
	Direct          *bool    `yaml:"direct"`
	InternalDomains []string `yaml:"internal_domains"`
	Bypass          []string `yaml:"bypass"`
}

// InspectConfig configures TLS inspection.
type InspectConfig struct {
	// Enabled decrypts allowed CONNECT tunnels with certificates signed by
	// the CA in CADir, so full URLs are decided and block pages shown.
	// Default false.
	Enabled bool `yaml:"enabled"`
	// CADir holds ca.crt and ca.key made by InitCA (`cordon ca init`).
	// Default "./cordon-data/ca".
	CADir string `yaml:"ca_dir"`
	// DoNotInspectCategories are categories always spliced untouched. An
	// explicit empty list exempts no category. Default (absent)
	// ["banking", "financial", "health"] (the bundled feeds name the first two).
	DoNotInspectCategories []string `yaml:"do_not_inspect_categories"`
	// DoNotInspectDomains are domains (and their subdomains) always
	// spliced untouched. Default none.
	DoNotInspectDomains []string `yaml:"do_not_inspect_domains"`
	// PinningBypass are domains (and subdomains) of applications that pin
	// certificates; they are spliced untouched. Default none.
	PinningBypass []string `yaml:"pinning_bypass"`
	// UpstreamCAFiles are PEM files of extra roots trusted for origins
	// (in addition to the system roots). Default none.
	UpstreamCAFiles []string `yaml:"upstream_ca_files"`
	// LeafCacheSize is how many per-host leaf certificates are kept.
	// Default 10000.
	LeafCacheSize int `yaml:"leaf_cache_size"`
}

// Defaults returns the configuration used when nothing is set.
func Defaults() Config {
	return Config{}.withDefaults()
}

func (c Config) withDefaults() Config {
	setStr := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	setDur := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	setInt := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	setStr(&c.Listen, ":3128")
	setDur(&c.ReadHeaderTimeout, 10*time.Second)
	setDur(&c.IdleTimeout, 90*time.Second)
	setDur(&c.DialTimeout, 10*time.Second)
	setDur(&c.TLSHandshakeTimeout, 10*time.Second)
	setDur(&c.ResponseHeaderTimeout, 60*time.Second)
	setDur(&c.TunnelIdleTimeout, 10*time.Minute)
	setInt(&c.MaxHeaderBytes, 64<<10)
	setInt(&c.MaxConnsPerClient, 512)
	setInt(&c.MaxIdleConnsPerHost, 64)
	setInt(&c.AuthFailuresPerMinute, 20)
	setStr(&c.Via, "cordon")
	setStr(&c.XForwardedFor, "strip")
	setDur(&c.DNSCacheTTL, 30*time.Second)
	if c.ConnectPorts == nil {
		c.ConnectPorts = []int{443, 8443}
	}
	setStr(&c.ConnectWarn, "block")
	setDur(&c.WarnTTL, time.Hour)
	setStr(&c.TLSInspection.CADir, "./cordon-data/ca")
	if c.TLSInspection.DoNotInspectCategories == nil {
		c.TLSInspection.DoNotInspectCategories = []string{"banking", "financial", "health"}
	}
	setInt(&c.TLSInspection.LeafCacheSize, 10000)
	return c
}

// Validate reports every invalid field at once.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("proxy: %s: %s", field, fmt.Sprintf(format, args...)))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "want host:port: %v", err)
	}
	for name, d := range map[string]time.Duration{
		"read_header_timeout":     c.ReadHeaderTimeout,
		"idle_timeout":            c.IdleTimeout,
		"dial_timeout":            c.DialTimeout,
		"tls_handshake_timeout":   c.TLSHandshakeTimeout,
		"response_header_timeout": c.ResponseHeaderTimeout,
		"tunnel_idle_timeout":     c.TunnelIdleTimeout,
		"warn_ttl":                c.WarnTTL,
	} {
		if d < 0 {
			bad(name, "must not be negative, got %s", d)
		}
	}
	if c.MaxHeaderBytes < 1024 {
		bad("max_header_bytes", "must be at least 1024, got %d", c.MaxHeaderBytes)
	}
	if c.MaxConnsPerClient < 0 {
		bad("max_conns_per_client", "must not be negative, got %d", c.MaxConnsPerClient)
	}
	if c.MaxIdleConnsPerHost < 0 {
		bad("max_idle_conns_per_host", "must not be negative, got %d", c.MaxIdleConnsPerHost)
	}
	if strings.ContainsAny(c.Via, " \t\r\n,") {
		bad("via", "must be one token without spaces or commas, got %q", c.Via)
	}
	switch c.XForwardedFor {
	case "strip", "append", "keep":
	default:
		bad("x_forwarded_for", "want strip, append or keep, got %q", c.XForwardedFor)
	}
	for i, p := range c.ConnectPorts {
		if p < 0 || p > 65535 {
			bad(fmt.Sprintf("connect_ports[%d]", i), "want 0 (any) or a port 1-65535, got %d", p)
		}
	}
	switch c.ConnectWarn {
	case "block", "allow":
	default:
		bad("connect_warn", "want block or allow, got %q", c.ConnectWarn)
	}
	for i, s := range c.AllowPrivateDestinations {
		if _, err := parsePrefix(s); err != nil {
			bad(fmt.Sprintf("allow_private_destinations[%d]", i), "want a CIDR or an address, got %q", s)
		}
	}
	for host, ip := range c.ResolveOverrides {
		if _, err := netip.ParseAddr(ip); err != nil {
			bad("resolve_overrides."+host, "want an IP address, got %q", ip)
		}
		if normalizeHost(host) == "" {
			bad("resolve_overrides", "invalid host name %q", host)
		}
	}
	if c.HostsFile != "" {
		if _, err := os.Stat(c.HostsFile); err != nil {
			bad("hosts_file", "%v", err)
		}
	}
	for name, p := range map[string]string{"block": c.PageTemplates.Block, "warn": c.PageTemplates.Warn, "error": c.PageTemplates.Error} {
		if p == "" {
			continue
		}
		if _, err := parsePageFile(p); err != nil {
			bad("page_templates."+name, "%v", err)
		}
	}
	errs = append(errs, c.PAC.validate()...)
	ti := c.TLSInspection
	if ti.LeafCacheSize < 1 {
		bad("tls_inspection.leaf_cache_size", "must be positive, got %d", ti.LeafCacheSize)
	}
	if ti.Enabled {
		if _, err := LoadCA(ti.CADir); err != nil {
			bad("tls_inspection.ca_dir", "%v (run `cordon ca init`)", err)
		}
	}
	for i, f := range ti.UpstreamCAFiles {
		if _, err := os.Stat(f); err != nil {
			bad(fmt.Sprintf("tls_inspection.upstream_ca_files[%d]", i), "%v", err)
		}
	}
	return errors.Join(errs...)
}

func (p PACConfig) validate() []error {
	var errs []error
	check := func(field string, edges []string) {
		for i, e := range edges {
			host, port, err := net.SplitHostPort(e)
			if err != nil || host == "" || port == "" || strings.ContainsAny(e, " ;\"'\\") {
				errs = append(errs, fmt.Errorf("proxy: %s[%d]: want host:port, got %q", field, i, e))
			}
		}
	}
	checkPatterns := func(field string, pats []string) {
		for i, s := range pats {
			if s == "" || strings.ContainsAny(s, " ;\"'\\\n") {
				errs = append(errs, fmt.Errorf("proxy: %s[%d]: invalid pattern %q", field, i, s))
			}
		}
	}
	check("pac.edges", p.Edges)
	checkPatterns("pac.internal_domains", p.InternalDomains)
	checkPatterns("pac.bypass", p.Bypass)
	for name, l := range p.Locations {
		if name == "" {
			errs = append(errs, errors.New("proxy: pac.locations: empty location name"))
		}
		check("pac.locations."+name+".edges", l.Edges)
		checkPatterns("pac.locations."+name+".internal_domains", l.InternalDomains)
		checkPatterns("pac.locations."+name+".bypass", l.Bypass)
	}
	return errs
}

// parsePrefix accepts "10.0.0.0/8" or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}
