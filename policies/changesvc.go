package policies

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Change request limits.
const (
	maxChangeTitle   = 200
	maxChangeText    = 4000
	maxChangeComment = 4000
)

// ChangeInput is what opens or updates a change request: a patch or a
// full draft policy, never both.
type ChangeInput struct {
	Title  string
	Reason string
	Patch  *Patch
	Policy *Policy
	// BaseVersion is the version the change was drafted against; nil
	// means the live version.
	BaseVersion *int64
	ReviewID    string
}

// ConflictError is a rebase that found items changed both by the change
// and on the live policy since the change's base.
type ConflictError struct {
	ID        string
	Live      int64
	Conflicts []Conflict
}

func (e *ConflictError) Error() string {
	names := make([]string, 0, len(e.Conflicts))
	for _, c := range e.Conflicts {
		n := c.Section
		if c.Name != "" {
			n += " " + c.Name
		}
		names = append(names, n)
	}
	return fmt.Sprintf("policies: rebase of change %s on version %d: %d conflict(s): %s changed both in the change and in the live policy; edit the change (PUT) to resolve",
		e.ID, e.Live, len(e.Conflicts), strings.Join(names, ", "))
}

// Unwrap makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Unwrap() error { return ErrConflict }

func (s *Service) changeStore() (ChangeStore, error) {
	if s.changes == nil {
		return nil, fmt.Errorf("policies: %w: change requests need a change store", ErrNotFound)
	}
	return s.changes, nil
}

func checkChangeText(in *ChangeInput) error {
	in.Title, in.Reason = strings.TrimSpace(in.Title), strings.TrimSpace(in.Reason)
	switch {
	case in.Title == "":
		return fmt.Errorf("policies: change: %w: a title is required", ErrBadRequest)
	case len(in.Title) > maxChangeTitle:
		return fmt.Errorf("policies: change: %w: title longer than %d characters", ErrBadRequest, maxChangeTitle)
	case len(in.Reason) > maxChangeText:
		return fmt.Errorf("policies: change: %w: reason longer than %d characters", ErrBadRequest, maxChangeText)
	case in.Patch == nil && in.Policy == nil:
		return fmt.Errorf("policies: change: %w: give a patch or a full policy", ErrBadRequest)
	case in.Patch != nil && in.Policy != nil:
		return fmt.Errorf("policies: change: %w: give a patch or a full policy, not both", ErrBadRequest)
	}
	return nil
}

// result computes the policy the change makes of its base version.
func (s *Service) result(ctx context.Context, c *ChangeRequest) (*Version, *Policy, error) {
	base, err := s.Version(ctx, c.BaseVersion)
	if err != nil {
		return nil, nil, err
	}
	var next *Policy
	if c.Patch != nil {
		if next, err = c.Patch.Apply(base.Policy); err != nil {
			return nil, nil, err
		}
	} else {
		next = c.Policy.Clone()
	}
	restoreSecrets(next, base.Policy)
	return base, next, nil
}

// refresh recomputes what the change does: sections, approvals needed
// (by the live policy's rules) and the impact report.
func (s *Service) refresh(ctx context.Context, c *ChangeRequest) error {
	base, next, err := s.result(ctx, c)
	if err != nil {
		return err
	}
	live := s.Current()
	c.Sections = changeSections(base.Policy, next)
	if len(c.Sections) == 0 {
		return fmt.Errorf("policies: change: %w: it changes nothing in version %d", ErrBadRequest, base.Number)
	}
	roles := requiredRoles(live.Policy, c.Sections)
	c.matchApprovals(roles)
	im := &Impact{AgainstVersion: base.Number, ComputedAt: time.Now().UTC(), Diff: DiffPolicies(base.Policy, next),
		Problems: []FieldError{}, RequiredRoles: roles}
	if err := Validate(next, s.table()); err != nil {
		var ve *ValidationError
		if !errors.As(err, &ve) {
			return err
		}
		im.Problems = ve.Problems
		// Approval rules that name unknown roles are refused outright:
		// the change could never be approved as written.
		var bad []FieldError
		for _, p := range ve.Problems {
			if !p.Warning && strings.HasPrefix(p.Field, "settings.approvals") {
				bad = append(bad, p)
			}
		}
		if len(bad) > 0 {
			return &ValidationError{Problems: bad}
		}
	}
	if !hasErrors(im.Problems) {
		p, err := s.Preview(next)
		if err != nil {
			return err
		}
		im.Preview = &p
	}
	c.Impact, c.result = im, next
	return nil
}

func hasErrors(ps []FieldError) bool {
	return slices.ContainsFunc(ps, func(p FieldError) bool { return !p.Warning })
}

// OpenChange opens a change request. The impact report is attached;
// validation problems are reported in it (such a change cannot be
// applied until they are fixed).
func (s *Service) OpenChange(ctx context.Context, a Actor, in ChangeInput) (*ChangeRequest, error) {
	cs, err := s.changeStore()
	if err != nil {
		return nil, err
	}
	if err := checkActor(a); err != nil {
		return nil, err
	}
	if !a.Role.Allows(PermWrite) {
		return nil, &ForbiddenError{Role: a.Role, Permission: PermWrite, What: "open change requests"}
	}
	if err := checkChangeText(&in); err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	c := &ChangeRequest{ID: now.Format("20060102") + "-" + randomID(4), Title: in.Title, Reason: in.Reason,
		Author: a.Name, AuthorRole: a.Role, Created: now, Updated: now, State: ChangeOpen,
		BaseVersion: s.Current().Number, Patch: in.Patch, Policy: in.Policy, ReviewID: in.ReviewID,
		Approvals: []ChangeApproval{}, Comments: []ChangeComment{}, Conflicts: []Conflict{}, Rev: 1}
	if in.BaseVersion != nil {
		if *in.BaseVersion > c.BaseVersion {
			return nil, fmt.Errorf("policies: change: %w: base_version %d is newer than the live version %d", ErrBadRequest, *in.BaseVersion, c.BaseVersion)
		}
		c.BaseVersion = *in.BaseVersion
	}
	if err := s.refresh(ctx, c); err != nil {
		return nil, err
	}
	if err := cs.PutChange(ctx, c, 0); err != nil {
		return nil, fmt.Errorf("policies: open change: %w", err)
	}
	if err := s.audit(ctx, a, "change.open", c.ID, c.Title); err != nil {
		return nil, err
	}
	return s.view(c), nil
}

// view fills what is computed on read.
func (s *Service) view(c *ChangeRequest) *ChangeRequest {
	c.LiveVersion = s.Current().Number
	c.State = c.effectiveState(c.LiveVersion)
	if c.Stage != nil {
		c.Stage.Policy = nil
	}
	if c.Approvals == nil {
		c.Approvals = []ChangeApproval{}
	}
	if c.Comments == nil {
		c.Comments = []ChangeComment{}
	}
	if c.Conflicts == nil {
		c.Conflicts = []Conflict{}
	}
	return c
}

// Change returns one change request.
func (s *Service) Change(ctx context.Context, id string) (*ChangeRequest, error) {
	cs, err := s.changeStore()
	if err != nil {
		return nil, err
	}
	c, err := cs.GetChange(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("policies: change %s: %w", id, err)
	}
	c = s.view(c)
	if c.State == ChangeStaged {
		if eff, err := s.ObservedEffect(ctx, c); err == nil {
			c.Observed = eff
		}
	}
	return c, nil
}

// Changes lists change requests, newest first; state "" means all.
func (s *Service) Changes(ctx context.Context, state ChangeState) ([]*ChangeRequest, error) {
	if state != "" && !slices.Contains(ChangeStates, state) {
		return nil, fmt.Errorf("policies: changes: %w: state %q: want one of %v", ErrBadRequest, state, ChangeStates)
	}
	cs, err := s.changeStore()
	if err != nil {
		return nil, err
	}
	all, err := cs.ListChanges(ctx)
	if err != nil {
		return nil, fmt.Errorf("policies: changes: %w", err)
	}
	out := []*ChangeRequest{}
	for i := len(all) - 1; i >= 0; i-- {
		c := s.view(all[i])
		if state == "" || c.State == state {
			out = append(out, c)
		}
	}
	return out, nil
}

// step changes a stored change request with compare-and-set, retrying
// when another writer stored a revision meanwhile, and audits it. fn gets
// the change with its effective state and returns the audit detail.
func (s *Service) step(ctx context.Context, a Actor, id, action string, fn func(c *ChangeRequest) (string, error)) (*ChangeRequest, error) {
	cs, err := s.changeStore()
	if err != nil {
		return nil, err
	}
	if err := checkActor(a); err != nil {
		return nil, err
	}
	for attempt := 0; attempt < maxCommitAttempts; attempt++ {
		c, err := cs.GetChange(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("policies: change %s: %w", id, err)
		}
		prev := c.Rev
		stored := c.State
		c = s.view(c)
		detail, err := fn(c)
		if err != nil {
			return nil, err
		}
		if c.State == ChangeStale {
			c.State = stored // stale is shown, never stored
		}
		c.Rev, c.Updated, c.LiveVersion, c.Observed = prev+1, time.Now().UTC(), 0, nil
		err = cs.PutChange(ctx, c, prev)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("policies: %s %s: %w", action, id, err)
		}
		if action != "" {
			if err := s.audit(ctx, a, action, id, detail); err != nil {
				return nil, err
			}
		}
		return s.view(c), nil
	}
	return nil, fmt.Errorf("policies: %s %s: %w: other writers kept changing it; retry", action, id, ErrConflict)
}

func (c *ChangeRequest) notFinal(what string) error {
	if c.State.final() {
		return fmt.Errorf("policies: %s change %s: %w: the change is %s", what, c.ID, ErrConflict, c.State)
	}
	return nil
}

func (c *ChangeRequest) authorOrAdmin(a Actor, what string) error {
	if a.Name != c.Author && a.Role != RoleAdmin {
		return fmt.Errorf("policies: %s change %s: %w: only its author (%s) or an admin may", what, c.ID, ErrForbidden, c.Author)
	}
	return nil
}

// UpdateChange replaces a change's content (author or admin). Approvals
// are reset and the impact report recomputed; the base becomes the live
// version unless in.BaseVersion says otherwise.
func (s *Service) UpdateChange(ctx context.Context, a Actor, id string, in ChangeInput) (*ChangeRequest, error) {
	if err := checkChangeText(&in); err != nil {
		return nil, err
	}
	return s.step(ctx, a, id, "change.update", func(c *ChangeRequest) (string, error) {
		if err := c.notFinal("update"); err != nil {
			return "", err
		}
		if c.State == ChangeStaged {
			return "", fmt.Errorf("policies: update change %s: %w: it is staged; abort the stage first", id, ErrConflict)
		}
		if err := c.authorOrAdmin(a, "update"); err != nil {
			return "", err
		}
		c.Title, c.Reason, c.Patch, c.Policy = in.Title, in.Reason, in.Patch, in.Policy
		c.BaseVersion = s.Current().Number
		if in.BaseVersion != nil {
			if *in.BaseVersion > c.BaseVersion {
				return "", fmt.Errorf("policies: change: %w: base_version %d is newer than the live version %d", ErrBadRequest, *in.BaseVersion, c.BaseVersion)
			}
			c.BaseVersion = *in.BaseVersion
		}
		c.Approvals, c.Conflicts, c.State = []ChangeApproval{}, []Conflict{}, ChangeOpen
		if err := s.refresh(ctx, c); err != nil {
			return "", err
		}
		return c.Title, nil
	})
}

// CommentChange adds a comment.
func (s *Service) CommentChange(ctx context.Context, a Actor, id, text string) (ChangeComment, error) {
	text = strings.TrimSpace(text)
	if text == "" {
		return ChangeComment{}, fmt.Errorf("policies: comment: %w: empty text", ErrBadRequest)
	}
	if len(text) > maxChangeComment {
		return ChangeComment{}, fmt.Errorf("policies: comment: %w: text longer than %d characters", ErrBadRequest, maxChangeComment)
	}
	if !a.Role.Allows(PermWrite) {
		return ChangeComment{}, &ForbiddenError{Role: a.Role, Permission: PermWrite, What: "comment on change requests"}
	}
	cm := ChangeComment{Actor: a.Name, Role: a.Role, Time: time.Now().UTC(), Text: text}
	_, err := s.step(ctx, a, id, "change.comment", func(c *ChangeRequest) (string, error) {
		c.Comments = append(c.Comments, cm)
		return text, nil
	})
	return cm, err
}

// requiredRole checks that a may approve or reject c.
func (c *ChangeRequest) mayReview(a Actor, what string) error {
	if a.Name == c.Author {
		return fmt.Errorf("policies: %s change %s: %w: the author may not %s their own change", what, c.ID, ErrForbidden, what)
	}
	var roles []Role
	for _, ra := range c.RequiredApprovals {
		roles = append(roles, ra.Role)
	}
	if !slices.Contains(roles, a.Role) {
		return fmt.Errorf("policies: %s change %s: %w: role %s is not asked to approve this change (required: %v)", what, c.ID, ErrForbidden, a.Role, roles)
	}
	return nil
}

// ApproveChange records an approval; with every required one given, the
// change is approved.
func (s *Service) ApproveChange(ctx context.Context, a Actor, id, comment string) (*ChangeRequest, error) {
	if len(comment) > maxChangeComment {
		return nil, fmt.Errorf("policies: approve: %w: comment longer than %d characters", ErrBadRequest, maxChangeComment)
	}
	return s.step(ctx, a, id, "change.approve", func(c *ChangeRequest) (string, error) {
		if err := c.notFinal("approve"); err != nil {
			return "", err
		}
		switch c.State {
		case ChangeStale:
			return "", fmt.Errorf("policies: approve change %s: %w: stale: the live policy is version %d, the change was based on %d; rebase it first",
				id, ErrConflict, c.LiveVersion, c.BaseVersion)
		case ChangeStaged:
			return "", fmt.Errorf("policies: approve change %s: %w: it is staged", id, ErrConflict)
		}
		if err := c.mayReview(a, "approve"); err != nil {
			return "", err
		}
		if slices.ContainsFunc(c.Approvals, func(x ChangeApproval) bool { return x.Actor == a.Name }) {
			return "", fmt.Errorf("policies: approve change %s: %w: %s already approved it", id, ErrConflict, a.Name)
		}
		c.Approvals = append(c.Approvals, ChangeApproval{Actor: a.Name, Role: a.Role, Time: time.Now().UTC(), Comment: comment})
		roles := make([]Role, 0, len(c.RequiredApprovals))
		for _, ra := range c.RequiredApprovals {
			roles = append(roles, ra.Role)
		}
		c.matchApprovals(roles)
		if c.approved() {
			c.State = ChangeApproved
		}
		return fmt.Sprintf("as %s: %s", a.Role, comment), nil
	})
}

// RejectChange rejects a change (final).
func (s *Service) RejectChange(ctx context.Context, a Actor, id, comment string) (*ChangeRequest, error) {
	if strings.TrimSpace(comment) == "" {
		return nil, fmt.Errorf("policies: reject: %w: say why in the comment", ErrBadRequest)
	}
	if len(comment) > maxChangeComment {
		return nil, fmt.Errorf("policies: reject: %w: comment longer than %d characters", ErrBadRequest, maxChangeComment)
	}
	return s.step(ctx, a, id, "change.reject", func(c *ChangeRequest) (string, error) {
		if err := c.notFinal("reject"); err != nil {
			return "", err
		}
		if c.State == ChangeStaged {
			return "", fmt.Errorf("policies: reject change %s: %w: it is staged; abort the stage first", id, ErrConflict)
		}
		if err := c.mayReview(a, "reject"); err != nil {
			return "", err
		}
		c.Rejection = &ChangeApproval{Actor: a.Name, Role: a.Role, Time: time.Now().UTC(), Comment: comment}
		c.State = ChangeRejected
		return comment, nil
	})
}

// WithdrawChange withdraws a change (author or admin; final).
func (s *Service) WithdrawChange(ctx context.Context, a Actor, id, comment string) (*ChangeRequest, error) {
	return s.step(ctx, a, id, "change.withdraw", func(c *ChangeRequest) (string, error) {
		if err := c.notFinal("withdraw"); err != nil {
			return "", err
		}
		if c.State == ChangeStaged {
			return "", fmt.Errorf("policies: withdraw change %s: %w: it is staged; abort the stage first", id, ErrConflict)
		}
		if err := c.authorOrAdmin(a, "withdraw"); err != nil {
			return "", err
		}
		c.State = ChangeWithdrawn
		return comment, nil
	})
}

// RebaseChange re-applies the change on the live version. Items changed
// both by the change and on the live policy since the base are reported
// as a *ConflictError (and kept on the change) instead of overwritten.
// Approvals are kept when the change's own diff is unchanged.
func (s *Service) RebaseChange(ctx context.Context, a Actor, id string) (*ChangeRequest, error) {
	var conflictErr *ConflictError
	c, err := s.step(ctx, a, id, "change.rebase", func(c *ChangeRequest) (string, error) {
		conflictErr = nil
		if err := c.notFinal("rebase"); err != nil {
			return "", err
		}
		if c.State == ChangeStaged {
			return "", fmt.Errorf("policies: rebase change %s: %w: it is staged", id, ErrConflict)
		}
		if err := c.authorOrAdmin(a, "rebase"); err != nil {
			return "", err
		}
		live := s.Current()
		if c.BaseVersion == live.Number {
			return "", fmt.Errorf("policies: rebase change %s: %w: it is already based on the live version %d", id, ErrConflict, live.Number)
		}
		base, mine, err := s.result(ctx, c)
		if err != nil {
			return "", err
		}
		var merged *Policy
		var conflicts []Conflict
		if c.Patch != nil {
			merged, conflicts, err = rebasePatch(c.Patch, base.Policy, live.Policy)
		} else {
			merged, conflicts, err = rebase3(base.Policy, mine, live.Policy)
		}
		if err != nil {
			return "", err
		}
		if len(conflicts) > 0 {
			c.Conflicts = conflicts
			conflictErr = &ConflictError{ID: id, Live: live.Number, Conflicts: conflicts}
			return fmt.Sprintf("%d conflict(s) on version %d", len(conflicts), live.Number), nil
		}
		same := c.Patch != nil || sameItems(base.Policy, mine, live.Policy, merged)
		from := c.BaseVersion
		c.BaseVersion, c.Conflicts = live.Number, []Conflict{}
		if c.Policy != nil {
			c.Policy = merged
		}
		approvals := c.Approvals
		if !same {
			c.Approvals, c.State = []ChangeApproval{}, ChangeOpen
		}
		if err := s.refresh(ctx, c); err != nil {
			return "", err
		}
		if len(c.Approvals) > 0 && c.approved() {
			c.State = ChangeApproved
		} else if len(approvals) > 0 && len(c.Approvals) > 0 {
			c.State = ChangeOpen
		}
		return fmt.Sprintf("from version %d to %d", from, live.Number), nil
	})
	if err != nil {
		return nil, err
	}
	if conflictErr != nil {
		return c, conflictErr
	}
	return c, nil
}

// sameItems reports whether a → b introduces the same items as c → d
// (what approvers approved is what the rebased change brings).
func sameItems(a, b, c, d *Policy) bool {
	set := func(x, y *Policy) map[item]string {
		m := map[item]string{}
		for _, it := range changedItems(x, y) {
			v, _ := json.Marshal(itemValue(y, it))
			m[it] = string(v)
		}
		return m
	}
	return maps.Equal(set(a, b), set(c, d))
}

// ApplyOptions are the variants of ApplyChange.
type ApplyOptions struct {
	// Emergency lets an admin apply without the approvals; Reason is then
	// required. The audit entry is flagged.
	Emergency bool
	Reason    string
	// Stage, when set, serves the change only to its locations and edges
	// (PromoteChange makes it live everywhere).
	Stage *StageRequest
}

// StageRequest says where a change is tried first and when it aborts by
// itself.
type StageRequest struct {
	Locations    []string `json:"locations,omitempty"`
	Edges        []string `json:"edges,omitempty"`
	MaxBlockRate float64  `json:"max_block_rate,omitempty"`
	MaxErrorRate float64  `json:"max_error_rate,omitempty"`
	MinRequests  int64    `json:"min_requests,omitempty"`
}

// ApplyChange makes an approved change live (a new policy version), or
// stages it.
func (s *Service) ApplyChange(ctx context.Context, a Actor, id string, o ApplyOptions) (*ChangeRequest, error) {
	cs, err := s.changeStore()
	if err != nil {
		return nil, err
	}
	if err := checkActor(a); err != nil {
		return nil, err
	}
	if !a.Role.Allows(PermWrite) {
		return nil, &ForbiddenError{Role: a.Role, Permission: PermWrite, What: "apply change requests"}
	}
	o.Reason = strings.TrimSpace(o.Reason)
	if o.Emergency {
		if a.Role != RoleAdmin {
			return nil, &ForbiddenError{Role: a.Role, Permission: PermAdmin, What: "apply an emergency change"}
		}
		if o.Reason == "" {
			return nil, fmt.Errorf("policies: apply change %s: %w: an emergency change needs a reason", id, ErrBadRequest)
		}
	} else if o.Reason != "" {
		return nil, fmt.Errorf("policies: apply change %s: %w: reason is for emergency changes (emergency: true)", id, ErrBadRequest)
	}
	c, err := cs.GetChange(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("policies: change %s: %w", id, err)
	}
	c = s.view(c)
	if err := c.notFinal("apply"); err != nil {
		return nil, err
	}
	switch {
	case c.State == ChangeStaged:
		return nil, fmt.Errorf("policies: apply change %s: %w: it is staged; promote or abort it", id, ErrConflict)
	case c.State == ChangeStale:
		return nil, fmt.Errorf("policies: apply change %s: %w: stale: the live policy is version %d, the change was based on %d; rebase it",
			id, ErrConflict, c.LiveVersion, c.BaseVersion)
	case c.State != ChangeApproved && !o.Emergency:
		var missing []string
		for _, ra := range c.RequiredApprovals {
			if ra.ApprovedBy == "" {
				missing = append(missing, string(ra.Role))
			}
		}
		return nil, fmt.Errorf("policies: apply change %s: %w: not approved: it still needs an approval from %s",
			id, ErrConflict, strings.Join(missing, " and "))
	}
	_, next, err := s.result(ctx, c)
	if err != nil {
		return nil, err
	}
	if err := Validate(next, s.table()); err != nil {
		return nil, err
	}
	if o.Stage != nil {
		return s.stageChange(ctx, a, c, next, o)
	}
	comment := fmt.Sprintf("change %s: %s", c.ID, c.Title)
	if o.Emergency {
		comment = fmt.Sprintf("EMERGENCY change %s: %s (reason: %s)", c.ID, c.Title, o.Reason)
	}
	base := c.BaseVersion
	// The base check makes a second apply of the same change (or one
	// racing another writer) fail instead of applying on another version.
	v, err := s.commitWith(ctx, a, "change.apply", c.ID, comment, 0, func(*Policy) (*Policy, error) { return next, nil },
		commitOpts{base: &base, approved: true, emergency: o.Emergency})
	if err != nil {
		return nil, err
	}
	if o.Emergency {
		s.mEmergency.Inc()
		s.log.Warn("emergency change applied without approvals", "change", c.ID, "actor", a.Name, "reason", o.Reason, "version", v.Number)
	}
	return s.markApplied(ctx, id, v.Number, o.Emergency, o.Reason, nil)
}

// markApplied records on the change that version n made it live.
func (s *Service) markApplied(ctx context.Context, id string, n int64, emergency bool, reason string, stage func(*Stage)) (*ChangeRequest, error) {
	for attempt := 0; attempt < maxCommitAttempts; attempt++ {
		c, err := s.changes.GetChange(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("policies: change %s: %w", id, err)
		}
		prev := c.Rev
		c.State, c.AppliedVersion, c.Emergency, c.EmergencyReason = ChangeApplied, n, emergency, reason
		if stage != nil && c.Stage != nil {
			stage(c.Stage)
		}
		c.Rev, c.Updated = prev+1, time.Now().UTC()
		err = s.changes.PutChange(ctx, c, prev)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("policies: change %s: version %d is live but the change was not marked applied: %w", id, n, err)
		}
		return s.view(c), nil
	}
	return nil, fmt.Errorf("policies: change %s: version %d is live but the change was not marked applied: %w", id, n, ErrConflict)
}

// ChangeFromReview opens a change request from a block-page review: an
// allow-list entry for the review's host, linked to the review. list
// names the allow list ("": the first one; a new list review-allow with
// a first rule allow-reviewed when the policy has none).
func (s *Service) ChangeFromReview(ctx context.Context, a Actor, reviewID, list, title, reason string) (*ChangeRequest, error) {
	r, err := s.store.GetReview(ctx, reviewID)
	if err != nil {
		return nil, fmt.Errorf("policies: review %s: %w", reviewID, err)
	}
	host := r.Host
	if host == "" {
		return nil, fmt.Errorf("policies: review %s: %w: it names no host", reviewID, ErrBadRequest)
	}
	live := s.Current().Policy
	pt := &Patch{}
	if list == "" {
		for _, l := range live.Lists {
			if l.Kind == ListAllow {
				list = l.Name
				break
			}
		}
	}
	if list == "" {
		pt.Lists = &ListsPatch{Put: []List{{Name: "review-allow", Kind: ListAllow, Description: "hosts allowed after a user's review request", Entries: []string{host}}}}
		add := RuleAdd{Rule: Rule{ID: "allow-reviewed", Description: "hosts allowed after review", Lists: []string{"review-allow"}, Action: "allow"}}
		if len(live.Rules) > 0 {
			add.Before = live.Rules[0].ID
		}
		pt.Rules = &RulesPatch{Add: []RuleAdd{add}}
	} else {
		i := slices.IndexFunc(live.Lists, func(l List) bool { return l.Name == list })
		switch {
		case i < 0:
			return nil, fmt.Errorf("policies: review change: %w: list %q does not exist", ErrBadRequest, list)
		case live.Lists[i].Kind != ListAllow:
			return nil, fmt.Errorf("policies: review change: %w: list %q is a %s list, not an allow list", ErrBadRequest, list, live.Lists[i].Kind)
		case slices.Contains(live.Lists[i].Entries, host):
			return nil, fmt.Errorf("policies: review change: %w: %s is already on list %q", ErrConflict, host, list)
		}
		pt.Lists = &ListsPatch{AddEntries: map[string][]string{list: {host}}}
	}
	if title == "" {
		title = "Allow " + host + " (review " + reviewID + ")"
	}
	if reason == "" {
		who := r.User
		if who == "" {
			who = r.ClientIP
		}
		reason = fmt.Sprintf("review request %s from %s for %s", reviewID, who, r.URL)
		if r.Message != "" {
			reason += ": " + r.Message
		}
		if len(reason) > maxChangeText {
			reason = reason[:maxChangeText]
		}
	}
	return s.OpenChange(ctx, a, ChangeInput{Title: title, Reason: reason, Patch: pt, ReviewID: reviewID})
}
