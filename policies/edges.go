package policies

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Edge registry defaults.
const (
	// DefaultHeartbeat is how often an edge publishes its status.
	DefaultHeartbeat = 2 * time.Second
	// EdgeStaleAfter is how long without a heartbeat before an edge is
	// shown stale (and its traffic left out of observed effects).
	EdgeStaleAfter = 15 * time.Second
)

// EdgeStatus is one edge's heartbeat.
type EdgeStatus struct {
	Name          string `json:"name"`
	Role          string `json:"role"`
	PolicyVersion int64  `json:"policy_version"`
	// StagedVersion is the staged policy the edge serves (0: none);
	// InStage is "all" when the whole edge is in the stage, "locations"
	// when only the stage's locations are, "" without a stage.
	StagedVersion int64     `json:"staged_version"`
	InStage       string    `json:"in_stage"`
	FeedVersion   uint64    `json:"feed_version"`
	LastHeartbeat time.Time `json:"last_heartbeat"`
	Stale         bool      `json:"stale"`
	// Over the last minute: requests per second, Cordon's added latency.
	RequestsPerSecond float64 `json:"requests_per_second"`
	LatencyP50MS      float64 `json:"latency_p50_ms"`
	LatencyP99MS      float64 `json:"latency_p99_ms"`
	// Effect counts the live and staged versions' decisions (for the
	// control's observed effect; not shown by GET /edges).
	Effect []VersionEffect `json:"effect,omitempty"`
}

// EdgeStore holds the newest heartbeat of every edge: in Redis when
// edges share it (policies/redisstore), in memory otherwise.
type EdgeStore interface {
	// PutEdge stores e, replacing the edge's previous heartbeat.
	PutEdge(ctx context.Context, e EdgeStatus) error
	// ListEdges returns every edge's newest heartbeat.
	ListEdges(ctx context.Context) ([]EdgeStatus, error)
}

// MemoryEdges is the in-process EdgeStore of a single `cordon serve`.
type MemoryEdges struct {
	mu sync.Mutex
	m  map[string]EdgeStatus
}

var _ EdgeStore = (*MemoryEdges)(nil)

// PutEdge implements EdgeStore.
func (m *MemoryEdges) PutEdge(_ context.Context, e EdgeStatus) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[string]EdgeStatus{}
	}
	m.m[e.Name] = e
	return nil
}

// ListEdges implements EdgeStore.
func (m *MemoryEdges) ListEdges(context.Context) ([]EdgeStatus, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]EdgeStatus, 0, len(m.m))
	for _, e := range m.m {
		out = append(out, e)
	}
	return out, nil
}

// HeartbeatConfig describes the edge a Service reports for.
type HeartbeatConfig struct {
	// Name identifies the edge (the registry key; stages name edges by
	// it). Required.
	Name string
	// Role is the process role ("all", "edge").
	Role string
	// Interval between heartbeats; zero means DefaultHeartbeat.
	Interval time.Duration
	// FeedVersion returns the feed snapshot version served.
	FeedVersion func() uint64
}

// Heartbeat returns this edge's status now.
func (s *Service) Heartbeat(cfg HeartbeatConfig) EdgeStatus {
	now := time.Now().UTC()
	e := EdgeStatus{Name: cfg.Name, Role: cfg.Role, LastHeartbeat: now}
	if s.engine != nil {
		e.PolicyVersion = s.engine.PolicyVersion()
		var all bool
		e.StagedVersion, all = s.engine.StagedVersion()
		switch {
		case e.StagedVersion != 0 && all:
			e.InStage = "all"
		case e.StagedVersion != 0:
			e.InStage = "locations"
		}
	} else if cur := s.Current(); cur != nil {
		e.PolicyVersion = cur.Number
	}
	if cfg.FeedVersion != nil {
		e.FeedVersion = cfg.FeedVersion()
	}
	e.RequestsPerSecond, e.LatencyP50MS, e.LatencyP99MS = s.obs.minute(now)
	versions := []int64{e.PolicyVersion}
	if st := s.stage.Load(); st != nil {
		versions = append(versions, st.Version, st.BaseVersion)
	}
	e.Effect = s.obs.effects(versions...)
	return e
}

// RunHeartbeat publishes this edge's status to the edge registry every
// interval until ctx is done. A failed publish is logged and retried at
// the next beat.
func (s *Service) RunHeartbeat(ctx context.Context, cfg HeartbeatConfig) error {
	if s.edges == nil {
		return fmt.Errorf("policies: heartbeat: %w: no edge store", ErrBadRequest)
	}
	if cfg.Name == "" {
		return fmt.Errorf("policies: heartbeat: %w: the edge has no name", ErrBadRequest)
	}
	every := cfg.Interval
	if every <= 0 {
		every = DefaultHeartbeat
	}
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		err := s.edges.PutEdge(ctx, s.Heartbeat(cfg))
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			s.log.Warn("edge heartbeat not published; retrying", "edge", cfg.Name, "err", err)
			failing = true
		case err == nil && failing:
			s.log.Info("edge heartbeat published again", "edge", cfg.Name)
			failing = false
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Edges lists the registry, by name, with stale edges marked. The raw
// effect counts are left out.
func (s *Service) Edges(ctx context.Context) ([]EdgeStatus, error) {
	es, err := s.liveEdges(ctx)
	if err != nil {
		return nil, err
	}
	for i := range es {
		es[i].Effect = nil
	}
	return es, nil
}

func (s *Service) liveEdges(ctx context.Context) ([]EdgeStatus, error) {
	if s.edges == nil {
		return []EdgeStatus{}, nil
	}
	es, err := s.edges.ListEdges(ctx)
	if err != nil {
		return nil, fmt.Errorf("policies: edges: %w", err)
	}
	now := time.Now()
	for i := range es {
		es[i].Stale = now.Sub(es[i].LastHeartbeat) > EdgeStaleAfter
	}
	slices.SortFunc(es, func(a, b EdgeStatus) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	if es == nil {
		es = []EdgeStatus{}
	}
	return es, nil
}
