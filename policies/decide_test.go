package policies

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cordon-gw/cordon/categorizer"
)

// table is a fixed category table for tests: categories by position,
// threat feeds by position.
type table struct {
	cats, threats []string
	hosts         map[string]categorizer.Verdict
}

func newTable() *table {
	return &table{
		cats:    []string{"newly_seen", "adult", "gambling", "social", "news", "finance", "malware"},
		threats: []string{"urlhaus", "phishtank"},
		hosts:   map[string]categorizer.Verdict{},
	}
}

func (t *table) CategoryID(n string) (int, bool) {
	for i, c := range t.cats {
		if c == n {
			return i, true
		}
	}
	return 0, false
}

func (t *table) ThreatID(n string) (int, bool) {
	for i, c := range t.threats {
		if c == n {
			return i, true
		}
	}
	return 0, false
}
func (t *table) CategoryNames() []string { return t.cats }
func (t *table) ThreatNames() []string   { return t.threats }

// Lookup walks the host's suffixes like the real index does for domain
// entries.
func (t *table) Lookup(host, _ string, _ netip.Addr) categorizer.Verdict {
	for {
		if v, ok := t.hosts[host]; ok {
			return v
		}
		i := strings.IndexByte(host, '.')
		if i < 0 {
			return categorizer.Verdict{}
		}
		host = host[i+1:]
	}
}

func (t *table) set(host string, cats []string, threats []string) {
	var v categorizer.Verdict
	for _, c := range cats {
		id, _ := t.CategoryID(c)
		v.Categories = v.Categories.With(id)
	}
	for _, c := range threats {
		id, _ := t.ThreatID(c)
		v.Threats = v.Threats.With(id)
	}
	t.hosts[host] = v
}

const testPolicy = `
settings:
  default_action: allow
  dns_block_mode: sinkhole
  warn_ttl: 30m
  time_zone: Europe/Paris
  safe_search:
    enabled: true
    groups: [kids]
groups:
  - name: staff
  - name: kids
  - name: secops
users:
  - name: alice
    groups: [staff, secops]
  - name: bob
    groups: [kids]
    doh_token: bobs-token-0123456789
locations:
  - name: paris
    cidrs: [10.1.0.0/16]
  - name: paris-lab
    cidrs: [10.1.2.0/24]
lists:
  - name: corp-allow
    kind: allow
    entries: [intranet.example, "*.partner.example"]
  - name: blocked-downloads
    kind: deny
    entries: ["files.example/downloads/", badsite.example]
rules:
  - id: allow-corp
    lists: [corp-allow]
    action: allow
  - id: threats
    threats: [any]
    action: block
  - id: try-social
    categories: [social]
    action: block
    monitor: true
  - id: kids-gambling
    groups: [kids]
    categories: [gambling, adult]
    action: block
  - id: lab-news
    locations: [paris-lab]
    categories: [news]
    action: warn
  - id: downloads
    lists: [blocked-downloads]
    action: block
  - id: exe
    paths: ["*.exe"]
    protocols: [http, https]
    action: block
  - id: country
    countries: [KP]
    action: block
  - id: night
    users: [alice]
    schedule: {days: [sat, sun], from: "22:00", to: "06:00"}
    action: block
  - id: default-finance-warn
    client_cidrs: [192.0.2.0/24]
    categories: [finance]
    action: warn
`

func mustCompile(t testing.TB, src string, tb *table) *Compiled {
	t.Helper()
	p, err := Parse([]byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if err := Validate(p, tb); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	c, err := Compile(p, 7, tb)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return c
}

func TestDecide(t *testing.T) {
	tb := newTable()
	tb.set("casino.example", []string{"gambling"}, nil)
	tb.set("social.example", []string{"social"}, nil)
	tb.set("evil.example", nil, []string{"phishtank"})
	tb.set("news.example", []string{"news"}, nil)
	tb.set("bank.example", []string{"finance"}, nil)
	c := mustCompile(t, testPolicy, tb)
	id := c.id
	alice := id.userRecs[id.users["alice"]].principal
	bob := id.userRecs[id.users["bob"]].principal
	stranger := &Principal{User: "carol", Groups: []string{"kids"}} // not in the directory: groups by name
	sat23 := time.Date(2026, 11, 21, 23, 0, 0, 0, time.FixedZone("CET", 3600))
	mon10 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	kp, _ := categorizer.ParseCountry("KP")

	tests := []struct {
		name    string
		r       Request
		country categorizer.Country
		want    Decision
	}{
		{"default allow", Request{Host: "example.org", Time: mon10}, categorizer.Country{},
			Decision{Action: ActionAllow, RuleAction: ActionAllow, Reason: ReasonDefault}},
		{"allow list beats threat", Request{Host: "intranet.example", Time: mon10}, categorizer.Country{},
			Decision{Action: ActionAllow, RuleAction: ActionAllow, RuleID: "allow-corp", Reason: ReasonList, Match: "corp-allow"}},
		{"wildcard matches subdomain only", Request{Host: "a.partner.example", Time: mon10}, categorizer.Country{},
			Decision{Action: ActionAllow, RuleAction: ActionAllow, RuleID: "allow-corp", Reason: ReasonList, Match: "corp-allow"}},
		{"threat any", Request{Host: "www.evil.example", Time: mon10}, categorizer.Country{},
			Decision{Action: ActionBlock, RuleAction: ActionBlock, RuleID: "threats", Reason: ReasonThreat, Match: "phishtank"}},
		{"monitor reported when allowed", Request{Host: "social.example", Time: mon10}, categorizer.Country{},
			Decision{Action: ActionAllow, RuleAction: ActionBlock, Monitor: true, RuleID: "try-social", Reason: ReasonCategory, Match: "social"}},
		{"kids gambling by group", Request{Host: "casino.example", Principal: bob, Time: mon10}, categorizer.Country{},
			Decision{Action: ActionBlock, RuleAction: ActionBlock, RuleID: "kids-gambling", Reason: ReasonCategory, Match: "gambling", SafeSearch: true}},
		{"stranger resolved by group name", Request{Host: "casino.example", Principal: stranger, Time: mon10}, categorizer.Country{},
			Decision{Action: ActionBlock, RuleAction: ActionBlock, RuleID: "kids-gambling", Reason: ReasonCategory, Match: "gambling", SafeSearch: true}},
		{"adult for staff allowed", Request{Host: "casino.example", Principal: alice, Time: mon10}, categorizer.Country{},
			Decision{Action: ActionAllow, RuleAction: ActionAllow, Reason: ReasonDefault}},
		{"lab location by client ip, most specific", Request{Host: "news.example", ClientIP: netip.MustParseAddr("10.1.2.9"), Time: mon10}, categorizer.Country{},
			Decision{Action: ActionWarn, RuleAction: ActionWarn, RuleID: "lab-news", Reason: ReasonCategory, Match: "news"}},
		{"paris not lab", Request{Host: "news.example", ClientIP: netip.MustParseAddr("10.1.3.9"), Time: mon10}, categorizer.Country{},
			Decision{Action: ActionAllow, RuleAction: ActionAllow, Reason: ReasonDefault}},
		{"url prefix", Request{Host: "files.example", Path: "/downloads/x.zip", Time: mon10}, categorizer.Country{},
			Decision{Action: ActionBlock, RuleAction: ActionBlock, RuleID: "downloads", Reason: ReasonList, Match: "blocked-downloads"}},
		{"url prefix not over dns", Request{Host: "files.example", Protocol: ProtoDNS, Time: mon10}, categorizer.Country{},
			Decision{Action: ActionAllow, RuleAction: ActionAllow, Reason: ReasonDefault}},
		{"host case and trailing dot (DNS 0x20)", Request{Host: "X.BadSite.Example.", Protocol: ProtoDNS, Time: mon10}, categorizer.Country{},
			Decision{Action: ActionBlock, RuleAction: ActionBlock, RuleID: "downloads", Reason: ReasonList, Match: "blocked-downloads"}},
		{"list domain covers subdomains", Request{Host: "x.badsite.example", Protocol: ProtoDNS, Time: mon10}, categorizer.Country{},
			Decision{Action: ActionBlock, RuleAction: ActionBlock, RuleID: "downloads", Reason: ReasonList, Match: "blocked-downloads"}},
		{"path pattern", Request{Host: "x.org", Path: "/a/b/setup.exe", Time: mon10}, categorizer.Country{},
			Decision{Action: ActionBlock, RuleAction: ActionBlock, RuleID: "exe", Reason: ReasonPath, Match: "*.exe"}},
		{"path pattern not dns", Request{Host: "x.org", Protocol: ProtoDNS, Time: mon10}, categorizer.Country{},
			Decision{Action: ActionAllow, RuleAction: ActionAllow, Reason: ReasonDefault}},
		{"country", Request{Host: "x.kp", Time: mon10}, kp,
			Decision{Action: ActionBlock, RuleAction: ActionBlock, RuleID: "country", Reason: ReasonCountry, Match: "KP"}},
		{"schedule across midnight", Request{Host: "x.org", Principal: alice, Time: sat23}, categorizer.Country{},
			Decision{Action: ActionBlock, RuleAction: ActionBlock, RuleID: "night", Reason: ReasonRule}},
		{"schedule off on monday", Request{Host: "x.org", Principal: alice, Time: mon10}, categorizer.Country{},
			Decision{Action: ActionAllow, RuleAction: ActionAllow, Reason: ReasonDefault}},
		{"client cidr", Request{Host: "bank.example", ClientIP: netip.MustParseAddr("192.0.2.7"), Time: mon10}, categorizer.Country{},
			Decision{Action: ActionWarn, RuleAction: ActionWarn, RuleID: "default-finance-warn", Reason: ReasonCategory, Match: "finance"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := tb.Lookup(strings.TrimSuffix(strings.ToLower(tt.r.Host), "."), tt.r.Path, netip.Addr{})
			v.Country = tt.country
			got := c.Decide(&tt.r, &v)
			want := tt.want
			want.Version, want.DNSBlock, want.WarnTTLSeconds = 7, DNSBlockSinkhole, 1800
			if got != want {
				t.Errorf("Decide(%q) = %+v, want %+v", tt.r.Host, got, want)
			}
		})
	}
}

func TestDecideMonitorNeverWeakensEnforcement(t *testing.T) {
	tb := newTable()
	tb.set("social.example", []string{"social"}, []string{"urlhaus"})
	c := mustCompile(t, `
rules:
  - id: trial
    categories: [social]
    action: allow
    monitor: true
  - id: threats
    threats: [urlhaus]
    action: block
`, tb)
	v := tb.Lookup("social.example", "", netip.Addr{})
	d := c.Decide(&Request{Host: "social.example"}, &v)
	if d.Action != ActionBlock || d.RuleID != "threats" || d.Monitor || d.MonitorRuleID != "trial" || d.MonitorAction != ActionAllow {
		t.Errorf("Decide = %+v, want block by threats with monitor hit trial", d)
	}
}

func TestDecideZeroAllocs(t *testing.T) {
	tb := newTable()
	tb.set("casino.example", []string{"gambling"}, nil)
	c := mustCompile(t, testPolicy, tb)
	stranger := &Principal{User: "carol", Groups: []string{"kids"}, Location: "paris"}
	r := Request{Host: "WWW.Casino.Example.", Path: "/x/y.exe", Principal: stranger, ClientIP: netip.MustParseAddr("10.1.2.3"), Time: time.Now()}
	v := tb.Lookup(r.Host, "", netip.Addr{})
	if n := testing.AllocsPerRun(100, func() { c.Decide(&r, &v) }); n != 0 {
		t.Errorf("Decide allocates %v times per call, want 0", n)
	}
}

func TestValidateErrors(t *testing.T) {
	tests := []struct {
		name, src string
		want      []string // substrings of the error, each must appear
	}{
		{"unknown key", "rules:\n  - id: a\n    action: block\n    categoriez: [x]\n", []string{"line 4", "categoriez"}},
		{"wrong type", "settings:\n  warn_ttl: [1]\n", []string{"line 2"}},
		{"unknown category", "rules:\n  - id: a\n    categories: [gamblin]\n    action: block\n", []string{"line 3", "rules[0].categories[0]", `unknown category "gamblin"`}},
		{"bad cidr", "locations:\n  - name: x\n    cidrs: [10.0.0.1/8]\n", []string{"line 3", "host bits set, did you mean 10.0.0.0/8"}},
		{"unknown group", "users:\n  - name: a\n    groups: [ghost]\n", []string{"line 3", `unknown group "ghost"`}},
		{"unknown list", "rules:\n  - id: a\n    lists: [nope]\n    action: block\n", []string{`unknown list "nope"`}},
		{"unknown user", "rules:\n  - id: a\n    users: [zed]\n    action: block\n", []string{`unknown user "zed"`}},
		{"duplicate id", "rules:\n  - id: a\n    categories: [news]\n    action: block\n  - id: a\n    categories: [social]\n    action: block\n", []string{"line 5", `duplicate id "a"`}},
		{"shadowed", "rules:\n  - id: all-social\n    categories: [social, news]\n    action: block\n  - id: staff-social\n    groups: [g]\n    categories: [social]\n    action: allow\ngroups: [{name: g}]\n", []string{"line 5", `rule "staff-social" can never match: earlier rule "all-social" (line 2)`}},
		{"list kind", "lists:\n  - name: ok\n    kind: allow\n    entries: [a.example]\nrules:\n  - id: a\n    lists: [ok]\n    action: block\n", []string{`list "ok" is a allow list but the rule's action is block`}},
		{"bad action", "rules:\n  - id: a\n    action: nuke\n", []string{"line 3", `unknown action "nuke"`}},
		{"bad schedule", "rules:\n  - id: a\n    schedule: {days: [funday], from: \"25:00\", to: \"01:00\"}\n    action: block\n", []string{`unknown day "funday"`, `"25:00": want HH:MM`}},
		{"bad entry", "lists:\n  - name: l\n    kind: deny\n    entries: [\"bad host!\"]\n", []string{"line 4", "bad entry"}},
		{"bad hash", "users:\n  - name: a\n    password_hash: plain\n", []string{"unknown password hash"}},
		{"shadowed by a wider network", "rules:\n  - id: lan\n    client_cidrs: [10.0.0.0/8]\n    action: block\n  - id: lab\n    client_cidrs: [10.1.0.0/16]\n    categories: [news]\n    action: allow\n", []string{"line 5", `rule "lab" can never match: earlier rule "lan"`}},
		{"paths over dns", "rules:\n  - id: a\n    paths: [/x]\n    protocols: [dns]\n    action: block\n", []string{"line 3", "can never match"}},
		{"two documents", "rules: []\n---\nrules: []\n", []string{"more than one YAML document"}},
	}
	tb := newTable()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.src))
			if err == nil {
				err = Validate(p, tb)
			}
			if err == nil {
				t.Fatalf("Parse+Validate(%q) = nil, want error", tt.src)
			}
			if !errors.Is(err, ErrInvalidPolicy) {
				t.Errorf("error %v does not wrap ErrInvalidPolicy", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		pat, s string
		want   bool
	}{
		{"/admin/*", "/admin/x/y", true},
		{"/admin/*", "/admin", false},
		{"*.exe", "/a/b.exe", true},
		{"*.exe", "/a/b.exe.txt", false},
		{"/a*b*c", "/aXXbYYc", true},
		{"/a*b*c", "/aXXbYY", false},
		{"/exact", "/exact", true},
		{"*", "", true},
	}
	for _, tt := range tests {
		if got := globMatch(tt.pat, tt.s); got != tt.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tt.pat, tt.s, got, tt.want)
		}
	}
}
