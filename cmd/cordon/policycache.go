package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/cordon-gw/cordon/policies"
)

// cachedPolicyStore keeps a local copy of the newest policy version read
// from a shared store (Redis), so an edge that starts, or reloads, while
// Redis is unreachable serves the last policy it knew instead of nothing.
// Writes go to the shared store only.
type cachedPolicyStore struct {
	policies.Store
	path   string
	log    *slog.Logger
	cached atomic.Int64 // version number last written to path
}

var _ policies.Store = (*cachedPolicyStore)(nil)

func newCachedPolicyStore(remote policies.Store, path string, log *slog.Logger) *cachedPolicyStore {
	return &cachedPolicyStore{Store: remote, path: path, log: log}
}

func (c *cachedPolicyStore) LatestVersion(ctx context.Context) (*policies.Version, error) {
	v, err := c.Store.LatestVersion(ctx)
	if err == nil {
		if v.Number != c.cached.Load() {
			if werr := c.write(v); werr != nil {
				c.log.Warn("policy cache not written", "path", c.path, "err", werr)
			} else {
				c.cached.Store(v.Number)
			}
		}
		return v, nil
	}
	if errors.Is(err, policies.ErrNotFound) {
		return nil, err
	}
	cached, cerr := c.read()
	if cerr != nil {
		return nil, fmt.Errorf("%w (and no local policy cache: %v)", err, cerr)
	}
	c.log.Warn("shared policy store unreachable: serving the locally cached version", "version", cached.Number, "err", err)
	return cached, nil
}

func (c *cachedPolicyStore) write(v *policies.Version) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(c.path), 0o750); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(c.path), ".policy-cache-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), c.path)
}

func (c *cachedPolicyStore) read() (*policies.Version, error) {
	data, err := os.ReadFile(c.path)
	if err != nil {
		return nil, err
	}
	var v policies.Version
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("policy cache %s: %w", c.path, err)
	}
	if v.Policy == nil || v.Number <= 0 {
		return nil, fmt.Errorf("policy cache %s: no policy in it", c.path)
	}
	return &v, nil
}
