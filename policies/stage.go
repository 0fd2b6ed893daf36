package policies

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Stage outcomes.
const (
	StagePromoted    = "promoted"
	StageAborted     = "aborted"
	StageAutoAborted = "auto-aborted"
)

// stageChange starts serving an approved change's policy to a stage.
func (s *Service) stageChange(ctx context.Context, a Actor, c *ChangeRequest, next *Policy, o ApplyOptions) (*ChangeRequest, error) {
	sr := o.Stage
	if len(sr.Locations) == 0 && len(sr.Edges) == 0 {
		return nil, fmt.Errorf("policies: stage change %s: %w: name locations or edges to stage on", c.ID, ErrBadRequest)
	}
	live := s.Current()
	known := map[string]bool{}
	for _, l := range live.Policy.Locations {
		known[l.Name] = true
	}
	for _, l := range next.Locations {
		known[l.Name] = true
	}
	for _, l := range sr.Locations {
		if !known[l] {
			return nil, fmt.Errorf("policies: stage change %s: %w: location %q is not in the policy", c.ID, ErrBadRequest, l)
		}
	}
	if len(sr.Edges) > 0 {
		es, err := s.liveEdges(ctx)
		if err != nil {
			return nil, err
		}
		for _, n := range sr.Edges {
			if !slices.ContainsFunc(es, func(e EdgeStatus) bool { return e.Name == n }) {
				return nil, fmt.Errorf("policies: stage change %s: %w: edge %q is not in the edge registry (GET /api/v1/edges)", c.ID, ErrBadRequest, n)
			}
		}
	}
	for _, r := range []float64{sr.MaxBlockRate, sr.MaxErrorRate} {
		if r < 0 || r > 1 {
			return nil, fmt.Errorf("policies: stage change %s: %w: rate %v: want 0 (off) to 1", c.ID, ErrBadRequest, r)
		}
	}
	if sr.MinRequests < 0 {
		return nil, fmt.Errorf("policies: stage change %s: %w: min_requests %d: want 0 or more", c.ID, ErrBadRequest, sr.MinRequests)
	}
	st := &Stage{ChangeID: c.ID, Locations: slices.Clone(sr.Locations), Edges: slices.Clone(sr.Edges),
		Version: live.Number + 1, BaseVersion: live.Number, MaxBlockRate: sr.MaxBlockRate, MaxErrorRate: sr.MaxErrorRate,
		MinRequests: sr.MinRequests, Started: time.Now().UTC(), Policy: next}
	if st.MinRequests == 0 {
		st.MinRequests = DefaultStageMinRequests
	}
	if err := s.changes.PutStage(ctx, st, ""); err != nil {
		if errors.Is(err, ErrConflict) {
			if cur, gerr := s.changes.GetStage(ctx); gerr == nil {
				return nil, fmt.Errorf("policies: stage change %s: %w: change %s is staged; promote or abort it first", c.ID, ErrConflict, cur.ChangeID)
			}
		}
		return nil, fmt.Errorf("policies: stage change %s: %w", c.ID, err)
	}
	view := *st
	view.Policy = nil
	out, err := s.step(ctx, a, c.ID, "change.stage", func(c *ChangeRequest) (string, error) {
		if c.State != ChangeApproved && !o.Emergency {
			return "", fmt.Errorf("policies: stage change %s: %w: it is %s", c.ID, ErrConflict, c.State)
		}
		c.State, c.Stage = ChangeStaged, &view
		if o.Emergency {
			c.Emergency, c.EmergencyReason = true, o.Reason
		}
		return fmt.Sprintf("version %d on locations %v edges %v", st.Version, st.Locations, st.Edges), nil
	})
	if err != nil {
		// undo the stage: nothing half-applied
		if uerr := s.changes.PutStage(context.WithoutCancel(ctx), nil, c.ID); uerr != nil {
			s.log.Error("stage left running after its change failed to record it", "change", c.ID, "err", uerr)
		}
		return nil, err
	}
	if o.Emergency {
		s.mEmergency.Inc()
	}
	s.serveStage(st)
	return out, nil
}

// PromoteChange makes a staged change live everywhere: it is stored as
// the next version (the number its staged decisions carried) and the
// stage ends.
func (s *Service) PromoteChange(ctx context.Context, a Actor, id, comment string) (*ChangeRequest, error) {
	cs, err := s.changeStore()
	if err != nil {
		return nil, err
	}
	if err := checkActor(a); err != nil {
		return nil, err
	}
	if !a.Role.Allows(PermWrite) {
		return nil, &ForbiddenError{Role: a.Role, Permission: PermWrite, What: "promote staged changes"}
	}
	st, err := cs.GetStage(ctx)
	if errors.Is(err, ErrNotFound) || (err == nil && st.ChangeID != id) {
		return nil, fmt.Errorf("policies: promote change %s: %w: it is not staged", id, ErrConflict)
	}
	if err != nil {
		return nil, fmt.Errorf("policies: promote change %s: %w", id, err)
	}
	c, err := cs.GetChange(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("policies: change %s: %w", id, err)
	}
	text := fmt.Sprintf("change %s: %s (promoted from stage)", id, c.Title)
	if comment != "" {
		text += ": " + comment
	}
	base := st.BaseVersion
	v, err := s.commitWith(ctx, a, "change.promote", id, text, 0, func(*Policy) (*Policy, error) { return st.Policy.Clone(), nil },
		commitOpts{base: &base, approved: true, emergency: c.Emergency})
	if err != nil {
		return nil, err
	}
	if err := cs.PutStage(ctx, nil, id); err != nil && !errors.Is(err, ErrConflict) {
		return nil, fmt.Errorf("policies: promote change %s: version %d is live; ending the stage: %w", id, v.Number, err)
	}
	s.serveStage(nil)
	now := time.Now().UTC()
	return s.markApplied(ctx, id, v.Number, c.Emergency, c.EmergencyReason, func(x *Stage) {
		x.Outcome, x.Ended = StagePromoted, now
	})
}

// AbortChange ends a change's stage: every request gets the live version
// again and the change is approved (it can be staged again or applied).
func (s *Service) AbortChange(ctx context.Context, a Actor, id, reason string) (*ChangeRequest, error) {
	if !a.Role.Allows(PermWrite) {
		return nil, &ForbiddenError{Role: a.Role, Permission: PermWrite, What: "abort staged changes"}
	}
	return s.abort(ctx, a, id, StageAborted, reason)
}

func (s *Service) abort(ctx context.Context, a Actor, id, outcome, reason string) (*ChangeRequest, error) {
	cs, err := s.changeStore()
	if err != nil {
		return nil, err
	}
	if err := checkActor(a); err != nil {
		return nil, err
	}
	if len(reason) > maxChangeComment {
		return nil, fmt.Errorf("policies: abort: %w: reason longer than %d characters", ErrBadRequest, maxChangeComment)
	}
	if err := cs.PutStage(ctx, nil, id); err != nil {
		if errors.Is(err, ErrConflict) {
			return nil, fmt.Errorf("policies: abort change %s: %w: it is not staged", id, ErrConflict)
		}
		return nil, fmt.Errorf("policies: abort change %s: %w", id, err)
	}
	s.serveStage(nil)
	action := "change.abort"
	if outcome == StageAutoAborted {
		action = "change.auto_abort"
		s.mAutoAbort.Inc()
	}
	return s.step(ctx, a, id, action, func(c *ChangeRequest) (string, error) {
		c.State = ChangeApproved
		if c.Stage != nil {
			c.Stage.Outcome, c.Stage.Ended, c.Stage.AbortReason = outcome, time.Now().UTC(), reason
		}
		return reason, nil
	})
}

// serveStage serves st on the engine (nil: no stage).
func (s *Service) serveStage(st *Stage) {
	prev := s.stage.Load()
	if st == nil {
		s.stage.Store(nil)
		if s.engine != nil {
			s.engine.ClearStage()
		}
		return
	}
	if prev != nil && prev.ChangeID == st.ChangeID && prev.Started.Equal(st.Started) {
		return
	}
	s.obs.reset(st.Version)
	if s.engine != nil {
		if st.Version <= s.engine.PolicyVersion() {
			s.engine.ClearStage() // promoted, or overtaken by a newer live version
			s.stage.Store(nil)
			return
		}
		all := s.edgeName != "" && slices.Contains(st.Edges, s.edgeName)
		if err := s.engine.SetStage(st.Policy, st.Version, st.Locations, all); err != nil {
			s.log.Warn("staged policy not served; the live version keeps serving", "change", st.ChangeID, "err", err)
			return
		}
	}
	s.stage.Store(st)
}

// RunStage follows the running stage (through ChangeStore.WatchStage) and
// serves it, until ctx is done.
func (s *Service) RunStage(ctx context.Context) error {
	if s.changes == nil {
		return nil
	}
	failing := false
	err := s.changes.WatchStage(ctx, func() {
		st, err := s.changes.GetStage(ctx)
		switch {
		case errors.Is(err, ErrNotFound):
			s.serveStage(nil)
		case err != nil:
			if ctx.Err() == nil && !failing {
				s.log.Warn("stage not read; serving what was known", "err", err)
			}
			failing = true
			return
		default:
			s.serveStage(st)
		}
		failing = false
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// ObservedEffect sums what every live edge reported for the staged
// version and for the version the rest is served.
func (s *Service) ObservedEffect(ctx context.Context, c *ChangeRequest) (*ObservedEffect, error) {
	if c.Stage == nil {
		return nil, fmt.Errorf("policies: effect of change %s: %w: it was never staged", c.ID, ErrNotFound)
	}
	es, err := s.liveEdges(ctx)
	if err != nil {
		return nil, err
	}
	eff := &ObservedEffect{StagedVersion: c.Stage.Version, LiveVersion: c.Stage.BaseVersion, Since: c.Stage.Started, Edges: []string{}}
	var staged, rest []VersionEffect
	for _, e := range es {
		if e.Stale {
			continue
		}
		eff.Edges = append(eff.Edges, e.Name)
		for _, ve := range e.Effect {
			switch ve.Version {
			case c.Stage.Version:
				staged = append(staged, ve)
			case c.Stage.BaseVersion:
				rest = append(rest, ve)
			}
		}
	}
	eff.Staged, eff.Rest = summarize(staged), summarize(rest)
	return eff, nil
}

// RunStageGuard aborts the running stage by itself when the live version
// moved past its base, or when its staged traffic crosses the change's
// block or error rate threshold; it checks every interval until ctx is
// done. Only the control runs it.
func (s *Service) RunStageGuard(ctx context.Context, every time.Duration) error {
	if s.changes == nil {
		return nil
	}
	if every <= 0 {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	sys := Actor{Name: "cordon", Role: RoleAdmin, Source: SourceSystem}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		st, err := s.changes.GetStage(ctx)
		if err != nil {
			continue
		}
		reason := ""
		if live := s.Current().Number; live != st.BaseVersion {
			reason = fmt.Sprintf("the live policy moved to version %d (the stage was based on %d)", live, st.BaseVersion)
		} else if st.MaxBlockRate > 0 || st.MaxErrorRate > 0 {
			view := &Stage{Version: st.Version, BaseVersion: st.BaseVersion, Started: st.Started}
			eff, err := s.ObservedEffect(ctx, &ChangeRequest{ID: st.ChangeID, Stage: view})
			if err != nil || eff.Staged.Requests < st.MinRequests {
				continue
			}
			var why []string
			if st.MaxBlockRate > 0 && eff.Staged.BlockRate > st.MaxBlockRate {
				why = append(why, fmt.Sprintf("block rate %.4f over the threshold %.4f", eff.Staged.BlockRate, st.MaxBlockRate))
			}
			if st.MaxErrorRate > 0 && eff.Staged.ErrorRate > st.MaxErrorRate {
				why = append(why, fmt.Sprintf("error rate %.4f over the threshold %.4f", eff.Staged.ErrorRate, st.MaxErrorRate))
			}
			if len(why) > 0 {
				reason = strings.Join(why, "; ") + fmt.Sprintf(" (%d staged requests)", eff.Staged.Requests)
			}
		}
		if reason == "" {
			continue
		}
		if _, err := s.abort(ctx, sys, st.ChangeID, StageAutoAborted, reason); err != nil && ctx.Err() == nil {
			s.log.Warn("stage auto-abort failed", "change", st.ChangeID, "err", err)
			continue
		}
		s.log.Warn("stage auto-aborted", "change", st.ChangeID, "reason", reason)
	}
}
