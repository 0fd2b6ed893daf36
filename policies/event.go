package policies

import (
	"net/netip"
	"time"
)

// AccessEvent is one request as seen by an adapter (HTTP proxy or DNS
// filter), handed to the reports pipeline after the request is answered.
// Adapters own the value until they pass it on; sinks must not keep
// references into it after returning unless they copy.
type AccessEvent struct {
	Time     time.Time  `json:"time"`
	ID       string     `json:"id,omitempty"` // request id shown on block pages
	Protocol Protocol   `json:"-"`
	Proto    string     `json:"protocol"` // Protocol.String(), for JSON
	User     string     `json:"user,omitempty"`
	Groups   []string   `json:"groups,omitempty"`
	Location string     `json:"location,omitempty"`
	ClientIP netip.Addr `json:"client_ip"`
	// Method is the HTTP method, "CONNECT", or the DNS query type ("A").
	Method string `json:"method"`
	Host   string `json:"host"`
	Path   string `json:"path,omitempty"`

	Categories []string `json:"categories,omitempty"`
	Threats    []string `json:"threats,omitempty"`
	Country    string   `json:"country,omitempty"`

	Action        string `json:"action"`                // Action.String() enforced
	RuleAction    string `json:"rule_action,omitempty"` // what the rule said (differs in monitor mode)
	Monitor       bool   `json:"monitor,omitempty"`
	RuleID        string `json:"rule,omitempty"`
	PolicyVersion int64  `json:"policy_version"`
	Reason        string `json:"reason"`

	// Status is the HTTP status code sent, or the DNS rcode.
	Status    int   `json:"status"`
	BytesUp   int64 `json:"bytes_up"`
	BytesDown int64 `json:"bytes_down"`
	// Latency is the time Cordon added (decision, identity, filtering).
	Latency time.Duration `json:"latency_ns"`
	// Upstream is the time spent waiting for the origin or resolver.
	Upstream time.Duration `json:"upstream_ns"`
}
