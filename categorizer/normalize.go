package categorizer

import (
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/net/idna"
)

// maxHostLen is the longest DNS name in presentation form without the
// trailing dot.
const maxHostLen = 253

// NormalizeHost returns the canonical form of a host name as the index
// stores it: ASCII lower case, no trailing dot, internationalized labels
// converted to punycode (IDNA 2008 lookup profile). Underscores are
// allowed (they occur in real DNS names); empty labels, labels longer than
// 63 bytes, names longer than 253 bytes and characters outside
// [a-z0-9_-] are rejected with ErrInvalidHost.
func NormalizeHost(s string) (string, error) {
	s = strings.TrimSuffix(s, ".")
	if s == "" {
		return "", fmt.Errorf("%w: empty", ErrInvalidHost)
	}
	if len(s) > 4*maxHostLen {
		// no IDNA mapping brings this under the limit; don't spend on it
		return "", fmt.Errorf("%w: longer than %d bytes", ErrInvalidHost, maxHostLen)
	}
	ascii := true
	lower := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			ascii = false
			break
		}
		if 'A' <= c && c <= 'Z' {
			lower = false
		}
	}
	if !ascii {
		p, err := idna.Lookup.ToASCII(s)
		if err != nil {
			return "", fmt.Errorf("%w: %q: %v", ErrInvalidHost, s, err)
		}
		s = p
	} else if !lower {
		s = strings.ToLower(s)
	}
	if err := checkHost(s); err != nil {
		return "", err
	}
	return s, nil
}

// CanonicalHost returns a destination host the way every adapter hands it
// to policy (policies.Request.Host) and the index looks it up: an IP
// literal (brackets removed, IPv4-mapped IPv6 unmapped) in its canonical
// text form, any other name as NormalizeHost returns it (ASCII lower case,
// no trailing dot, IDN labels in punycode). A name that is not a valid
// host name -- an empty label ("a..b"), a label longer than 63 bytes, a
// name longer than 253 bytes, a character outside [a-z0-9_-] after IDNA
// mapping, an IPv6 zone -- is rejected with an error wrapping
// ErrInvalidHost that says why. The HTTP proxy, the admin lookup API and
// the feed parsers share this one definition; DNS names arrive in wire
// form, whose limits are the same (a name the wire carries is a valid
// host name or has characters escaped). It allocates only for IP
// literals, upper case and IDN input.
func CanonicalHost(s string) (string, error) {
	if a, ok := parseIPLiteral(s); ok {
		return a.String(), nil
	}
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		return "", fmt.Errorf("%w: %q: not an IP address in brackets", ErrInvalidHost, s)
	}
	return NormalizeHost(s)
}

// normalizeHostBytes is NormalizeHost for parser input; it makes exactly
// one string allocation on the common ASCII path.
func normalizeHostBytes(b []byte) (string, error) {
	if len(b) > 0 && b[len(b)-1] == '.' {
		b = b[:len(b)-1]
	}
	for _, c := range b {
		if c >= 0x80 {
			return NormalizeHost(string(b))
		}
	}
	lowerASCII(b) // parser lines are scratch buffers: lower-case in place
	if err := checkHostBytes(b); err != nil {
		return "", err
	}
	return string(b), nil
}

// lowerASCII lower-cases ASCII letters in place.
func lowerASCII(b []byte) {
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
}

// checkHostBytes is checkHost without converting to a string first; the
// error path (rare) allocates.
func checkHostBytes(b []byte) error {
	if len(b) == 0 || len(b) > maxHostLen {
		return checkHost(string(b))
	}
	label := 0
	for _, c := range b {
		switch {
		case c == '.':
			if label == 0 {
				return checkHost(string(b))
			}
			label = 0
			continue
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return checkHost(string(b))
		}
		label++
		if label > 63 {
			return checkHost(string(b))
		}
	}
	if label == 0 {
		return checkHost(string(b))
	}
	return nil
}

// checkHost validates an already lower-cased ASCII name.
func checkHost(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrInvalidHost)
	}
	if len(s) > maxHostLen {
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidHost, maxHostLen)
	}
	label := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if label == 0 {
				return fmt.Errorf("%w: %q: empty label", ErrInvalidHost, s)
			}
			label = 0
			continue
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return fmt.Errorf("%w: %q: character %q not allowed", ErrInvalidHost, s, c)
		}
		label++
		if label > 63 {
			return fmt.Errorf("%w: %q: label longer than 63 bytes", ErrInvalidHost, s)
		}
	}
	if label == 0 {
		return fmt.Errorf("%w: %q: empty label", ErrInvalidHost, s)
	}
	return nil
}

// parseIPLiteral reports whether s is an IP address (optionally in
// brackets), as found in place of a host name.
func parseIPLiteral(s string) (netip.Addr, bool) {
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		s = s[1 : len(s)-1]
	}
	if s == "" {
		return netip.Addr{}, false
	}
	c := s[len(s)-1]
	if !(('0' <= c && c <= '9') || strings.IndexByte(s, ':') >= 0) {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}
