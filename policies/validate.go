package policies

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cordon-gw/cordon/categorizer"
)

// CategoryTable names the categories and threat feeds a policy may refer
// to. *categorizer.Index satisfies it.
type CategoryTable interface {
	CategoryID(name string) (int, bool)
	ThreatID(name string) (int, bool)
}

// ThreatAny in a rule's threats matches any threat feed.
const ThreatAny = "any"

// FieldError is one problem in a policy document: where and why.
type FieldError struct {
	// Line is the source line (1-based), 0 when the policy did not come
	// from YAML.
	Line int `json:"line,omitempty"`
	// Field is the path of the offending field: "rules[3].categories[0]".
	Field string `json:"field"`
	// Message says what is wrong and what was expected.
	Message string `json:"message"`
	// Warning marks problems that do not stop the Engine from serving the
	// policy (an unknown category on an edge with older feeds).
	Warning bool `json:"warning,omitempty"`
}

func (e FieldError) String() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Field, e.Message)
	}
	return e.Field + ": " + e.Message
}

// ValidationError lists every problem found in a policy; it wraps
// ErrInvalidPolicy.
type ValidationError struct {
	Problems []FieldError
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("policies: invalid policy: ")
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// Unwrap makes errors.Is(err, ErrInvalidPolicy) true.
func (e *ValidationError) Unwrap() error { return ErrInvalidPolicy }

// Validate checks p completely: references between users, groups,
// locations, lists and rules; syntax of CIDRs, domains, paths, countries,
// schedules; categories and threat feeds against table (skipped when
// table is nil); duplicate ids; rules that can never match because an
// earlier rule matches everything they would. It returns nil or a
// *ValidationError.
func Validate(p *Policy, table CategoryTable) error {
	probs := check(p, table)
	if len(probs) == 0 {
		return nil
	}
	return &ValidationError{Problems: probs}
}

type checker struct {
	p     *Policy
	table CategoryTable
	probs []FieldError
}

func (c *checker) add(warn bool, field, format string, args ...any) {
	c.probs = append(c.probs, FieldError{Line: c.p.Line(field), Field: field, Message: fmt.Sprintf(format, args...), Warning: warn})
}

func (c *checker) errf(field, format string, args ...any) { c.add(false, field, format, args...) }

// check returns every problem; the ones with Warning set do not prevent
// compilation.
func check(p *Policy, table CategoryTable) []FieldError {
	c := &checker{p: p, table: table}
	s := p.Settings
	if s.DefaultAction != "" {
		if _, ok := ParseAction(s.DefaultAction); !ok {
			c.errf("settings.default_action", "unknown action %q: want allow, block or warn", s.DefaultAction)
		}
	}
	if s.DNSBlockMode != "" {
		if _, ok := ParseDNSBlockMode(s.DNSBlockMode); !ok {
			c.errf("settings.dns_block_mode", "unknown mode %q: want nxdomain, null_ip or sinkhole", s.DNSBlockMode)
		}
	}
	if s.WarnTTL < 0 || time.Duration(s.WarnTTL) > 30*24*time.Hour {
		c.errf("settings.warn_ttl", "%s out of range: want 0 (default 1h) to 720h", s.WarnTTL)
	}
	if s.TimeZone != "" {
		if _, err := time.LoadLocation(s.TimeZone); err != nil {
			c.errf("settings.time_zone", "unknown time zone %q: want an IANA name like Europe/Paris", s.TimeZone)
		}
	}

	for _, k := range []struct {
		kind string
		rs   []Role
	}{{"security", s.Approvals.Security}, {"network", s.Approvals.Network}, {"directory", s.Approvals.Directory}} {
		kind, rs := k.kind, k.rs
		seen := map[Role]bool{}
		for i, r := range rs {
			f := fmt.Sprintf("settings.approvals.%s[%d]", kind, i)
			switch {
			case r != RoleAdmin && r != RoleSecOps && r != RoleNetOps:
				c.errf(f, "role %q cannot approve: want admin, secops or netops", r)
			case seen[r]:
				c.errf(f, "role %q listed twice", r)
			}
			seen[r] = true
		}
	}

	groups := c.names("groups", len(p.Groups), func(i int) string { return p.Groups[i].Name })
	users := c.names("users", len(p.Users), func(i int) string { return p.Users[i].Name })
	locs := c.names("locations", len(p.Locations), func(i int) string { return p.Locations[i].Name })
	lists := c.names("lists", len(p.Lists), func(i int) string { return p.Lists[i].Name })
	listKind := make(map[string]string, len(p.Lists))

	tokens := make(map[string]int)
	for i, u := range p.Users {
		f := fmt.Sprintf("users[%d]", i)
		c.refs(f+".groups", u.Groups, groups, "group")
		if u.PasswordHash != "" {
			if err := checkPasswordHash(u.PasswordHash); err != nil {
				c.errf(f+".password_hash", "%v", err)
			}
		}
		if u.DoHToken != "" {
			if !validToken(u.DoHToken) {
				c.errf(f+".doh_token", "want at least 16 characters of A-Z a-z 0-9 _ -")
			} else if j, dup := tokens[u.DoHToken]; dup {
				c.errf(f+".doh_token", "same token as users[%d] (%s)", j, p.Users[j].Name)
			} else {
				tokens[u.DoHToken] = i
			}
		}
	}
	for i, l := range p.Locations {
		f := fmt.Sprintf("locations[%d]", i)
		if len(l.CIDRs) == 0 {
			c.errf(f+".cidrs", "a location needs at least one CIDR")
		}
		for j, s := range l.CIDRs {
			if _, err := parseCIDR(s); err != nil {
				c.errf(fmt.Sprintf("%s.cidrs[%d]", f, j), "%v", err)
			}
		}
	}
	for i, l := range p.Lists {
		f := fmt.Sprintf("lists[%d]", i)
		switch l.Kind {
		case ListAllow, ListDeny, ListBypass:
			listKind[l.Name] = l.Kind
		case "":
			c.errf(f+".kind", "missing: want allow, deny or bypass")
		default:
			c.errf(f+".kind", "unknown kind %q: want allow, deny or bypass", l.Kind)
		}
		for j, e := range l.Entries {
			if _, err := parseEntry(e); err != nil {
				c.errf(fmt.Sprintf("%s.entries[%d]", f, j), "%v", err)
			}
		}
	}
	ss := p.Settings.SafeSearch
	c.refs("settings.safe_search.users", ss.Users, users, "user")
	c.refs("settings.safe_search.groups", ss.Groups, groups, "group")
	c.refs("settings.safe_search.locations", ss.Locations, locs, "location")

	if len(p.Rules) > MaxRules {
		c.errf("rules", "%d rules: at most %d are allowed", len(p.Rules), MaxRules)
	}
	ids := make(map[string]int, len(p.Rules))
	for i := range p.Rules {
		r := &p.Rules[i]
		f := fmt.Sprintf("rules[%d]", i)
		switch {
		case r.ID == "":
			c.errf(f+".id", "missing: every rule needs an id")
		case !validName(r.ID):
			c.errf(f+".id", "%q: want letters, digits, '.', '_', '-' (at most 128)", r.ID)
		default:
			if j, dup := ids[r.ID]; dup {
				c.errf(f+".id", "duplicate id %q (also rules[%d], line %d)", r.ID, j, p.Line(fmt.Sprintf("rules[%d]", j)))
			} else {
				ids[r.ID] = i
			}
		}
		action, ok := ParseAction(r.Action)
		if !ok {
			if r.Action == "" {
				c.errf(f+".action", "missing: want allow, block or warn")
			} else {
				c.errf(f+".action", "unknown action %q: want allow, block or warn", r.Action)
			}
		}
		c.refs(f+".users", r.Users, users, "user")
		c.refs(f+".groups", r.Groups, groups, "group")
		c.refs(f+".locations", r.Locations, locs, "location")
		c.refs(f+".lists", r.Lists, lists, "list")
		if ok {
			for j, ln := range r.Lists {
				k, known := listKind[ln]
				if !known {
					continue
				}
				if (k == ListDeny) != (action != ActionAllow) {
					c.errf(fmt.Sprintf("%s.lists[%d]", f, j), "list %q is a %s list but the rule's action is %s", ln, k, action)
				}
			}
		}
		for j, s := range r.ClientCIDRs {
			if _, err := parseCIDR(s); err != nil {
				c.errf(fmt.Sprintf("%s.client_cidrs[%d]", f, j), "%v", err)
			}
		}
		for j, n := range r.Categories {
			ff := fmt.Sprintf("%s.categories[%d]", f, j)
			if table != nil {
				if _, ok := table.CategoryID(n); !ok {
					c.add(true, ff, "unknown category %q", n)
				}
			}
			if slices.Index(r.Categories, n) < j {
				c.errf(ff, "category %q listed twice", n)
			}
		}
		for j, n := range r.Threats {
			ff := fmt.Sprintf("%s.threats[%d]", f, j)
			if n == ThreatAny {
				if len(r.Threats) > 1 {
					c.errf(ff, "%q already matches every threat feed; list it alone", ThreatAny)
				}
				continue
			}
			if table != nil {
				if _, ok := table.ThreatID(n); !ok {
					c.add(true, ff, "unknown threat feed %q (or \"any\")", n)
				}
			}
		}
		for j, d := range r.Domains {
			if _, err := parseEntry(d); err != nil {
				c.errf(fmt.Sprintf("%s.domains[%d]", f, j), "%v", err)
			}
		}
		for j, pat := range r.Paths {
			if pat == "" || (pat[0] != '/' && pat[0] != '*') {
				c.errf(fmt.Sprintf("%s.paths[%d]", f, j), "pattern %q must start with '/' or '*'", pat)
			}
		}
		for j, s := range r.Countries {
			if _, ok := categorizer.ParseCountry(s); !ok {
				c.errf(fmt.Sprintf("%s.countries[%d]", f, j), "%q: want an ISO 3166-1 alpha-2 code like \"DE\"", s)
			}
		}
		for j, s := range r.Protocols {
			if _, ok := ParseProtocol(s); !ok {
				c.errf(fmt.Sprintf("%s.protocols[%d]", f, j), "unknown protocol %q: want http, https or dns", s)
			}
		}
		if len(r.Paths) > 0 && len(r.Protocols) > 0 && !slices.ContainsFunc(r.Protocols, func(p string) bool { return p != "dns" }) {
			c.errf(f+".paths", "DNS queries have no path: a rule with paths and only protocol dns can never match")
		}
		if r.Schedule != nil {
			c.schedule(f+".schedule", r.Schedule)
		}
	}
	c.shadows()
	return c.probs
}

func (c *checker) names(kind string, n int, name func(int) string) map[string]bool {
	seen := make(map[string]bool, n)
	for i := 0; i < n; i++ {
		f := fmt.Sprintf("%s[%d].name", kind, i)
		nm := name(i)
		switch {
		case nm == "":
			c.errf(f, "missing")
		case !validName(nm):
			c.errf(f, "%q: want letters, digits, '.', '_', '-', '@' (at most 128)", nm)
		case seen[nm]:
			c.errf(f, "duplicate name %q", nm)
		}
		seen[nm] = true
	}
	return seen
}

func (c *checker) refs(field string, names []string, known map[string]bool, what string) {
	for j, n := range names {
		if !known[n] {
			c.errf(fmt.Sprintf("%s[%d]", field, j), "unknown %s %q", what, n)
		}
	}
}

func (c *checker) schedule(f string, s *Schedule) {
	for j, d := range s.Days {
		if _, ok := parseDay(d); !ok {
			c.errf(fmt.Sprintf("%s.days[%d]", f, j), "unknown day %q: want mon, tue, wed, thu, fri, sat or sun", d)
		}
	}
	if (s.From == "") != (s.To == "") {
		c.errf(f, "give both from and to, or neither")
	}
	if s.From != "" {
		if _, ok := parseClock(s.From); !ok {
			c.errf(f+".from", "%q: want HH:MM", s.From)
		}
	}
	if s.To != "" {
		if _, ok := parseClock(s.To); !ok && s.To != "24:00" {
			c.errf(f+".to", "%q: want HH:MM", s.To)
		}
	}
	if s.From != "" && s.From == s.To {
		c.errf(f, "from and to are equal: the range is empty")
	}
	if s.TimeZone != "" {
		if _, err := time.LoadLocation(s.TimeZone); err != nil {
			c.errf(f+".time_zone", "unknown time zone %q: want an IANA name like Europe/Paris", s.TimeZone)
		}
	}
}

// shadows reports rules that can never match because an earlier enforcing
// rule (not in monitor mode) matches every request they would.
func (c *checker) shadows() {
	rs := c.p.Rules
	for j := 1; j < len(rs) && j <= MaxRules; j++ {
		for i := 0; i < j; i++ {
			if covers(&rs[i], &rs[j]) {
				at := ""
				if l := c.p.Line(fmt.Sprintf("rules[%d]", i)); l > 0 {
					at = fmt.Sprintf(" (line %d)", l)
				}
				c.errf(fmt.Sprintf("rules[%d]", j), "rule %q can never match: earlier rule %q%s matches every request it would",
					rs[j].ID, rs[i].ID, at)
				break
			}
		}
	}
}

// covers reports whether every request matching b also matches a, judged
// on the rule text alone (conservative: false when unsure).
func covers(a, b *Rule) bool {
	if a.Monitor {
		return false
	}
	if a.Schedule != nil && (b.Schedule == nil || !sameSchedule(a.Schedule, b.Schedule)) {
		return false
	}
	// who: users or groups.
	if len(a.Users)+len(a.Groups) > 0 {
		if len(b.Users)+len(b.Groups) == 0 || !subset(b.Users, a.Users) || !subset(b.Groups, a.Groups) {
			return false
		}
	}
	// where: locations or client networks.
	if len(a.Locations)+len(a.ClientCIDRs) > 0 {
		if len(b.Locations)+len(b.ClientCIDRs) == 0 || !subset(b.Locations, a.Locations) || !cidrSubset(b.ClientCIDRs, a.ClientCIDRs) {
			return false
		}
	}
	// what: categories, threats, domains, lists.
	if len(a.Categories)+len(a.Threats)+len(a.Domains)+len(a.Lists) > 0 {
		if len(b.Categories)+len(b.Threats)+len(b.Domains)+len(b.Lists) == 0 ||
			!subset(b.Categories, a.Categories) || !subset(b.Domains, a.Domains) || !subset(b.Lists, a.Lists) {
			return false
		}
		if len(b.Threats) > 0 && !slices.Contains(a.Threats, ThreatAny) && !subset(b.Threats, a.Threats) {
			return false
		}
	}
	for _, pair := range [][2][]string{{a.Paths, b.Paths}, {a.Countries, b.Countries}, {a.Protocols, b.Protocols}} {
		if len(pair[0]) > 0 && (len(pair[1]) == 0 || !subset(pair[1], pair[0])) {
			return false
		}
	}
	return true
}

func sameSchedule(a, b *Schedule) bool {
	return slices.Equal(a.Days, b.Days) && a.From == b.From && a.To == b.To && a.TimeZone == b.TimeZone
}

// cidrSubset reports whether every network of small lies inside a
// network of big (unparsable entries count as not covered).
func cidrSubset(small, big []string) bool {
	for _, s := range small {
		p, err := parseCIDR(s)
		if err != nil {
			return false
		}
		ok := false
		for _, b := range big {
			q, err := parseCIDR(b)
			if err == nil && q.Addr().Is4() == p.Addr().Is4() && q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// subset reports whether every element of small is in big.
func subset(small, big []string) bool {
	for _, s := range small {
		if !slices.Contains(big, s) {
			return false
		}
	}
	return true
}

func validName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		ok := b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' ||
			i > 0 && (b == '.' || b == '_' || b == '-' || b == '@')
		if !ok {
			return false
		}
	}
	return true
}

func validToken(s string) bool {
	if len(s) < 16 || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' || b == '-') {
			return false
		}
	}
	return true
}

// parseCIDR accepts a prefix ("10.1.0.0/16") or a single address.
func parseCIDR(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad CIDR %q: want an address/prefix length like 10.1.0.0/16", s)
		}
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("bad CIDR %q: host bits set, did you mean %s", s, p.Masked())
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad CIDR %q: want an address/prefix length like 10.1.0.0/16", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

var dayNames = [...]string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

func parseDay(s string) (time.Weekday, bool) {
	s = strings.ToLower(s)
	for i, d := range dayNames {
		if s == d {
			return time.Weekday(i), true
		}
	}
	return 0, false
}

// parseClock reads "HH:MM" into minutes after midnight; "24:00" is 1440.
func parseClock(s string) (int, bool) {
	if len(s) != 5 || s[2] != ':' {
		return 0, false
	}
	h, err1 := strconv.Atoi(s[:2])
	m, err2 := strconv.Atoi(s[3:])
	if err1 != nil || err2 != nil || m < 0 || m > 59 || h < 0 || h > 24 || (h == 24 && m != 0) {
		return 0, false
	}
	return h*60 + m, true
}

// entry is one parsed list or domain entry.
type entry struct {
	host   string // lower-case, no trailing dot
	sub    bool   // "*.host": subdomains only
	prefix string // URL path prefix ("/path"), "" for whole host
}

// parseEntry reads "example.com", "*.example.com" or "example.com/path"
// (an http:// or https:// scheme in front is ignored).
func parseEntry(s string) (entry, error) {
	orig := s
	s = strings.TrimSpace(s)
	if rest, ok := strings.CutPrefix(strings.ToLower(s), "https://"); ok {
		s = s[len(s)-len(rest):]
	} else if rest, ok := strings.CutPrefix(strings.ToLower(s), "http://"); ok {
		s = s[len(s)-len(rest):]
	}
	var e entry
	if i := strings.IndexByte(s, '/'); i >= 0 {
		e.prefix = s[i:]
		s = s[:i]
	}
	if rest, ok := strings.CutPrefix(s, "*."); ok {
		e.sub = true
		s = rest
	}
	s = strings.TrimSuffix(strings.ToLower(s), ".")
	if !validHost(s) {
		return entry{}, fmt.Errorf("bad entry %q: want example.com, *.example.com or example.com/path", orig)
	}
	if e.sub && e.prefix != "" {
		return entry{}, fmt.Errorf("bad entry %q: a wildcard entry cannot have a path", orig)
	}
	e.host = s
	return e, nil
}

func validHost(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	label := 0
	for i := 0; i < len(s); i++ {
		b := s[i]
		switch {
		case b == '.':
			if label == 0 {
				return false
			}
			label = 0
		case b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '-' || b == '_':
			label++
			if label > 63 {
				return false
			}
		default:
			return false
		}
	}
	return label > 0
}
