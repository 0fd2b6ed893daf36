package policies

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// MaxRules is the largest number of rules one policy may hold. Decide keeps
// a per-request rule mask on the stack, so the bound is part of its
// zero-allocation guarantee.
const MaxRules = 4096

// MaxPolicyBytes is the largest policy document Parse accepts.
const MaxPolicyBytes = 32 << 20

// Policy is the policy document an operator writes (YAML, or the same
// shape in JSON through the admin API). The zero value is a valid policy
// that allows everything. A Policy is a plain value: Compile turns it into
// the immutable form the Engine serves.
type Policy struct {
	Settings  Settings   `yaml:"settings,omitempty" json:"settings"`
	Groups    []Group    `yaml:"groups,omitempty" json:"groups,omitempty"`
	Users     []User     `yaml:"users,omitempty" json:"users,omitempty"`
	Locations []Location `yaml:"locations,omitempty" json:"locations,omitempty"`
	Lists     []List     `yaml:"lists,omitempty" json:"lists,omitempty"`
	Rules     []Rule     `yaml:"rules,omitempty" json:"rules,omitempty"`

	// pos maps a field path ("rules[2].categories[0]") to its line in the
	// source document; nil when the policy did not come from Parse.
	pos map[string]int
}

// Settings are the policy-wide defaults.
type Settings struct {
	// DefaultAction applies when no rule matches: allow (default when
	// empty), block or warn.
	DefaultAction string `yaml:"default_action,omitempty" json:"default_action,omitempty"`
	// DNSBlockMode is how the DNS filter answers a blocked name: nxdomain
	// (default when empty), null_ip or sinkhole.
	DNSBlockMode string `yaml:"dns_block_mode,omitempty" json:"dns_block_mode,omitempty"`
	// WarnTTL is how long a "continue" on a warn page is remembered per
	// user and domain. Zero means DefaultWarnTTL (1h).
	WarnTTL Duration `yaml:"warn_ttl,omitempty" json:"warn_ttl,omitempty"`
	// TimeZone is the IANA zone of rule schedules that name none. Empty
	// means UTC.
	TimeZone string `yaml:"time_zone,omitempty" json:"time_zone,omitempty"`
	// SafeSearch enforces the search engines' safe-search endpoints.
	SafeSearch SafeSearch `yaml:"safe_search,omitempty" json:"safe_search"`
	// Approvals says who must approve a change request before it is
	// applied. The zero value means the safe defaults (see Approvals).
	Approvals Approvals `yaml:"approvals,omitempty" json:"approvals,omitzero"`
}

// Approvals are the approval rules of change requests, per kind of
// change. Each role listed needs one approval by a different person
// holding that role, never the change's author; a change touching several
// kinds needs the roles of all of them. An empty list means the default.
type Approvals struct {
	// Security: rules, allow/deny lists and settings. Default [secops].
	Security []Role `yaml:"security,omitempty" json:"security,omitempty"`
	// Network: bypass lists and locations (traffic steering). Default
	// [netops, secops].
	Network []Role `yaml:"network,omitempty" json:"network,omitempty"`
	// Directory: users and groups. Default [admin].
	Directory []Role `yaml:"directory,omitempty" json:"directory,omitempty"`
	// Enforce refuses direct policy writes (PUT /policy, list and
	// directory edits, rollback) by non-admin tokens: every change by
	// secops or netops then goes through a change request, approved by
	// the other team. Default true (nil); false lets each role write what
	// its permissions allow at once, as before change requests existed.
	Enforce *bool `yaml:"enforce,omitempty" json:"enforce,omitempty"`
}

// Enforced reports whether direct writes by non-admin tokens are refused
// (Enforce unset means true).
func (a Approvals) Enforced() bool { return a.Enforce == nil || *a.Enforce }

// Default approval roles.
var (
	DefaultSecurityApprovers  = []Role{RoleSecOps}
	DefaultNetworkApprovers   = []Role{RoleNetOps, RoleSecOps}
	DefaultDirectoryApprovers = []Role{RoleAdmin}
)

func orDefault(rs, def []Role) []Role {
	if len(rs) == 0 {
		return def
	}
	return rs
}

// DefaultWarnTTL is the warn-page memory when Settings.WarnTTL is zero.
const DefaultWarnTTL = time.Hour

// SafeSearch says who gets safe search enforced.
type SafeSearch struct {
	// Enabled turns enforcement on. With no users, groups or locations
	// listed, it applies to everyone.
	Enabled   bool     `yaml:"enabled,omitempty" json:"enabled"`
	Users     []string `yaml:"users,omitempty" json:"users,omitempty"`
	Groups    []string `yaml:"groups,omitempty" json:"groups,omitempty"`
	Locations []string `yaml:"locations,omitempty" json:"locations,omitempty"`
}

// Group is a named set of users; users name their groups.
type Group struct {
	Name        string `yaml:"name" json:"name"`
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
}

// User is one person known to Cordon.
type User struct {
	Name   string   `yaml:"name" json:"name"`
	Groups []string `yaml:"groups,omitempty" json:"groups,omitempty"`
	// PasswordHash is a bcrypt ("$2a$…", "$2b$…") or argon2id
	// ("$argon2id$v=19$m=…,t=…,p=…$salt$hash") hash for proxy Basic
	// authentication; empty means the user cannot authenticate by
	// password. See HashPassword.
	PasswordHash string `yaml:"password_hash,omitempty" json:"password_hash,omitempty"`
	// DoHToken identifies the user on /dns-query/{token}; empty means
	// none. At least 16 characters of [A-Za-z0-9_-].
	DoHToken string `yaml:"doh_token,omitempty" json:"doh_token,omitempty"`
}

// Location is a named set of client networks, e.g. a branch office.
type Location struct {
	Name  string   `yaml:"name" json:"name"`
	CIDRs []string `yaml:"cidrs" json:"cidrs"`
}

// List kinds.
const (
	ListAllow  = "allow"  // used by allow rules (exceptions)
	ListDeny   = "deny"   // used by block and warn rules
	ListBypass = "bypass" // not proxied (PAC DIRECT); netops owns it; allow rules may use it
)

// List is a named custom list of destinations, editable on its own.
//
// Entries: "example.com" matches example.com and every subdomain;
// "*.example.com" matches only subdomains; "example.com/path" matches
// URLs on example.com (or a subdomain) whose path starts with "/path"
// (never DNS queries, which have no path).
type List struct {
	Name        string   `yaml:"name" json:"name"`
	Kind        string   `yaml:"kind" json:"kind"`
	Description string   `yaml:"description,omitempty" json:"description,omitempty"`
	Entries     []string `yaml:"entries,omitempty" json:"entries,omitempty"`
}

// Rule is one ordered rule; the first matching rule decides.
//
// Criteria of one kind are alternatives (any of them), kinds are combined
// (all of them), with three groupings: who = users or groups; where =
// locations or client_cidrs; what = categories or threats or domains or
// lists. An empty criterion matches everything.
type Rule struct {
	ID          string    `yaml:"id" json:"id"`
	Description string    `yaml:"description,omitempty" json:"description,omitempty"`
	Users       []string  `yaml:"users,omitempty" json:"users,omitempty"`
	Groups      []string  `yaml:"groups,omitempty" json:"groups,omitempty"`
	Locations   []string  `yaml:"locations,omitempty" json:"locations,omitempty"`
	ClientCIDRs []string  `yaml:"client_cidrs,omitempty" json:"client_cidrs,omitempty"`
	Categories  []string  `yaml:"categories,omitempty" json:"categories,omitempty"`
	Threats     []string  `yaml:"threats,omitempty" json:"threats,omitempty"` // feed names, or "any"
	Domains     []string  `yaml:"domains,omitempty" json:"domains,omitempty"` // same syntax as list entries
	Lists       []string  `yaml:"lists,omitempty" json:"lists,omitempty"`
	Paths       []string  `yaml:"paths,omitempty" json:"paths,omitempty"`         // URL path patterns, "*" wildcard
	Countries   []string  `yaml:"countries,omitempty" json:"countries,omitempty"` // ISO 3166-1 alpha-2
	Protocols   []string  `yaml:"protocols,omitempty" json:"protocols,omitempty"` // http, https, dns
	Schedule    *Schedule `yaml:"schedule,omitempty" json:"schedule,omitempty"`
	Action      string    `yaml:"action" json:"action"` // allow, block, warn
	Monitor     bool      `yaml:"monitor,omitempty" json:"monitor,omitempty"`
}

// Schedule limits a rule to days and a daily time range.
type Schedule struct {
	// Days: mon, tue, wed, thu, fri, sat, sun; empty means every day.
	Days []string `yaml:"days,omitempty" json:"days,omitempty"`
	// From and To are "HH:MM" (24h). From inclusive, To exclusive; a range
	// with To before From spans midnight. Both empty means all day.
	From string `yaml:"from,omitempty" json:"from,omitempty"`
	To   string `yaml:"to,omitempty" json:"to,omitempty"`
	// TimeZone is an IANA zone; empty means Settings.TimeZone.
	TimeZone string `yaml:"time_zone,omitempty" json:"time_zone,omitempty"`
}

// Duration is a time.Duration written as a string ("90s", "1h").
type Duration time.Duration

// String formats d like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes d as "1h0m0s".
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads "90s", "1h30m" and the like.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: want a Go duration like \"90s\" or \"1h\"", b)
	}
	*d = Duration(v)
	return nil
}

// IsZero lets yaml omitempty drop a zero duration.
func (d Duration) IsZero() bool { return d == 0 }

// Parse decodes one YAML policy document strictly: unknown keys, wrong
// types and more than one document are errors that name the line. It does
// not check references (see Validate).
func Parse(data []byte) (*Policy, error) {
	if len(data) > MaxPolicyBytes {
		return nil, fmt.Errorf("policies: parse: %w: document larger than %d bytes", ErrInvalidPolicy, MaxPolicyBytes)
	}
	var p Policy
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("policies: parse: %w: empty document", ErrInvalidPolicy)
		}
		return nil, fmt.Errorf("policies: parse: %w: %s", ErrInvalidPolicy, yamlMessage(err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("policies: parse: %w: more than one YAML document", ErrInvalidPolicy)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err == nil {
		p.pos = make(map[string]int)
		walkPositions(&root, "", p.pos)
	}
	return &p, nil
}

// ParseJSON decodes a policy in its JSON form strictly (unknown fields and
// trailing data are errors).
func ParseJSON(data []byte) (*Policy, error) {
	var p Policy
	if err := decodeStrictJSON(bytes.NewReader(data), &p); err != nil {
		return nil, fmt.Errorf("policies: parse: %w: %v", ErrInvalidPolicy, err)
	}
	return &p, nil
}

// YAML encodes p as a YAML document.
func (p *Policy) YAML() []byte {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(p); err != nil {
		// Policy holds only strings, slices, bools and durations: encoding
		// cannot fail.
		panic(fmt.Sprintf("policies: encode policy: %v", err))
	}
	_ = enc.Close()
	return b.Bytes()
}

// Clone returns a deep copy of p (sharing the read-only source positions,
// so errors about the copy still name lines of the original document).
func (p *Policy) Clone() *Policy {
	b, err := json.Marshal(p)
	if err != nil {
		panic(fmt.Sprintf("policies: clone policy: %v", err))
	}
	var c Policy
	if err := json.Unmarshal(b, &c); err != nil {
		panic(fmt.Sprintf("policies: clone policy: %v", err))
	}
	c.pos = p.pos
	return &c
}

// Line returns the source line of a field path such as "rules[2].action",
// or 0 when unknown.
func (p *Policy) Line(path string) int {
	if p == nil || p.pos == nil {
		return 0
	}
	for {
		if l, ok := p.pos[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i <= 0 {
			return 0
		}
		path = path[:i]
	}
}

func walkPositions(n *yaml.Node, path string, pos map[string]int) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			walkPositions(c, path, pos)
		}
		return
	case yaml.AliasNode:
		pos[path] = n.Line
		return
	}
	if path != "" {
		if _, ok := pos[path]; !ok {
			pos[path] = n.Line
		}
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			if path != "" {
				k = path + "." + k
			}
			pos[k] = n.Content[i].Line
			walkPositions(n.Content[i+1], k, pos)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			walkPositions(c, path+"["+strconv.Itoa(i)+"]", pos)
		}
	}
}

// yamlMessage flattens yaml.v3's multi-line TypeError into one line.
func yamlMessage(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return strings.Join(te.Errors, "; ")
	}
	return strings.TrimPrefix(err.Error(), "yaml: ")
}

// decodeStrictJSON decodes exactly one JSON value into v, refusing unknown
// fields and trailing data, with messages that name the field.
func decodeStrictJSON(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonMessage(err)
	}
	if dec.More() {
		return errors.New("unexpected data after the JSON value")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}

func jsonMessage(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return errors.New("empty body: want a JSON value")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("truncated JSON")
	case errors.As(err, &se):
		return fmt.Errorf("malformed JSON at byte %d: %v", se.Offset, se)
	case errors.As(err, &te):
		f := te.Field
		if f == "" {
			f = "(document)"
		}
		return fmt.Errorf("field %q: got JSON %s, want %s", f, te.Value, te.Type)
	}
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return fmt.Errorf("unknown field %s", rest)
	}
	return errors.New(strings.TrimPrefix(msg, "json: "))
}
