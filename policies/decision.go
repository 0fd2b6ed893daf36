package policies

// Action is what a rule does to a request.
type Action uint8

// Actions. The zero value is ActionAllow.
const (
	ActionAllow Action = iota
	ActionBlock
	ActionWarn
)

var actionNames = [...]string{"allow", "block", "warn"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "unknown"
}

// ParseAction maps "allow", "block" or "warn" to an Action.
func ParseAction(s string) (Action, bool) {
	for i, n := range actionNames {
		if n == s {
			return Action(i), true
		}
	}
	return 0, false
}

// Reason says why a decision was made; a bounded enum so it can be a
// metric label.
type Reason uint8

// Reasons.
const (
	ReasonDefault  Reason = iota // no rule matched; the policy default applied
	ReasonRule                   // a rule without categories/threats/lists matched (users, schedule, …)
	ReasonCategory               // a rule matched on a category
	ReasonThreat                 // a rule matched on a threat feed
	ReasonList                   // a rule matched on a custom list or domain
	ReasonCountry                // a rule matched on destination country
	ReasonPath                   // a rule matched on a URL path pattern
)

var reasonNames = [...]string{"default", "rule", "category", "threat", "list", "country", "path"}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// DNSBlockMode is how the DNS filter answers a blocked name.
type DNSBlockMode uint8

// DNS block modes. The zero value is DNSBlockNXDomain.
const (
	DNSBlockNXDomain DNSBlockMode = iota // NXDOMAIN
	DNSBlockNullIP                       // 0.0.0.0 / ::
	DNSBlockSinkhole                     // A/AAAA of the edge's block-page address
)

var dnsBlockNames = [...]string{"nxdomain", "null_ip", "sinkhole"}

func (m DNSBlockMode) String() string {
	if int(m) < len(dnsBlockNames) {
		return dnsBlockNames[m]
	}
	return "unknown"
}

// ParseDNSBlockMode maps "nxdomain", "null_ip" or "sinkhole" to a mode.
func ParseDNSBlockMode(s string) (DNSBlockMode, bool) {
	for i, n := range dnsBlockNames {
		if n == s {
			return DNSBlockMode(i), true
		}
	}
	return 0, false
}

// Decision is the outcome of Decide. It is a value; its strings point into
// the compiled policy, so making one allocates nothing.
type Decision struct {
	// Action is what to enforce. A rule in monitor mode yields ActionAllow
	// here and its own action in RuleAction.
	Action Action
	// RuleAction is the action of the matching rule (or the default).
	RuleAction Action
	// Monitor is true when the matching rule is in monitor mode: the
	// request passes and is logged as "would <RuleAction>".
	Monitor bool
	// RuleID is the matching rule's id, "" for the default action.
	RuleID string
	// Version is the policy version that decided.
	Version int64
	Reason  Reason
	// Match names what triggered the rule: the category, threat feed,
	// list, country or path pattern; "" when not applicable.
	Match string
	// DNSBlock is how a DNS block is answered under this policy.
	DNSBlock DNSBlockMode
	// SafeSearch is true when the policy enforces safe search for this
	// request's principal.
	SafeSearch bool
	// WarnTTLSeconds is how long a "continue" on a warn page is remembered.
	WarnTTLSeconds int32
	// MonitorRuleID names a rule in monitor mode that matched before the
	// enforcing rule when the enforced action is block or warn (the
	// monitor hit is reported alongside, "would <MonitorAction>"). When
	// the enforced action is allow, the monitor rule is reported in
	// RuleID with Monitor set instead and this is "".
	MonitorRuleID string
	MonitorAction Action
}

// Blocked reports whether the request must be stopped now (block, or warn
// not yet acknowledged, is the adapter's business for warn).
func (d Decision) Blocked() bool { return d.Action == ActionBlock }
