package proxy

import (
	"net"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/net/idna"
)

// maxHostLen is the longest DNS name accepted.
const maxHostLen = 253

// normalizeHost returns host as policies.Request wants it: lower-case,
// without trailing dot, brackets or port, in punycode. IP literals come
// back in canonical form. It returns "" for anything that is not a usable
// host name or address.
func normalizeHost(host string) string {
	if host == "" {
		return ""
	}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return ""
		}
		return a.Unmap().String()
	}
	host = strings.TrimSuffix(host, ".")
	if host == "" || len(host) > maxHostLen {
		return ""
	}
	ascii := true
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '.', c == '_':
		case c >= 'A' && c <= 'Z':
		case c >= 0x80:
			ascii = false
		default:
			return ""
		}
	}
	if !ascii {
		p, err := idna.Lookup.ToASCII(host)
		if err != nil {
			return ""
		}
		host = p
	}
	host = strings.ToLower(host)
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 {
			return ""
		}
	}
	return host
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
