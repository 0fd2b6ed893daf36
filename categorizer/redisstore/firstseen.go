package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cordon-gw/cordon/categorizer"
)

// FirstSeen is a categorizer.FirstSeenStore in Redis: one key per
// registrable domain, {Prefix}:seen:<domain> = Unix seconds of the first
// sighting by any edge, written with SETNX so the earliest writer wins.
type FirstSeen struct {
	rdb       redis.UniversalClient
	key       string
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
	return &FirstSeen{rdb: client, key: "{" + cfg.Prefix + "}:seen:", retention: retention}, nil
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
