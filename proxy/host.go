package proxy

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/cordon-gw/cordon/categorizer"
)

// maxHostLen is the longest DNS name accepted.
const maxHostLen = 253

// normalizeHost returns host as policies.Request wants it: lower-case,
// without trailing dot, brackets or port, in punycode; IP literals in
// canonical form. It returns "" for anything that is not a usable host
// name or address. It is categorizer.CanonicalHost, the one normalization
// the admin lookup API and the feed parsers share, so a name is refused
// or rewritten the same way everywhere.
func normalizeHost(host string) string {
	h, err := categorizer.CanonicalHost(host)
	if err != nil {
		return ""
	}
	return h
}

// parseIPMaybe is netip.ParseAddr without its cost for what cannot be an
// address: a name with letters and no colon is refused before parsing
// (a failed ParseAddr allocates its error).
func parseIPMaybe(s string) (netip.Addr, bool) {
	if s == "" {
		return netip.Addr{}, false
	}
	if strings.IndexByte(s, ':') < 0 {
		for i := 0; i < len(s); i++ {
			if c := s[i]; (c < '0' || c > '9') && c != '.' {
				return netip.Addr{}, false
			}
		}
	}
	a, err := netip.ParseAddr(s)
	return a, err == nil
}

// parseIP returns the address host names, or the zero Addr.
func parseIP(host string) netip.Addr {
	a, _ := parseIPMaybe(host)
	return a
}

// splitTarget parses a CONNECT target or URL authority "host:port" (port
// optional, defaultPort used then) into a normalized host and a port.
func splitTarget(hostport string, defaultPort uint16) (host string, port uint16, ok bool) {
	h, p, err := net.SplitHostPort(hostport)
	if err != nil {
		// No port: the whole thing is the host (IPv6 literals must be
		// bracketed to carry a port).
		h, p = hostport, ""
	}
	host = normalizeHost(h)
	if host == "" {
		return "", 0, false
	}
	if p == "" {
		if defaultPort == 0 {
			return "", 0, false
		}
		return host, defaultPort, true
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return "", 0, false
	}
	return host, uint16(n), true
}

// hostInDomains reports whether host equals one of domains or is a
// subdomain of one. Domains are normalized, without a leading dot.
func hostInDomains(host string, domains []string) bool {
	for _, d := range domains {
		if host == d || (len(host) > len(d) && strings.HasSuffix(host, d) && host[len(host)-len(d)-1] == '.') {
			return true
		}
	}
	return false
}

// hostCache remembers how URL authorities split and normalize, so the
// front end turns the host of a repeated authority into a string without
// allocating. Bounded: it starts over when full.
type hostCache struct {
	mu sync.RWMutex
	m  [2]map[string]hostEntry // by default port: 80, 443
}

type hostEntry struct {
	host string
	port uint16
	ok   bool
}

const maxHostCache = 8192

// split is splitTarget for an authority of an http (defPort 80) or https
// (443) URL.
func (c *hostCache) split(authority []byte, defPort uint16) (string, uint16, bool) {
	i := 0
	if defPort == 443 {
		i = 1
	}
	c.mu.RLock()
	e, hit := c.m[i][string(authority)]
	c.mu.RUnlock()
	if hit {
		return e.host, e.port, e.ok
	}
	key := string(authority)
	e.host, e.port, e.ok = splitTarget(key, defPort)
	c.mu.Lock()
	if c.m[i] == nil || len(c.m[i]) >= maxHostCache {
		c.m[i] = make(map[string]hostEntry)
	}
	c.m[i][key] = e
	c.mu.Unlock()
	return e.host, e.port, e.ok
}
