package policies

import (
	"fmt"
	"slices"
	"time"
)

// ChangeState is where a change request is in its life.
type ChangeState string

// Change request states. Stale is never stored: it is shown instead of
// open or approved while the live version is not the change's base.
const (
	ChangeOpen      ChangeState = "open"
	ChangeApproved  ChangeState = "approved"
	ChangeStaged    ChangeState = "staged"
	ChangeApplied   ChangeState = "applied"
	ChangeRejected  ChangeState = "rejected"
	ChangeWithdrawn ChangeState = "withdrawn"
	ChangeStale     ChangeState = "stale"
)

// ChangeStates lists every state a change can be shown in.
var ChangeStates = []ChangeState{ChangeOpen, ChangeApproved, ChangeStale, ChangeStaged, ChangeApplied, ChangeRejected, ChangeWithdrawn}

// final reports whether nothing more can happen to a change in state s.
func (s ChangeState) final() bool {
	return s == ChangeApplied || s == ChangeRejected || s == ChangeWithdrawn
}

// ChangeRequest is a proposed policy change waiting for the approvals its
// kind needs: a full draft policy or a patch of named parts, drafted
// against BaseVersion.
type ChangeRequest struct {
	ID         string      `json:"id"`
	Title      string      `json:"title"`
	Reason     string      `json:"reason"`
	Author     string      `json:"author"`
	AuthorRole Role        `json:"author_role"`
	Created    time.Time   `json:"created"`
	Updated    time.Time   `json:"updated"`
	State      ChangeState `json:"state"`
	// BaseVersion is the live version the change was drafted (or last
	// rebased) against.
	BaseVersion int64 `json:"base_version"`
	// LiveVersion is the live version when the change was read (not
	// stored).
	LiveVersion int64 `json:"live_version"`
	// Patch or Policy: exactly one is set.
	Patch  *Patch  `json:"patch,omitempty"`
	Policy *Policy `json:"policy,omitempty"`
	// ReviewID links the block-page review request the change came from.
	ReviewID string `json:"review_id,omitempty"`
	// Sections are the kinds of change: rules, lists, bypass, locations,
	// settings, users, groups.
	Sections          []string           `json:"sections"`
	RequiredApprovals []RequiredApproval `json:"required_approvals"`
	Approvals         []ChangeApproval   `json:"approvals"`
	Rejection         *ChangeApproval    `json:"rejection,omitempty"`
	Comments          []ChangeComment    `json:"comments"`
	Impact            *Impact            `json:"impact,omitempty"`
	// Conflicts are the items the last rebase could not merge.
	Conflicts       []Conflict `json:"conflicts"`
	AppliedVersion  int64      `json:"applied_version,omitempty"`
	Emergency       bool       `json:"emergency,omitempty"`
	EmergencyReason string     `json:"emergency_reason,omitempty"`
	Stage           *Stage     `json:"stage,omitempty"`
	// Observed is the staged effect (while staged; not stored).
	Observed *ObservedEffect `json:"observed,omitempty"`
	// Rev counts stored revisions (optimistic concurrency).
	Rev int64 `json:"rev"`

	// result is the policy the change produces on its base (not stored).
	result *Policy
}

// RequiredApproval is one role whose approval a change needs.
type RequiredApproval struct {
	Role       Role   `json:"role"`
	ApprovedBy string `json:"approved_by"`
}

// ChangeApproval is an approval or a rejection.
type ChangeApproval struct {
	Actor   string    `json:"actor"`
	Role    Role      `json:"role"`
	Time    time.Time `json:"time"`
	Comment string    `json:"comment,omitempty"`
}

// ChangeComment is one comment on a change.
type ChangeComment struct {
	Actor string    `json:"actor"`
	Role  Role      `json:"role"`
	Time  time.Time `json:"time"`
	Text  string    `json:"text"`
}

// Impact is what a change does, attached on open and on every update.
type Impact struct {
	AgainstVersion int64     `json:"against_version"`
	ComputedAt     time.Time `json:"computed_at"`
	// Diff is rule by rule against the base version.
	Diff []Change `json:"diff"`
	// Preview replays recent traffic (nil when the result is invalid).
	Preview  *PreviewResult `json:"preview,omitempty"`
	Problems []FieldError   `json:"problems"`
	// RequiredRoles are the roles that must approve.
	RequiredRoles []Role `json:"required_roles"`
}

// Conflict is one item both the change and the live policy changed since
// the change's base; values are the item as JSON (nil: absent).
type Conflict struct {
	Section string `json:"section"`
	Name    string `json:"name,omitempty"`
	Base    any    `json:"base"`
	Live    any    `json:"live"`
	Change  any    `json:"change"`
}

// Stage is a staged rollout: the change's policy serves the named
// locations (and every request on the named edges) while the rest keep
// the live version.
type Stage struct {
	ChangeID  string   `json:"change_id"`
	Locations []string `json:"locations,omitempty"`
	Edges     []string `json:"edges,omitempty"`
	// Version is the number the change's policy gets when promoted; staged
	// decisions carry it.
	Version     int64 `json:"version"`
	BaseVersion int64 `json:"base_version"`
	// Thresholds of the auto-abort (0: none) over at least MinRequests
	// staged requests (0: DefaultStageMinRequests).
	MaxBlockRate float64   `json:"max_block_rate,omitempty"`
	MaxErrorRate float64   `json:"max_error_rate,omitempty"`
	MinRequests  int64     `json:"min_requests,omitempty"`
	Started      time.Time `json:"started"`
	Ended        time.Time `json:"ended,omitzero"`
	// Outcome is "" while running, then promoted, aborted or auto-aborted.
	Outcome     string `json:"outcome,omitempty"`
	AbortReason string `json:"abort_reason,omitempty"`
	// Policy is the staged policy (stored with the stage so edges can
	// serve it; omitted in change requests).
	Policy *Policy `json:"policy,omitempty"`
}

// DefaultStageMinRequests is the number of staged requests before the
// auto-abort thresholds are checked.
const DefaultStageMinRequests = 20

// Section names of a change.
const (
	SectionRules     = "rules"
	SectionLists     = "lists"
	SectionBypass    = "bypass"
	SectionLocations = "locations"
	SectionSettings  = "settings"
	SectionUsers     = "users"
	SectionGroups    = "groups"
)

// changeSections lists what changing a into b touches.
func changeSections(a, b *Policy) []string {
	var out []string
	add := func(s string) {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	if !jsonEqual(a.Rules, b.Rules) {
		add(SectionRules)
	}
	old := map[string]List{}
	for _, l := range a.Lists {
		old[l.Name] = l
	}
	seen := map[string]bool{}
	listSection := func(kind string) string {
		if kind == ListBypass {
			return SectionBypass
		}
		return SectionLists
	}
	for _, l := range b.Lists {
		seen[l.Name] = true
		o, ok := old[l.Name]
		if ok && jsonEqual(o, l) {
			continue
		}
		add(listSection(l.Kind))
		if ok && o.Kind != l.Kind {
			add(listSection(o.Kind))
		}
	}
	for _, l := range a.Lists {
		if !seen[l.Name] {
			add(listSection(l.Kind))
		}
	}
	if !jsonEqual(a.Locations, b.Locations) {
		add(SectionLocations)
	}
	if !jsonEqual(a.Settings, b.Settings) {
		add(SectionSettings)
	}
	if !jsonEqual(a.Users, b.Users) {
		add(SectionUsers)
	}
	if !jsonEqual(a.Groups, b.Groups) {
		add(SectionGroups)
	}
	slices.Sort(out)
	return out
}

// requiredRoles are the approvals the live policy's rules ask for a change
// touching sections, each role once, in a stable order.
func requiredRoles(live *Policy, sections []string) []Role {
	ap := live.Settings.Approvals
	var need []Role
	add := func(rs []Role) {
		for _, r := range rs {
			if !slices.Contains(need, r) {
				need = append(need, r)
			}
		}
	}
	for _, s := range sections {
		switch s {
		case SectionRules, SectionLists, SectionSettings:
			add(orDefault(ap.Security, DefaultSecurityApprovers))
		case SectionBypass, SectionLocations:
			add(orDefault(ap.Network, DefaultNetworkApprovers))
		case SectionUsers, SectionGroups:
			add(orDefault(ap.Directory, DefaultDirectoryApprovers))
		}
	}
	order := map[Role]int{RoleNetOps: 0, RoleSecOps: 1, RoleAdmin: 2}
	slices.SortFunc(need, func(a, b Role) int { return order[a] - order[b] })
	return need
}

// matchApprovals fills RequiredApprovals from the approvals given: each
// required role is met by a different approver holding it.
func (c *ChangeRequest) matchApprovals(roles []Role) {
	c.RequiredApprovals = make([]RequiredApproval, 0, len(roles))
	used := map[string]bool{}
	for _, r := range roles {
		ra := RequiredApproval{Role: r}
		for _, a := range c.Approvals {
			if a.Role == r && !used[a.Actor] {
				ra.ApprovedBy, used[a.Actor] = a.Actor, true
				break
			}
		}
		c.RequiredApprovals = append(c.RequiredApprovals, ra)
	}
}

// approved reports whether every required approval is given.
func (c *ChangeRequest) approved() bool {
	for _, ra := range c.RequiredApprovals {
		if ra.ApprovedBy == "" {
			return false
		}
	}
	return true
}

// effectiveState is the state shown for live version live.
func (c *ChangeRequest) effectiveState(live int64) ChangeState {
	if (c.State == ChangeOpen || c.State == ChangeApproved) && c.BaseVersion != live {
		return ChangeStale
	}
	return c.State
}

func (c *ChangeRequest) clone() *ChangeRequest {
	d := *c
	d.Sections = slices.Clone(c.Sections)
	d.RequiredApprovals = slices.Clone(c.RequiredApprovals)
	d.Approvals = slices.Clone(c.Approvals)
	d.Comments = slices.Clone(c.Comments)
	d.Conflicts = slices.Clone(c.Conflicts)
	if c.Stage != nil {
		st := *c.Stage
		d.Stage = &st
	}
	return &d
}

func (c *ChangeRequest) String() string { return fmt.Sprintf("change %s", c.ID) }
