package categorizer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
)

// Format names a feed file syntax.
type Format string

// Feed formats understood by Parse and the Syncer.
const (
	// FormatHosts is /etc/hosts syntax: "<ip> <name> [<name>...]" with #
	// comments; loopback and broadcast names (localhost, ...) are ignored.
	FormatHosts Format = "hosts"
	// FormatDomains is one domain per line; "*.example.com" lists only
	// the subdomains of example.com. #, ! and ; start comments.
	FormatDomains Format = "domains"
	// FormatAdblock is AdBlock/AdGuard DNS syntax: "||example.com^" blocks
	// the name and its subdomains, "@@||example.com^" is an exception.
	// $important is accepted; every other rule type (regex, unanchored,
	// path, other $modifiers, cosmetic) is skipped and counted.
	FormatAdblock Format = "adblock"
	// FormatDnsmasq is dnsmasq syntax: "server=/example.com/" or
	// "address=/example.com/0.0.0.0".
	FormatDnsmasq Format = "dnsmasq"
	// FormatURLs is one URL per line, with or without scheme
	// (URLhaus/OpenPhish text, UT1 urls files), or URLhaus CSV rows; a URL
	// with a path lists that path prefix under that exact host, a URL
	// without a path lists the whole host.
	FormatURLs Format = "urls"
	// FormatIPs is one IP address or CIDR per line (plain, Spamhaus DROP
	// "CIDR ; SBL..." and its mirrors, ipsum "ip<TAB>count", Feodo CSV).
	FormatIPs Format = "ips"
	// FormatUT1 is a UT1 directory: one sub-directory per category with
	// "domains" and "urls" files. It is read with ParseUT1, not Parse.
	FormatUT1 Format = "ut1"
)

// Formats lists every format, for config validation and help texts.
var Formats = []Format{FormatHosts, FormatDomains, FormatAdblock, FormatDnsmasq, FormatURLs, FormatIPs, FormatUT1}

// Valid reports whether f is a known format.
func (f Format) Valid() bool {
	for _, g := range Formats {
		if f == g {
			return true
		}
	}
	return false
}

// EntryKind says what an Entry matches.
type EntryKind uint8

// Entry kinds.
const (
	KindDomain EntryKind = iota + 1 // a domain and (unless Wildcard) its subdomains
	KindURL                         // a path prefix under one exact host
	KindCIDR                        // an IP prefix
)

func (k EntryKind) String() string {
	switch k {
	case KindDomain:
		return "domain"
	case KindURL:
		return "url"
	case KindCIDR:
		return "cidr"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Entry is one parsed feed line.
type Entry struct {
	Kind EntryKind
	// Host is the normalized name (KindDomain, KindURL); for KindURL it may
	// be an IP literal.
	Host string
	// Path is the path prefix of a KindURL entry, starting with "/"; it
	// may include a query string.
	Path string
	// Prefix is the network of a KindCIDR entry (a single address is a /32
	// or /128).
	Prefix netip.Prefix
	// Wildcard marks "*.example.com": only subdomains match, not the name.
	Wildcard bool
	// Exception marks an allow rule ("@@||example.com^"): the feed's
	// verdict is removed for the name and all its subdomains.
	Exception bool
	// Category, when set, replaces the feed's categories for this entry
	// (UT1 directories give each sub-directory its own category).
	Category string
	// Line is the 1-based line number in the source file.
	Line int
}

// MaxLineErrors is how many invalid lines ParseStats keeps verbatim; the
// rest are only counted.
const MaxLineErrors = 50

// ParseStats counts what a parser read.
type ParseStats struct {
	Lines   int         `json:"lines"`   // lines read
	Entries int         `json:"entries"` // entries emitted
	Skipped int         `json:"skipped"` // valid rules of a kind this package does not apply (counted, never misread)
	Ignored int         `json:"ignored"` // comments, blank lines, headers, localhost entries
	Invalid int         `json:"invalid"` // malformed lines
	Errors  []LineError `json:"-"`       // the first MaxLineErrors invalid lines
}

// Add merges o into s (for multi-file feeds).
func (s *ParseStats) Add(o ParseStats) {
	s.Lines += o.Lines
	s.Entries += o.Entries
	s.Skipped += o.Skipped
	s.Ignored += o.Ignored
	s.Invalid += o.Invalid
	for _, e := range o.Errors {
		if len(s.Errors) >= MaxLineErrors {
			break
		}
		s.Errors = append(s.Errors, e)
	}
}

// Err joins the kept line errors, or returns nil when every line was valid.
func (s *ParseStats) Err() error {
	if s.Invalid == 0 {
		return nil
	}
	errs := make([]error, 0, len(s.Errors)+1)
	for i := range s.Errors {
		errs = append(errs, &s.Errors[i])
	}
	if s.Invalid > len(s.Errors) {
		errs = append(errs, fmt.Errorf("and %d more invalid lines", s.Invalid-len(s.Errors)))
	}
	return errors.Join(errs...)
}

func (s *ParseStats) invalid(file string, line int, text []byte, err error) {
	s.Invalid++
	if len(s.Errors) < MaxLineErrors {
		if len(text) > 120 {
			text = text[:120]
		}
		s.Errors = append(s.Errors, LineError{File: file, Line: line, Text: string(text), Err: err})
	}
}

// Parse reads one feed file of the given format and calls emit for every
// entry. Invalid lines are counted in the stats with their line numbers
// and never stop the parse; the error is only for reading failures and
// formats that are not single files (FormatUT1).
func Parse(f Format, file string, r io.Reader, emit func(Entry)) (ParseStats, error) {
	var lineFn func(p *lineParser, line []byte)
	switch f {
	case FormatHosts:
		lineFn = (*lineParser).hosts
	case FormatDomains:
		lineFn = (*lineParser).domains
	case FormatAdblock:
		lineFn = (*lineParser).adblock
	case FormatDnsmasq:
		lineFn = (*lineParser).dnsmasq
	case FormatURLs:
		lineFn = (*lineParser).urls
	case FormatIPs:
		lineFn = (*lineParser).ips
	default:
		return ParseStats{}, fmt.Errorf("categorizer: parse %s: %w %q", file, ErrUnknownFormat, f)
	}
	p := &lineParser{file: file, emit: emit}
	err := p.run(r, lineFn)
	return p.stats, err
}

// ParseHosts parses hosts-file syntax (see FormatHosts).
func ParseHosts(file string, r io.Reader, emit func(Entry)) (ParseStats, error) {
	return Parse(FormatHosts, file, r, emit)
}

// ParseDomains parses one domain per line (see FormatDomains).
func ParseDomains(file string, r io.Reader, emit func(Entry)) (ParseStats, error) {
	return Parse(FormatDomains, file, r, emit)
}

// ParseAdblock parses AdBlock/AdGuard DNS rules (see FormatAdblock).
func ParseAdblock(file string, r io.Reader, emit func(Entry)) (ParseStats, error) {
	return Parse(FormatAdblock, file, r, emit)
}

// ParseDnsmasq parses dnsmasq server=/address= lines (see FormatDnsmasq).
func ParseDnsmasq(file string, r io.Reader, emit func(Entry)) (ParseStats, error) {
	return Parse(FormatDnsmasq, file, r, emit)
}

// ParseURLs parses URL lists (see FormatURLs).
func ParseURLs(file string, r io.Reader, emit func(Entry)) (ParseStats, error) {
	return Parse(FormatURLs, file, r, emit)
}

// ParseIPs parses IP and CIDR lists (see FormatIPs).
func ParseIPs(file string, r io.Reader, emit func(Entry)) (ParseStats, error) {
	return Parse(FormatIPs, file, r, emit)
}

// lineParser holds the state of one parse.
type lineParser struct {
	file     string
	line     int
	category string
	stats    ParseStats
	emit     func(Entry)
	csvSeen  bool // a CSV header or row was seen (ips, urls)
}

// maxLine bounds one line; longer lines are reported invalid and skipped.
const maxLine = 64 << 10

var errLineTooLong = fmt.Errorf("line longer than %d bytes", maxLine)

func (p *lineParser) run(r io.Reader, fn func(*lineParser, []byte)) error {
	br := bufio.NewReaderSize(r, maxLine)
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			p.line++
			p.stats.Lines++
			p.stats.invalid(p.file, p.line, line, errLineTooLong)
			for err == bufio.ErrBufferFull {
				_, err = br.ReadSlice('\n')
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return fmt.Errorf("categorizer: read %s line %d: %w", p.file, p.line, err)
			}
			continue
		}
		if len(line) > 0 {
			p.line++
			p.stats.Lines++
			if p.line == 1 {
				line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf")) // UTF-8 BOM
			}
			fn(p, bytes.TrimSpace(line))
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("categorizer: read %s line %d: %w", p.file, p.line, err)
		}
	}
}

func (p *lineParser) put(e Entry) {
	e.Line = p.line
	if p.category != "" {
		e.Category = p.category
	}
	p.stats.Entries++
	if p.emit != nil {
		p.emit(e)
	}
}

func (p *lineParser) bad(line []byte, err error) { p.stats.invalid(p.file, p.line, line, err) }

// isComment reports blank lines and lines starting with a comment mark.
func isComment(line []byte, marks string) bool {
	return len(line) == 0 || bytes.IndexByte([]byte(marks), line[0]) >= 0
}

// cutComment drops a trailing " # comment".
func cutComment(line []byte) []byte {
	if i := bytes.IndexByte(line, '#'); i >= 0 {
		line = bytes.TrimSpace(line[:i])
	}
	return line
}

// mayBeIP is the cheap pre-check of parseIPLiteral on bytes.
func mayBeIP(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	c := b[len(b)-1]
	return '0' <= c && c <= '9' || c == ']' || bytes.IndexByte(b, ':') >= 0
}

// addDomain emits a domain entry (or a /32, /128 for an IP literal).
func (p *lineParser) addDomain(line, name []byte, wildcard, exception bool) {
	if !mayBeIP(name) {
		// fast path: not an address
	} else if a, ok := parseIPLiteral(string(name)); ok && !wildcard {
		p.put(Entry{Kind: KindCIDR, Prefix: netip.PrefixFrom(a, a.BitLen()), Exception: exception})
		return
	}
	host, err := normalizeHostBytes(name)
	if err != nil {
		p.bad(line, err)
		return
	}
	p.put(Entry{Kind: KindDomain, Host: host, Wildcard: wildcard, Exception: exception})
}
