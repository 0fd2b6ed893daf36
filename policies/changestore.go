package policies

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// ChangeStore persists change requests (with their comments and
// approvals) and the one running stage. FileStore keeps them in the data
// directory; policies/redisstore in Redis, announcing stage changes over
// pub/sub so every edge serves a promote or abort at once.
//
// Writes return only once durable. PutChange is a compare-and-set on
// Rev, so two control processes cannot overwrite each other's step.
type ChangeStore interface {
	// PutChange stores c only if the stored revision is prev (0: c.ID is
	// new); otherwise it stores nothing and returns ErrConflict. The
	// caller sets c.Rev = prev+1 before.
	PutChange(ctx context.Context, c *ChangeRequest, prev int64) error
	// GetChange returns one change, or ErrNotFound.
	GetChange(ctx context.Context, id string) (*ChangeRequest, error)
	// ListChanges returns every change, oldest first.
	ListChanges(ctx context.Context) ([]*ChangeRequest, error)
	// GetStage returns the running stage, or ErrNotFound when none runs.
	GetStage(ctx context.Context) (*Stage, error)
	// PutStage replaces the running stage (nil: none) only if the running
	// one belongs to change prev ("" : none runs); otherwise ErrConflict.
	// It announces the change to WatchStage callers.
	PutStage(ctx context.Context, st *Stage, prev string) error
	// WatchStage calls fn whenever the stage may have changed, and once
	// at the start, until ctx is done.
	WatchStage(ctx context.Context, fn func()) error
}

var _ ChangeStore = (*FileStore)(nil)

// PutChange implements ChangeStore.
func (s *FileStore) PutChange(ctx context.Context, c *ChangeRequest, prev int64) error {
	s.chMu.Lock()
	defer s.chMu.Unlock()
	if err := os.MkdirAll(filepath.Join(s.dir, "changes"), 0o700); err != nil {
		return fmt.Errorf("policies: file store: %w", err)
	}
	old, err := s.GetChange(ctx, c.ID)
	switch {
	case errors.Is(err, ErrNotFound):
		if prev != 0 {
			return ErrConflict
		}
	case err != nil:
		return err
	case old.Rev != prev:
		return ErrConflict
	}
	return s.putJSON("changes", c.ID, c)
}

// GetChange implements ChangeStore.
func (s *FileStore) GetChange(_ context.Context, id string) (*ChangeRequest, error) {
	var c ChangeRequest
	if err := s.getJSON("changes", id, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// ListChanges implements ChangeStore.
func (s *FileStore) ListChanges(context.Context) ([]*ChangeRequest, error) {
	dir := filepath.Join(s.dir, "changes")
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	cs, err := listJSON[*ChangeRequest](dir)
	slices.SortFunc(cs, func(a, b *ChangeRequest) int { return a.Created.Compare(b.Created) })
	return cs, err
}

func (s *FileStore) stagePath() string { return filepath.Join(s.dir, "stage.json") }

// GetStage implements ChangeStore.
func (s *FileStore) GetStage(context.Context) (*Stage, error) {
	b, err := os.ReadFile(s.stagePath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("policies: file store: %w", err)
	}
	var st *Stage
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("policies: file store: stage: %w", err)
	}
	if st == nil {
		return nil, ErrNotFound
	}
	return st, nil
}

// PutStage implements ChangeStore.
func (s *FileStore) PutStage(ctx context.Context, st *Stage, prev string) error {
	s.chMu.Lock()
	defer s.chMu.Unlock()
	cur, err := s.GetStage(ctx)
	switch {
	case errors.Is(err, ErrNotFound):
		if prev != "" {
			return ErrConflict
		}
	case err != nil:
		return err
	case cur.ChangeID != prev:
		return ErrConflict
	}
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("policies: file store: %w", err)
	}
	if err := writeFileAtomic(s.stagePath(), b, 0o600); err != nil {
		return err
	}
	s.stageGen.Add(1)
	return nil
}

// WatchStage implements ChangeStore: changes made through this store are
// seen at once, other processes' within PollInterval.
func (s *FileStore) WatchStage(ctx context.Context, fn func()) error {
	every := s.PollInterval
	if every <= 0 {
		every = 500 * time.Millisecond
	}
	fast := time.NewTicker(20 * time.Millisecond)
	defer fast.Stop()
	last, lastMod := s.stageGen.Load(), time.Time{}
	polled := time.Now()
	fn()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-fast.C:
		}
		changed := false
		if g := s.stageGen.Load(); g != last {
			last, changed = g, true
		}
		if time.Since(polled) >= every {
			polled = time.Now()
			if fi, err := os.Stat(s.stagePath()); err == nil && !fi.ModTime().Equal(lastMod) {
				lastMod, changed = fi.ModTime(), true
			}
		}
		if changed {
			fn()
		}
	}
}
