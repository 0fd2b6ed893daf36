package proxy

import (
	"net"
	"strconv"
	"strings"

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
