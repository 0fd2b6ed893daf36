// Package redisstore keeps Cordon's policy state in Redis (single node,
// Sentinel or Cluster through go-redis UniversalClient), so every edge
// shares one policy history, audit log, token set and review queue. A new
// version is announced on a pub/sub channel; edges reload it at once, and a
// periodic check catches announcements missed during a disconnection.
//
// It implements policies.Store, policies.ChangeStore (change requests,
// their comments and approvals, the running stage, announced on its own
// channel) and policies.EdgeStore (edge heartbeats), and owns nothing else. Durability is Redis's:
// run it with appendonly yes and appendfsync always (or replicas) for a
// write to survive a crash once acknowledged.
package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cordon-gw/cordon/policies"
)

// Config configures a Store. The zero value is usable.
type Config struct {
	// Prefix starts every key and the channel name. Empty means "cordon".
	// Keys share one hash tag so the version script works on Cluster.
	Prefix string `yaml:"prefix"`
	// PollInterval is how often Watch checks the current version besides
	// listening to pub/sub (missed messages during reconnects). Zero
	// means 5s.
	PollInterval time.Duration `yaml:"poll_interval"`
	// Logger: nil means slog.Default().
	Logger *slog.Logger `yaml:"-"`
}

// Store is a policies.Store on Redis.
type Store struct {
	rdb  redis.UniversalClient
	cfg  Config
	log  *slog.Logger
	keys keys
}

type keys struct {
	current, versions, audit, tokens, reviews, channel string
	changes, changeRevs, stage, stageChannel, edges    string
	version                                            func(n int64) string
}

var _ policies.Store = (*Store)(nil)

// New returns a Store using rdb. It does not contact Redis.
func New(rdb redis.UniversalClient, cfg Config) *Store {
	if cfg.Prefix == "" {
		cfg.Prefix = "cordon"
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 5 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	tag := "{" + cfg.Prefix + ":policies}"
	return &Store{rdb: rdb, cfg: cfg, log: log.With("component", "policies.redisstore"), keys: keys{
		current:  tag + ":current",
		versions: tag + ":versions",
		audit:    tag + ":audit",
		tokens:   tag + ":tokens",
		reviews:  tag + ":reviews",
		channel:  cfg.Prefix + ":policies:version",
		// change requests and the stage share the hash tag (scripts)
		changes:      tag + ":changes",
		changeRevs:   tag + ":change-revs",
		stage:        tag + ":stage",
		stageChannel: cfg.Prefix + ":policies:stage",
		edges:        "{" + cfg.Prefix + ":edges}:heartbeats",
		version:      func(n int64) string { return tag + ":version:" + strconv.FormatInt(n, 10) },
	}}
}

// Channel is the pub/sub channel new version numbers are published on.
func (s *Store) Channel() string { return s.keys.channel }

func wrap(op string, err error) error {
	return fmt.Errorf("policies/redisstore: %s: %w", op, err)
}

// LatestVersion implements policies.Store.
func (s *Store) LatestVersion(ctx context.Context) (*policies.Version, error) {
	n, err := s.rdb.Get(ctx, s.keys.current).Int64()
	if errors.Is(err, redis.Nil) {
		return nil, policies.ErrNotFound
	}
	if err != nil {
		return nil, wrap("latest version", err)
	}
	return s.GetVersion(ctx, n)
}

// GetVersion implements policies.Store.
func (s *Store) GetVersion(ctx context.Context, n int64) (*policies.Version, error) {
	b, err := s.rdb.Get(ctx, s.keys.version(n)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, policies.ErrNotFound
	}
	if err != nil {
		return nil, wrap("get version", err)
	}
	var v policies.Version
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, wrap(fmt.Sprintf("decode version %d", n), err)
	}
	return &v, nil
}

// ListVersions implements policies.Store.
func (s *Store) ListVersions(ctx context.Context) ([]policies.VersionInfo, error) {
	raw, err := s.rdb.LRange(ctx, s.keys.versions, 0, -1).Result()
	if err != nil {
		return nil, wrap("list versions", err)
	}
	out := make([]policies.VersionInfo, 0, len(raw))
	for _, r := range raw {
		var vi policies.VersionInfo
		if err := json.Unmarshal([]byte(r), &vi); err != nil {
			return nil, wrap("decode version info", err)
		}
		out = append(out, vi)
	}
	return out, nil
}

// putVersion stores a version, its info and its audit entry and
// publishes the number, only if it follows the current version. It
// returns the audit sequence number, or -1 on conflict.
var putVersion = redis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur + 1 ~= tonumber(ARGV[1]) then return -1 end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('RPUSH', KEYS[3], ARGV[3])
redis.call('SET', KEYS[1], ARGV[1])
local seq = redis.call('RPUSH', KEYS[4], ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[1])
return seq
`)

// PutVersion implements policies.Store: one atomic script stores the
// version and its audit entry and announces it.
func (s *Store) PutVersion(ctx context.Context, v *policies.Version, audit *policies.AuditEntry) error {
	audit.Version = v.Number
	audit.Seq = 0
	vb, err := json.Marshal(v)
	if err != nil {
		return wrap("encode version", err)
	}
	ib, err := json.Marshal(v.VersionInfo)
	if err != nil {
		return wrap("encode version info", err)
	}
	ab, err := json.Marshal(audit)
	if err != nil {
		return wrap("encode audit", err)
	}
	seq, err := putVersion.Run(ctx, s.rdb,
		[]string{s.keys.current, s.keys.version(v.Number), s.keys.versions, s.keys.audit},
		v.Number, vb, ib, ab, s.keys.channel).Int64()
	if err != nil {
		return wrap("put version", err)
	}
	if seq < 0 {
		return policies.ErrConflict
	}
	audit.Seq = seq
	return nil
}

// AppendAudit implements policies.Store. The sequence number is the
// entry's position in the append-only list.
func (s *Store) AppendAudit(ctx context.Context, e *policies.AuditEntry) error {
	e.Seq = 0
	b, err := json.Marshal(e)
	if err != nil {
		return wrap("encode audit", err)
	}
	n, err := s.rdb.RPush(ctx, s.keys.audit, b).Result()
	if err != nil {
		return wrap("append audit", err)
	}
	e.Seq = n
	return nil
}

// AuditBefore implements policies.Store.
func (s *Store) AuditBefore(ctx context.Context, before int64, n int) ([]policies.AuditEntry, error) {
	if n <= 0 {
		return nil, nil
	}
	end := before - 2 // index of Seq before-1
	if before <= 0 {
		l, err := s.rdb.LLen(ctx, s.keys.audit).Result()
		if err != nil {
			return nil, wrap("audit length", err)
		}
		end = l - 1
	}
	if end < 0 {
		return nil, nil
	}
	start := max(end-int64(n)+1, 0)
	raw, err := s.rdb.LRange(ctx, s.keys.audit, start, end).Result()
	if err != nil {
		return nil, wrap("read audit", err)
	}
	out := make([]policies.AuditEntry, 0, len(raw))
	for i := len(raw) - 1; i >= 0; i-- {
		var e policies.AuditEntry
		if err := json.Unmarshal([]byte(raw[i]), &e); err != nil {
			return nil, wrap("decode audit", err)
		}
		e.Seq = start + int64(i) + 1
		out = append(out, e)
	}
	return out, nil
}

func (s *Store) hput(ctx context.Context, key, id string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return wrap("encode", err)
	}
	if err := s.rdb.HSet(ctx, key, id, b).Err(); err != nil {
		return wrap("write "+key, err)
	}
	return nil
}

func hget[T any](ctx context.Context, s *Store, key, id string) (T, error) {
	var v T
	b, err := s.rdb.HGet(ctx, key, id).Bytes()
	if errors.Is(err, redis.Nil) {
		return v, policies.ErrNotFound
	}
	if err != nil {
		return v, wrap("read "+key, err)
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, wrap("decode "+key, err)
	}
	return v, nil
}

func hall[T any](ctx context.Context, s *Store, key string) ([]T, error) {
	m, err := s.rdb.HGetAll(ctx, key).Result()
	if err != nil {
		return nil, wrap("read "+key, err)
	}
	out := make([]T, 0, len(m))
	for _, raw := range m {
		var v T
		if err := json.Unmarshal([]byte(raw), &v); err != nil {
			return nil, wrap("decode "+key, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// PutToken implements policies.Store.
func (s *Store) PutToken(ctx context.Context, t policies.TokenRecord) error {
	return s.hput(ctx, s.keys.tokens, t.ID, t)
}

// GetToken implements policies.Store.
func (s *Store) GetToken(ctx context.Context, id string) (policies.TokenRecord, error) {
	return hget[policies.TokenRecord](ctx, s, s.keys.tokens, id)
}

// ListTokens implements policies.Store.
func (s *Store) ListTokens(ctx context.Context) ([]policies.TokenRecord, error) {
	ts, err := hall[policies.TokenRecord](ctx, s, s.keys.tokens)
	slices.SortFunc(ts, func(a, b policies.TokenRecord) int { return a.Created.Compare(b.Created) })
	return ts, err
}

// DeleteToken implements policies.Store.
func (s *Store) DeleteToken(ctx context.Context, id string) error {
	n, err := s.rdb.HDel(ctx, s.keys.tokens, id).Result()
	if err != nil {
		return wrap("delete token", err)
	}
	if n == 0 {
		return policies.ErrNotFound
	}
	return nil
}

// PutReview implements policies.Store.
func (s *Store) PutReview(ctx context.Context, r policies.Review) error {
	return s.hput(ctx, s.keys.reviews, r.ID, r)
}

// GetReview implements policies.Store.
func (s *Store) GetReview(ctx context.Context, id string) (policies.Review, error) {
	return hget[policies.Review](ctx, s, s.keys.reviews, id)
}

// ListReviews implements policies.Store.
func (s *Store) ListReviews(ctx context.Context) ([]policies.Review, error) {
	rs, err := hall[policies.Review](ctx, s, s.keys.reviews)
	slices.SortFunc(rs, func(a, b policies.Review) int { return a.Time.Compare(b.Time) })
	return rs, err
}

// Watch implements policies.Store: it subscribes to the version channel
// (go-redis resubscribes after reconnecting) and also reads the current
// version every PollInterval, so a message lost while disconnected delays
// a reload by at most that long.
func (s *Store) Watch(ctx context.Context, fn func(int64)) error {
	sub := s.rdb.Subscribe(ctx, s.keys.channel)
	defer sub.Close()
	ch := sub.Channel()
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	poll := func() {
		n, err := s.rdb.Get(ctx, s.keys.current).Int64()
		switch {
		case err == nil:
			fn(n)
		case errors.Is(err, redis.Nil):
		case ctx.Err() == nil:
			s.log.Warn("read current policy version", "err", err)
		}
	}
	poll()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m, ok := <-ch:
			if !ok {
				return wrap("watch", errors.New("subscription closed"))
			}
			if n, err := strconv.ParseInt(m.Payload, 10, 64); err == nil {
				fn(n)
			}
		case <-t.C:
			poll()
		}
	}
}

// --- change requests, stage, edges ---

var (
	_ policies.ChangeStore = (*Store)(nil)
	_ policies.EdgeStore   = (*Store)(nil)
)

// putChange stores a change only if its stored revision is ARGV[2]
// (0: new).
var putChange = redis.NewScript(`
local cur = redis.call('HGET', KEYS[2], ARGV[1])
local rev = tonumber(cur or '0')
if rev ~= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
return 1
`)

// PutChange implements policies.ChangeStore.
func (s *Store) PutChange(ctx context.Context, c *policies.ChangeRequest, prev int64) error {
	b, err := json.Marshal(c)
	if err != nil {
		return wrap("encode change", err)
	}
	ok, err := putChange.Run(ctx, s.rdb, []string{s.keys.changes, s.keys.changeRevs}, c.ID, prev, b, c.Rev).Int()
	if err != nil {
		return wrap("put change", err)
	}
	if ok == 0 {
		return policies.ErrConflict
	}
	return nil
}

// GetChange implements policies.ChangeStore.
func (s *Store) GetChange(ctx context.Context, id string) (*policies.ChangeRequest, error) {
	c, err := hget[*policies.ChangeRequest](ctx, s, s.keys.changes, id)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// ListChanges implements policies.ChangeStore.
func (s *Store) ListChanges(ctx context.Context) ([]*policies.ChangeRequest, error) {
	cs, err := hall[*policies.ChangeRequest](ctx, s, s.keys.changes)
	slices.SortFunc(cs, func(a, b *policies.ChangeRequest) int { return a.Created.Compare(b.Created) })
	return cs, err
}

// GetStage implements policies.ChangeStore.
func (s *Store) GetStage(ctx context.Context) (*policies.Stage, error) {
	b, err := s.rdb.Get(ctx, s.keys.stage).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, policies.ErrNotFound
	}
	if err != nil {
		return nil, wrap("get stage", err)
	}
	var st *policies.Stage
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, wrap("decode stage", err)
	}
	if st == nil {
		return nil, policies.ErrNotFound
	}
	return st, nil
}

// putStage replaces the stage only if the running one belongs to change
// ARGV[1] ("" : none), and announces it.
var putStage = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
local owner = ''
if cur then owner = cjson.decode(cur)['change_id'] or '' end
if owner ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2]) end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
`)

// PutStage implements policies.ChangeStore.
func (s *Store) PutStage(ctx context.Context, st *policies.Stage, prev string) error {
	var b []byte
	id := ""
	if st != nil {
		var err error
		if b, err = json.Marshal(st); err != nil {
			return wrap("encode stage", err)
		}
		id = st.ChangeID
	}
	ok, err := putStage.Run(ctx, s.rdb, []string{s.keys.stage}, prev, b, s.keys.stageChannel, id).Int()
	if err != nil {
		return wrap("put stage", err)
	}
	if ok == 0 {
		return policies.ErrConflict
	}
	return nil
}

// WatchStage implements policies.ChangeStore: pub/sub announcements, and a
// read every PollInterval for the ones missed while reconnecting.
func (s *Store) WatchStage(ctx context.Context, fn func()) error {
	sub := s.rdb.Subscribe(ctx, s.keys.stageChannel)
	defer sub.Close()
	ch := sub.Channel()
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	fn()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case _, ok := <-ch:
			if !ok {
				return wrap("watch stage", errors.New("subscription closed"))
			}
			fn()
		case <-t.C:
			fn()
		}
	}
}

// edgeTTL drops heartbeats of edges gone for a day from the registry.
const edgeTTL = 24 * time.Hour

// PutEdge implements policies.EdgeStore.
func (s *Store) PutEdge(ctx context.Context, e policies.EdgeStatus) error {
	b, err := json.Marshal(e)
	if err != nil {
		return wrap("encode edge", err)
	}
	if err := s.rdb.HSet(ctx, s.keys.edges, e.Name, b).Err(); err != nil {
		return wrap("put edge", err)
	}
	return nil
}

// ListEdges implements policies.EdgeStore; edges silent for a day are
// removed.
func (s *Store) ListEdges(ctx context.Context) ([]policies.EdgeStatus, error) {
	es, err := hall[policies.EdgeStatus](ctx, s, s.keys.edges)
	if err != nil {
		return nil, err
	}
	out := es[:0]
	for _, e := range es {
		if time.Since(e.LastHeartbeat) > edgeTTL {
			s.rdb.HDel(ctx, s.keys.edges, e.Name)
			continue
		}
		out = append(out, e)
	}
	return out, nil
}
