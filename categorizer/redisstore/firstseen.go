package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cordon-gw/cordon/categorizer"
)

// FirstSeen is a categorizer.FirstSeenStore in Redis: one key per
// registrable domain, {Prefix}:seen:<domain> = Unix seconds of the first
// sighting by any edge, written with SETNX so the earliest writer wins;
// {Prefix}:newly_seen:learning_start = Unix seconds of the first start of
// any edge (the learning period), also SETNX, so every edge agrees.
type FirstSeen struct {
	rdb       redis.UniversalClient
	key       string
	startKey  string
	retention time.Duration
}

var _ categorizer.FirstSeenStore = (*FirstSeen)(nil)

// NewFirstSeen returns a FirstSeen on client. retention > 0 expires a
// record that long after the first sighting (the domain then counts as
// new again); 0 keeps records forever.
func NewFirstSeen(client redis.UniversalClient, cfg Config, retention time.Duration) (*FirstSeen, error) {
	if client == nil {
		return nil, fmt.Errorf("redisstore: nil client")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	tag := "{" + cfg.Prefix + "}"
	return &FirstSeen{rdb: client, key: tag + ":seen:", startKey: tag + ":newly_seen:learning_start", retention: retention}, nil
}

// FirstSeen implements categorizer.FirstSeenStore.
func (s *FirstSeen) FirstSeen(ctx context.Context, domain string, at time.Time) (time.Time, error) {
	k := s.key + domain
	pipe := s.rdb.Pipeline()
	set := pipe.SetNX(ctx, k, at.Unix(), s.retention)
	get := pipe.Get(ctx, k)
	if _, err := pipe.Exec(ctx); err != nil {
		return at, fmt.Errorf("redisstore: first seen %s: %w", domain, err)
	}
	if set.Val() {
		return at, nil
	}
	sec, err := strconv.ParseInt(get.Val(), 10, 64)
	if err != nil {
		return at, fmt.Errorf("redisstore: first seen %s: bad value %q", domain, get.Val())
	}
	return time.Unix(sec, 0), nil
}

// Sighting implements categorizer.FirstSeenStore.
func (s *FirstSeen) Sighting(ctx context.Context, domain string) (time.Time, bool, error) {
	v, err := s.rdb.Get(ctx, s.key+domain).Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("redisstore: first seen %s: %w", domain, err)
	}
	sec, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("redisstore: first seen %s: bad value %q", domain, v)
	}
	return time.Unix(sec, 0), true, nil
}

// startSample bounds the first sightings LearningStart looks at.
const startSample = 1000

// LearningStart implements categorizer.FirstSeenStore: the first caller's
// start wins (SETNX). When no start is recorded yet but sightings are (a
// store written before learning periods existed), the earliest of one
// SCAN batch of them is recorded instead of at, so an edge that has
// been learning for weeks does not start again.
func (s *FirstSeen) LearningStart(ctx context.Context, at time.Time) (time.Time, error) {
	if t, ok, err := s.getStart(ctx); err != nil || ok {
		return t, err
	}
	start := at.Truncate(time.Second)
	keys, _, err := s.rdb.Scan(ctx, 0, globEscape(s.key)+"*", startSample).Result()
	if err == nil && len(keys) > 0 {
		vals, err := s.rdb.MGet(ctx, keys...).Result()
		if err == nil {
			for _, v := range vals {
				str, _ := v.(string)
				if sec, err := strconv.ParseInt(str, 10, 64); err == nil && sec > 0 && sec < start.Unix() {
					start = time.Unix(sec, 0)
				}
			}
		}
	}
	set, err := s.rdb.SetNX(ctx, s.startKey, start.Unix(), 0).Result()
	if err != nil {
		return time.Time{}, fmt.Errorf("redisstore: learning start: %w", err)
	}
	if set {
		return start, nil
	}
	t, ok, err := s.getStart(ctx)
	if err == nil && !ok {
		err = fmt.Errorf("redisstore: learning start: %s vanished after SETNX", s.startKey)
	}
	return t, err
}

func (s *FirstSeen) getStart(ctx context.Context) (time.Time, bool, error) {
	v, err := s.rdb.Get(ctx, s.startKey).Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("redisstore: learning start: %w", err)
	}
	sec, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("redisstore: learning start: bad value %q in %s", v, s.startKey)
	}
	return time.Unix(sec, 0), true, nil
}

// globEscape escapes the Redis glob characters of s.
func globEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
