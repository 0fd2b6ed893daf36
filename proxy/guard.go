package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Resolver turns a host name into addresses. *net.Resolver implements it;
// tests and benchmarks pass one that maps names to loopback origins.
type Resolver interface {
	// LookupNetIP looks up host; network is "ip", "ip4" or "ip6".
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Address classes the guard refuses unless allowed by configuration.
var guardedPrefixes = []struct {
	prefix netip.Prefix
	class  string
}{
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared"},
	{netip.MustParsePrefix("fc00::/7"), "private"},
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified"},
	{netip.MustParsePrefix("192.0.0.0/24"), "reserved"},
	{netip.MustParsePrefix("198.18.0.0/15"), "reserved"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
	{netip.MustParsePrefix("64:ff9b::/96"), "nat64"},
	{netip.MustParsePrefix("2002::/16"), "6to4"},
}

// guard resolves destinations once, refuses the ones the proxy must not
// reach and dials exactly the address it checked, so DNS rebinding cannot
// move a connection after the decision.
type guard struct {
	resolver  Resolver
	overrides map[string][]netip.Addr // one address each; read-only after newGuard
	allow     []netip.Prefix
	dialer    net.Dialer
	cacheTTL  time.Duration

	mu      sync.RWMutex
	own     map[netip.AddrPort]bool // the proxy's listeners
	ownPort map[uint16]bool         // ports of listeners on unspecified addresses
	local   map[netip.Addr]bool     // this host's interface addresses
	cache   map[string]cacheEntry
}

type cacheEntry struct {
	addrs   []netip.Addr
	expires time.Time
}

const maxDNSCache = 50000

func newGuard(cfg Config, resolver Resolver) (*guard, error) {
	g := &guard{
		resolver:  resolver,
		overrides: map[string][]netip.Addr{},
		cacheTTL:  cfg.DNSCacheTTL,
		own:       map[netip.AddrPort]bool{},
		ownPort:   map[uint16]bool{},
		local:     map[netip.Addr]bool{},
		cache:     map[string]cacheEntry{},
	}
	// No TCP keep-alive probes on origin sockets (four setsockopt calls
	// per dial): idle_timeout and tunnel_idle_timeout bound dead peers.
	g.dialer = net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: -1}
	if g.resolver == nil {
		g.resolver = net.DefaultResolver
	}
	if cfg.HostsFile != "" {
		if err := g.loadHosts(cfg.HostsFile); err != nil {
			return nil, err
		}
	}
	for h, ip := range cfg.ResolveOverrides {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return nil, fmt.Errorf("proxy: resolve_overrides %s: %w", h, err)
		}
		g.overrides[normalizeHost(h)] = []netip.Addr{a.Unmap()}
	}
	for _, s := range cfg.AllowPrivateDestinations {
		p, err := parsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("proxy: allow_private_destinations %q: %w", s, err)
		}
		g.allow = append(g.allow, p)
	}
	if ifs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range ifs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok {
					g.local[ip.Unmap()] = true
				}
			}
		}
	}
	return g, nil
}

func (g *guard) loadHosts(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("proxy: hosts_file: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		a, err := netip.ParseAddr(fields[0])
		if err != nil || len(fields) < 2 {
			return fmt.Errorf("proxy: hosts_file %s line %d: want \"<ip> <name>...\"", path, n)
		}
		for _, h := range fields[1:] {
			if nh := normalizeHost(h); nh != "" {
				g.overrides[nh] = []netip.Addr{a.Unmap()}
			}
		}
	}
	return sc.Err()
}

// addListener records one of the proxy's own listening addresses; the
// guard never dials it (a request through the proxy to itself would loop).
func (g *guard) addListener(addr net.Addr) {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	g.mu.Lock()
	defer g.mu.Unlock()
	if ap.Addr().IsUnspecified() {
		g.ownPort[ap.Port()] = true
		return
	}
	g.own[ap] = true
}

// refusal says why a destination address is refused; "" means allowed.
func (g *guard) refusal(a netip.Addr, port uint16) string {
	a = a.Unmap()
	g.mu.RLock()
	own := g.own[netip.AddrPortFrom(a, port)] || (g.ownPort[port] && (g.local[a] || a.IsLoopback()))
	g.mu.RUnlock()
	switch {
	case own:
		return "own-listener"
	case !a.IsValid() || a.IsUnspecified():
		return "unspecified"
	case a.IsMulticast() || a.IsInterfaceLocalMulticast() || a.IsLinkLocalMulticast():
		return "multicast"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "broadcast"
	}
	for _, p := range g.allow {
		if p.Contains(a) {
			return ""
		}
	}
	for _, gp := range guardedPrefixes {
		if gp.prefix.Contains(a) {
			return gp.class
		}
	}
	return ""
}

// resolve returns the addresses of host the proxy may dial, in resolver
// order. A literal address is checked as is. When every address is refused
// the error wraps ErrDestinationRefused.
func (g *guard) resolve(ctx context.Context, host string, port uint16) ([]netip.Addr, error) {
	return g.resolveInto(ctx, host, port, nil)
}

// resolveInto is resolve that puts an address literal into buf (when not
// nil) instead of a new slice; the result is valid while buf is.
func (g *guard) resolveInto(ctx context.Context, host string, port uint16, buf *[1]netip.Addr) ([]netip.Addr, error) {
	addrs, err := g.lookup(ctx, host, buf)
	if err != nil {
		return nil, err
	}
	// Usually every address passes: return the looked-up slice itself
	// (callers never modify it).
	refused := -1
	for i, a := range addrs {
		if g.refusal(a, port) != "" {
			refused = i
			break
		}
	}
	if refused < 0 {
		return addrs, nil
	}
	out := make([]netip.Addr, 0, len(addrs))
	var why string
	for _, a := range addrs {
		if r := g.refusal(a, port); r != "" {
			why = r
			continue
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, &refusedError{host: host, class: why}
	}
	return out, nil
}

func (g *guard) lookup(ctx context.Context, host string, buf *[1]netip.Addr) ([]netip.Addr, error) {
	if a := parseIP(host); a.IsValid() {
		if buf != nil {
			buf[0] = a.Unmap()
			return buf[:], nil
		}
		return []netip.Addr{a.Unmap()}, nil
	}
	if a, ok := g.overrides[host]; ok {
		return a, nil
	}
	now := time.Now()
	if g.cacheTTL > 0 {
		g.mu.RLock()
		e, ok := g.cache[host]
		g.mu.RUnlock()
		if ok && now.Before(e.expires) {
			return e.addrs, nil
		}
	}
	addrs, err := g.resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("proxy: resolve %s: %w: %w", host, ErrResolve, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("proxy: resolve %s: %w: no addresses", host, ErrResolve)
	}
	for i := range addrs {
		addrs[i] = addrs[i].Unmap()
	}
	if g.cacheTTL > 0 {
		g.mu.Lock()
		if len(g.cache) >= maxDNSCache {
			for k, e := range g.cache {
				if now.After(e.expires) || len(g.cache) >= maxDNSCache {
					delete(g.cache, k)
				}
			}
		}
		g.cache[host] = cacheEntry{addrs: addrs, expires: now.Add(g.cacheTTL)}
		g.mu.Unlock()
	}
	return addrs, nil
}

// dialAddrs connects to the first reachable of the checked addresses.
func (g *guard) dialAddrs(ctx context.Context, addrs []netip.Addr, port uint16) (net.Conn, error) {
	var errs []error
	for _, a := range addrs {
		// Not Dialer.DialTCP: with no local address it still binds the
		// socket to 0.0.0.0:0 first, one system call more per dial.
		c, err := g.dialer.DialContext(ctx, "tcp", netip.AddrPortFrom(a, port).String())
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("proxy: dial: %w", errors.Join(errs...))
}

// DialContext is the upstream transport's dialer: the addresses checked
// for this request (from ctx) when the host matches, otherwise a fresh
// resolve-and-check.
func (g *guard) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, ok := splitTarget(addr, 0)
	if !ok {
		return nil, fmt.Errorf("proxy: dial %q: %w", addr, ErrBadTarget)
	}
	if d, ok := ctx.Value(destKey{}).(*destination); ok && d.host == host && d.port == port {
		return g.dialAddrs(ctx, d.addrs, port)
	}
	addrs, err := g.resolve(ctx, host, port)
	if err != nil {
		return nil, err
	}
	return g.dialAddrs(ctx, addrs, port)
}

// destination is a resolved and checked target carried in a request
// context from the decision to the dial.
type destination struct {
	host  string
	port  uint16
	addrs []netip.Addr
}

type destKey struct{}

// refusedError is a destination the guard will not dial.
type refusedError struct {
	host  string
	class string
}

func (e *refusedError) Error() string {
	return "proxy: destination " + strconv.Quote(e.host) + " refused: " + e.class + " address"
}

func (e *refusedError) Unwrap() error { return ErrDestinationRefused }
