package categorizer

import (
	"bytes"
	"encoding/csv"
	"errors"
	"net/netip"
	"strings"
)

var (
	errNoName      = errors.New("no host name after the address")
	errBadAddress  = errors.New("first field is not an IP address")
	errBadAdblock  = errors.New("malformed ||domain^ rule")
	errBadDnsmasq  = errors.New("expected server=/domain/ or address=/domain/...")
	errBadURL      = errors.New("malformed URL")
	errBadIP       = errors.New("not an IP address or CIDR")
	errBadWildcard = errors.New("wildcard only allowed as a leading *.")
)

// localNames are hosts-file names that configure the machine itself and
// must never be read as blocks.
var localNames = map[string]bool{
	"localhost": true, "localhost.localdomain": true, "local": true,
	"broadcasthost": true, "ip6-localhost": true, "ip6-loopback": true,
	"ip6-localnet": true, "ip6-mcastprefix": true, "ip6-allnodes": true,
	"ip6-allrouters": true, "ip6-allhosts": true, "0.0.0.0": true,
}

// fields splits on spaces and tabs without allocating more than the slice.
func fields(line []byte, dst [][]byte) [][]byte {
	dst = dst[:0]
	for len(line) > 0 {
		i := 0
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		line = line[i:]
		if len(line) == 0 {
			break
		}
		j := 0
		for j < len(line) && line[j] != ' ' && line[j] != '\t' {
			j++
		}
		dst = append(dst, line[:j])
		line = line[j:]
	}
	return dst
}

func (p *lineParser) hosts(line []byte) {
	if isComment(line, "#") {
		p.stats.Ignored++
		return
	}
	body := cutComment(line)
	var buf [8][]byte
	f := fields(body, buf[:0])
	if len(f) == 0 {
		p.stats.Ignored++
		return
	}
	addr := string(f[0])
	if i := strings.IndexByte(addr, '%'); i >= 0 { // fe80::1%lo0
		addr = addr[:i]
	}
	if _, err := netip.ParseAddr(addr); err != nil {
		p.bad(line, errBadAddress)
		return
	}
	if len(f) == 1 {
		p.bad(line, errNoName)
		return
	}
	for _, name := range f[1:] {
		lowerASCII(name)
		if localNames[string(bytes.TrimSuffix(name, []byte(".")))] {
			p.stats.Ignored++
			continue
		}
		if mayBeIP(name) {
			if _, ok := parseIPLiteral(string(name)); ok {
				p.stats.Ignored++ // "0.0.0.0 0.0.0.0" style self-mappings
				continue
			}
		}
		p.addDomain(line, name, false, false)
	}
}

// domainToken validates an optional leading "*." and returns the name.
func domainToken(name []byte) (rest []byte, wildcard bool, err error) {
	if bytes.HasPrefix(name, []byte("*.")) {
		name, wildcard = name[2:], true
	}
	if bytes.IndexByte(name, '*') >= 0 {
		return nil, false, errBadWildcard
	}
	return name, wildcard, nil
}

func (p *lineParser) domains(line []byte) {
	if isComment(line, "#!;") {
		p.stats.Ignored++
		return
	}
	body := cutComment(line)
	var buf [4][]byte
	f := fields(body, buf[:0])
	if len(f) == 0 {
		p.stats.Ignored++
		return
	}
	if len(f) > 1 {
		// "0.0.0.0 example.com" in a domain list: read it as hosts syntax.
		if _, err := netip.ParseAddr(string(f[0])); err == nil {
			p.hosts(line)
			return
		}
		p.bad(line, errors.New("more than one field"))
		return
	}
	name, wild, err := domainToken(f[0])
	if err != nil {
		p.bad(line, err)
		return
	}
	if !wild && len(name) > 1 && name[0] == '.' {
		name = name[1:] // ".example.com": squid dstdomain syntax for the domain and its subdomains
	}
	p.addDomain(line, name, wild, false)
}

func (p *lineParser) adblock(line []byte) {
	if len(line) == 0 || line[0] == '!' || line[0] == '[' || (line[0] == '#' && !bytes.HasPrefix(line, []byte("##"))) {
		p.stats.Ignored++
		return
	}
	exception := false
	rule := line
	if bytes.HasPrefix(rule, []byte("@@")) {
		exception, rule = true, rule[2:]
	}
	if !bytes.HasPrefix(rule, []byte("||")) {
		p.stats.Skipped++ // regex, unanchored, cosmetic, plain-text rules
		return
	}
	rule = rule[2:]
	caret := bytes.IndexByte(rule, '^')
	if caret < 0 {
		p.stats.Skipped++ // "||name" without ^ is a URL-prefix pattern, not a domain rule
		return
	}
	name, tail := rule[:caret], rule[caret+1:]
	tail = bytes.TrimPrefix(tail, []byte("|")) // "^|" anchors the end: the same for a host name
	if len(tail) > 0 {
		if tail[0] != '$' {
			p.stats.Skipped++ // "||name^/path" or "||name^*..."
			return
		}
		for _, m := range bytes.Split(tail[1:], []byte(",")) {
			if string(m) != "important" {
				p.stats.Skipped++ // $third-party, $badfilter, $dnstype, $client...: not applicable as a plain DNS rule
				return
			}
		}
	}
	if bytes.ContainsAny(name, "/:?=&|$") {
		p.stats.Skipped++
		return
	}
	if len(name) == 0 {
		p.bad(line, errBadAdblock)
		return
	}
	host, wild, err := domainToken(name)
	if err != nil {
		p.stats.Skipped++ // "||ads*.example.com^": a pattern, not a domain
		return
	}
	if _, ok := parseIPLiteral(string(host)); ok && (exception || wild) {
		p.stats.Skipped++
		return
	}
	p.addDomain(line, host, wild, exception)
}

func (p *lineParser) dnsmasq(line []byte) {
	if isComment(line, "#") {
		p.stats.Ignored++
		return
	}
	var rest []byte
	switch {
	case bytes.HasPrefix(line, []byte("server=/")):
		rest = line[len("server=/"):]
	case bytes.HasPrefix(line, []byte("address=/")):
		rest = line[len("address=/"):]
	case bytes.HasPrefix(line, []byte("local=/")):
		rest = line[len("local=/"):]
	default:
		p.bad(line, errBadDnsmasq)
		return
	}
	end := bytes.LastIndexByte(rest, '/')
	if end <= 0 {
		p.bad(line, errBadDnsmasq)
		return
	}
	// server=/a.com/b.com/ lists several names.
	for _, name := range bytes.Split(rest[:end], []byte("/")) {
		p.addDomain(line, name, false, false)
	}
}

func (p *lineParser) urls(line []byte) {
	if isComment(line, "#!;") {
		p.stats.Ignored++
		return
	}
	raw := line
	if looksCSV(line) {
		u, ok := csvField(line, func(f string) bool { return strings.Contains(f, "://") })
		if !ok {
			if !p.csvSeen {
				p.csvSeen = true
				p.stats.Ignored++ // header row
				return
			}
			p.bad(raw, errBadURL)
			return
		}
		p.csvSeen = true
		line = []byte(u)
	}
	if bytes.IndexByte(line, ' ') >= 0 || bytes.IndexByte(line, '\t') >= 0 {
		p.bad(raw, errBadURL)
		return
	}
	host, path, err := splitURL(string(line))
	if err != nil {
		p.bad(raw, err)
		return
	}
	if path == "" || path == "/" {
		p.addDomain(raw, []byte(host), false, false)
		return
	}
	if a, ok := parseIPLiteral(host); ok {
		host = a.String()
	} else {
		h, err := normalizeHostBytes([]byte(host))
		if err != nil {
			p.bad(raw, err)
			return
		}
		host = h
	}
	p.put(Entry{Kind: KindURL, Host: host, Path: path})
}

// looksCSV reports a CSV row: quoted, or a first field without "/" before
// a comma (URLhaus CSV starts with a date), not "host/path,with,commas".
func looksCSV(line []byte) bool {
	if line[0] == '"' {
		return true
	}
	i := bytes.IndexByte(line, ',')
	return i >= 0 && bytes.IndexByte(line[:i], '/') < 0 && bytes.Contains(line[i:], []byte("://"))
}

// splitURL turns "scheme://user@host:port/path?q#frag" or "host/path"
// into the host and the path (with query, without fragment).
func splitURL(s string) (host, path string, err error) {
	if i := strings.Index(s, "://"); i >= 0 {
		scheme := strings.ToLower(s[:i])
		if scheme != "http" && scheme != "https" && scheme != "ftp" {
			return "", "", errBadURL
		}
		s = s[i+3:]
	}
	if i := strings.IndexByte(s, '#'); i >= 0 {
		s = s[:i]
	}
	end := strings.IndexAny(s, "/?")
	authority := s
	if end >= 0 {
		authority, path = s[:end], s[end:]
		if path[0] == '?' {
			path = "/" + path
		}
	}
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		authority = authority[i+1:]
	}
	host = authority
	if strings.HasPrefix(host, "[") {
		j := strings.IndexByte(host, ']')
		if j < 0 {
			return "", "", errBadURL
		}
		host = host[:j+1]
	} else if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	if host == "" {
		return "", "", errBadURL
	}
	return host, path, nil
}

// csvField parses one CSV line and returns the first field accepted by ok.
func csvField(line []byte, ok func(string) bool) (string, bool) {
	r := csv.NewReader(bytes.NewReader(line))
	r.LazyQuotes = true
	r.FieldsPerRecord = -1
	rec, err := r.Read()
	if err != nil {
		return "", false
	}
	for _, f := range rec {
		f = strings.TrimSpace(f)
		if ok(f) {
			return f, true
		}
	}
	return "", false
}

func (p *lineParser) ips(line []byte) {
	if isComment(line, "#;") {
		p.stats.Ignored++
		return
	}
	raw := line
	if line[0] == '"' || bytes.IndexByte(line, ',') >= 0 {
		f, ok := csvField(line, func(f string) bool { _, err := parsePrefix(f); return err == nil })
		if !ok {
			if !p.csvSeen {
				p.csvSeen = true
				p.stats.Ignored++ // header row
				return
			}
			p.bad(raw, errBadIP)
			return
		}
		p.csvSeen = true
		line = []byte(f)
	}
	// "1.4.0.0/17 ; SBL256893", "1.2.3.4<TAB>10", "1.2.3.4 # note"
	end := bytes.IndexAny(line, " \t;#")
	if end >= 0 {
		line = line[:end]
	}
	if bytes.HasPrefix(line, []byte("AS")) {
		p.stats.Skipped++ // ASN-DROP lines: ASNs are not IP prefixes
		return
	}
	pfx, err := parsePrefix(string(line))
	if err != nil {
		p.bad(raw, errBadIP)
		return
	}
	p.put(Entry{Kind: KindCIDR, Prefix: pfx})
}

// parsePrefix accepts an address or a CIDR and returns the masked prefix.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.IndexByte(s, '/') >= 0 {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if pfx.Addr().Is4In6() {
			a := pfx.Addr().Unmap()
			bits := pfx.Bits() - 96
			if bits < 0 {
				return netip.Prefix{}, errBadIP
			}
			pfx = netip.PrefixFrom(a, bits)
		}
		return pfx.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a.Zone() != "" {
		return netip.Prefix{}, errBadIP
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
