package policies

import (
	"math/bits"
	"strings"

	"github.com/cordon-gw/cordon/categorizer"
)

// maxResolvedGroups bounds how many groups of a Principal that is not in
// the directory Decide considers (the rest are ignored).
const maxResolvedGroups = 64

// who is the request's identity resolved against one compiled policy.
type who struct {
	user   int32
	groups []int32
	loc    int32 // -1 none, -2 not resolved yet
}

const locUnresolved = -2

// resolve identifies r's principal; groups of a principal outside the
// directory are resolved by name into buf.
func (c *Compiled) resolve(r *Request, buf *[maxResolvedGroups]int32) who {
	w := who{user: -1, loc: locUnresolved}
	p := r.Principal
	if p == nil {
		return w
	}
	id := c.id
	if p.gen == id.gen {
		w.user, w.groups = p.userID, p.groups
		if p.locID >= 0 {
			w.loc = p.locID
		}
		return w
	}
	if p.User != "" {
		if u, ok := id.users[p.User]; ok {
			pr := id.userRecs[u].principal
			w.user, w.groups = u, pr.groups
		}
	}
	if w.user < 0 {
		n := 0
		for _, g := range p.Groups {
			if n == len(buf) {
				break
			}
			if gi, ok := id.groups[g]; ok {
				buf[n] = gi
				n++
			}
		}
		w.groups = buf[:n]
	}
	if p.Location != "" {
		if l, ok := id.locByName[p.Location]; ok {
			w.loc = l
		}
	}
	return w
}

// location resolves the request's location lazily: from the principal,
// else from the client address.
func (c *Compiled) location(r *Request, w *who) int32 {
	if w.loc == locUnresolved {
		w.loc = c.id.location(r.ClientIP)
	}
	return w.loc
}

// Decide decides one request against the compiled policy. It is pure (no
// I/O, no clock: schedules use r.Time, and a zero r.Time matches no
// scheduled rule) and allocates nothing.
//
// Rules are tried in order and the first matching rule that is not in
// monitor mode decides; if none matches, the default action applies. A
// monitor-mode rule never changes what is enforced: the first one that
// matches is reported (in RuleID with Monitor set when the enforced
// action is allow, in MonitorRuleID otherwise).
func (c *Compiled) Decide(r *Request, v *categorizer.Verdict) Decision {
	var buf [maxResolvedGroups]int32
	w := c.resolve(r, &buf)

	// Destinations named by domains and lists: one walk over the host's
	// suffixes marks every rule whose entries match, so the rule loop
	// below tests a bit instead of hashing per rule.
	var dm [MaxRules / 64]uint64
	if len(c.domains) > 0 && r.Host != "" {
		c.markHost(r.Host, r.Path, &dm, -1)
	}

	mon, monReason := -1, ReasonRule
	d := Decision{
		Version:        c.version,
		DNSBlock:       c.dnsBlock,
		WarnTTLSeconds: c.warnTTL,
		SafeSearch:     c.safeSearchFor(r, &w),
	}
	var cand [MaxRules / 64]uint64
	c.candidates(&cand, &dm, v, &w)
	for wi := 0; wi < c.ruleWords; wi++ {
		for m := cand[wi]; m != 0; m &= m - 1 {
			i := wi<<6 | bits.TrailingZeros64(m)
			cr := &c.rules[i]
			reason, ok := c.match(cr, i, r, v, &w, &dm)
			if !ok {
				continue
			}
			if cr.monitor {
				if mon < 0 {
					mon, monReason = i, reason
				}
				continue
			}
			d.Action, d.RuleAction, d.RuleID, d.Reason = cr.action, cr.action, cr.id, reason
			d.Match = c.matchName(cr, i, reason, r, v)
			return c.withMonitor(d, mon, monReason, r, v)
		}
	}
	d.Action, d.RuleAction, d.Reason = c.defaultAction, c.defaultAction, ReasonDefault
	return c.withMonitor(d, mon, monReason, r, v)
}

// candidates marks the rules whose "what" (categories, threats, domains,
// lists) and "who" (users, groups) criteria can match; match checks the
// rest.
func (c *Compiled) candidates(cand, dm *[MaxRules / 64]uint64, v *categorizer.Verdict, w *who) {
	n := c.ruleWords
	if c.noWhat != nil {
		copy(cand[:n], c.noWhat)
	}
	for i := 0; i < n; i++ {
		cand[i] |= dm[i]
	}
	for s := uint64(v.Categories); s != 0; s &= s - 1 {
		if m := c.catMask[bits.TrailingZeros64(s)]; m != nil {
			for i := 0; i < n; i++ {
				cand[i] |= m[i]
			}
		}
	}
	for s := uint64(v.Threats); s != 0; s &= s - 1 {
		if m := c.thrMask[bits.TrailingZeros64(s)]; m != nil {
			for i := 0; i < n; i++ {
				cand[i] |= m[i]
			}
		}
	}
	var um []uint64
	if w.user >= 0 && int(w.user) < len(c.userMask) {
		um = c.userMask[w.user]
	}
	for i := 0; i < n; i++ {
		var who uint64
		if c.noWho != nil {
			who = c.noWho[i]
		}
		if um != nil {
			who |= um[i]
		}
		for _, g := range w.groups {
			if int(g) < len(c.groupMask) {
				if m := c.groupMask[g]; m != nil {
					who |= m[i]
				}
			}
		}
		cand[i] &= who
	}
}

func (c *Compiled) withMonitor(d Decision, mon int, reason Reason, r *Request, v *categorizer.Verdict) Decision {
	if mon < 0 {
		return d
	}
	cr := &c.rules[mon]
	if d.Action != ActionAllow {
		d.MonitorRuleID, d.MonitorAction = cr.id, cr.action
		return d
	}
	d.RuleAction, d.RuleID, d.Reason, d.Monitor = cr.action, cr.id, reason, true
	d.Match = c.matchName(cr, mon, reason, r, v)
	return d
}

// match tests one rule, cheapest criteria first.
func (c *Compiled) match(cr *crule, i int, r *Request, v *categorizer.Verdict, w *who, dm *[MaxRules / 64]uint64) (Reason, bool) {
	if cr.protos != 0 && cr.protos&(1<<r.Protocol) == 0 {
		return 0, false
	}
	if cr.hasWho {
		ok := w.user >= 0 && cr.users.has(int(w.user))
		for _, g := range w.groups {
			if ok {
				break
			}
			ok = cr.groups.has(int(g))
		}
		if !ok {
			return 0, false
		}
	}
	if cr.hasWhere {
		ok := false
		if len(cr.locs) > 0 {
			ok = cr.locs.has(int(c.location(r, w)))
		}
		if !ok && len(cr.cidrs) > 0 && r.ClientIP.IsValid() {
			ip := r.ClientIP.Unmap()
			for _, p := range cr.cidrs {
				if p.Contains(ip) {
					ok = true
					break
				}
			}
		}
		if !ok {
			return 0, false
		}
	}
	reason := ReasonRule
	if cr.hasWhat {
		switch {
		case v.Threats != 0 && (cr.threatAny || v.Threats&cr.threats != 0):
			reason = ReasonThreat
		case cr.hasDom && dm[i>>6]&(1<<uint(i&63)) != 0:
			reason = ReasonList
		case v.Categories&cr.cats != 0:
			reason = ReasonCategory
		default:
			return 0, false
		}
	}
	if len(cr.countries) > 0 {
		ok := false
		for _, cc := range cr.countries {
			if cc == v.Country {
				ok = true
				break
			}
		}
		if !ok {
			return 0, false
		}
		if reason == ReasonRule {
			reason = ReasonCountry
		}
	}
	if len(cr.paths) > 0 {
		if pathIndex(cr.paths, r.Path) < 0 {
			return 0, false
		}
		if reason == ReasonRule {
			reason = ReasonPath
		}
	}
	if cr.sched != nil && !cr.sched.active(r) {
		return 0, false
	}
	return reason, true
}

func pathIndex(pats []string, path string) int {
	if path == "" {
		return -1
	}
	for j, p := range pats {
		if globMatch(p, path) {
			return j
		}
	}
	return -1
}

func (s *csched) active(r *Request) bool {
	if r.Time.IsZero() {
		return false
	}
	t := r.Time.In(s.loc)
	if s.days != 0 && s.days&(1<<uint(t.Weekday())) == 0 {
		return false
	}
	if s.allDay {
		return true
	}
	h, m, _ := t.Clock()
	now := h*60 + m
	if s.from < s.to {
		return now >= s.from && now < s.to
	}
	return now >= s.from || now < s.to
}

// maxHostLen bounds the host names Decide lower-cases on the stack
// (DNS names are at most 253 bytes).
const maxHostLen = 256

// markHost runs markDomains on host lower-cased and without a trailing
// dot. Adapters normally pass it so; DNS clients randomize case (0x20),
// so a differently written host is normalized on the stack.
func (c *Compiled) markHost(host, path string, dm *[MaxRules / 64]uint64, only int) string {
	host = strings.TrimSuffix(host, ".")
	clean := true
	for i := 0; i < len(host); i++ {
		if b := host[i]; b >= 'A' && b <= 'Z' {
			clean = false
			break
		}
	}
	if clean || len(host) > maxHostLen {
		return markDomains(c, host, path, dm, only)
	}
	var buf [maxHostLen]byte
	n := copy(buf[:], host)
	for i := 0; i < n; i++ {
		if b := buf[i]; b >= 'A' && b <= 'Z' {
			buf[i] = b + 'a' - 'A'
		}
	}
	return markDomains(c, buf[:n], path, dm, only)
}

// markDomains sets the bit of every rule whose domain or list entries
// match host (and path). With only >= 0, it returns the label of the
// first entry of that rule that matches instead.
func markDomains[S string | []byte](c *Compiled, host S, path string, dm *[MaxRules / 64]uint64, only int) string {
	for pos := 0; ; {
		refs := c.domains[string(host[pos:])]
		for k := range refs {
			ref := &refs[k]
			if ref.sub && pos == 0 {
				continue
			}
			if ref.prefix != "" && !strings.HasPrefix(path, ref.prefix) {
				continue
			}
			if only >= 0 {
				if int(ref.rule) == only {
					return ref.label
				}
				continue
			}
			dm[ref.rule>>6] |= 1 << (ref.rule & 63)
		}
		i := pos
		for i < len(host) && host[i] != '.' {
			i++
		}
		if i == len(host) {
			return ""
		}
		pos = i + 1
	}
}

// matchName names what made rule i match for Decision.Match.
func (c *Compiled) matchName(cr *crule, i int, reason Reason, r *Request, v *categorizer.Verdict) string {
	switch reason {
	case ReasonThreat:
		return c.thrNames[bits.TrailingZeros64(uint64(v.Threats&c.threatMask(cr)))]
	case ReasonCategory:
		return c.catNames[bits.TrailingZeros64(uint64(v.Categories&cr.cats))]
	case ReasonList:
		return c.markHost(r.Host, r.Path, nil, i)
	case ReasonCountry:
		for j, cc := range cr.countries {
			if cc == v.Country {
				return cr.ccNames[j]
			}
		}
	case ReasonPath:
		if j := pathIndex(cr.paths, r.Path); j >= 0 {
			return cr.paths[j]
		}
	}
	return ""
}

func (c *Compiled) threatMask(cr *crule) categorizer.Set {
	if cr.threatAny {
		return ^categorizer.Set(0)
	}
	return cr.threats
}

func (c *Compiled) safeSearchFor(r *Request, w *who) bool {
	ss := &c.safeSearch
	if !ss.enabled {
		return false
	}
	if ss.all {
		return true
	}
	if w.user >= 0 && ss.users.has(int(w.user)) {
		return true
	}
	for _, g := range w.groups {
		if ss.groups.has(int(g)) {
			return true
		}
	}
	return len(ss.locs) > 0 && ss.locs.has(int(c.location(r, w)))
}

// globMatch matches s against a pattern where '*' stands for any run of
// characters (including '/') and every other byte for itself.
func globMatch(pat, s string) bool {
	px, sx := 0, 0
	nextPx, nextSx := -1, -1
	for px < len(pat) || sx < len(s) {
		if px < len(pat) {
			switch ch := pat[px]; ch {
			case '*':
				nextPx, nextSx = px, sx+1
				px++
				continue
			default:
				if sx < len(s) && s[sx] == ch {
					px++
					sx++
					continue
				}
			}
		}
		if nextPx >= 0 && nextSx <= len(s) {
			px, sx = nextPx+1, nextSx
			nextSx++
			continue
		}
		return false
	}
	return true
}
