package redisstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/cordon-gw/cordon/categorizer"
)

// Config configures the Redis stores. The zero value is valid.
type Config struct {
	// Prefix starts every key and the announcement channel; it is used as
	// a Redis Cluster hash tag. Default "cordon:categorizer".
	Prefix string `yaml:"prefix"`
	// ChunkSize is the largest value written; snapshots are split into
	// chunks of this size. Default 4 MiB.
	ChunkSize int `yaml:"chunk_size"`
	// Keep is how many snapshot versions stay in Redis. Default 3.
	Keep int `yaml:"keep"`
}

// Defaults returns the zero Config with every default filled in.
func Defaults() Config {
	return Config{Prefix: "cordon:categorizer", ChunkSize: 4 << 20, Keep: 3}
}

// Validate reports invalid fields.
func (c Config) Validate() error {
	var errs []error
	if c.ChunkSize < 0 {
		errs = append(errs, fmt.Errorf("redisstore: chunk_size: %d is negative", c.ChunkSize))
	}
	if c.ChunkSize > 0 && c.ChunkSize < 1024 {
		errs = append(errs, fmt.Errorf("redisstore: chunk_size: %d is below 1024 bytes", c.ChunkSize))
	}
	if c.Keep < 0 {
		errs = append(errs, fmt.Errorf("redisstore: keep: %d is negative", c.Keep))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	d := Defaults()
	if c.Prefix == "" {
		c.Prefix = d.Prefix
	}
	if c.ChunkSize == 0 {
		c.ChunkSize = d.ChunkSize
	}
	if c.Keep == 0 {
		c.Keep = d.Keep
	}
	return c
}

// Store is a categorizer.SnapshotStore in Redis. Keys (P = {Prefix}):
//
//	P:snapshot:latest            newest version (decimal)
//	P:snapshot:versions          sorted set of stored versions
//	P:snapshot:<v>               hash: chunks, size, sha256
//	P:snapshot:<v>:<i>           chunk i of version v
//	P:snapshots                  pub/sub channel: published versions
type Store struct {
	rdb redis.UniversalClient
	cfg Config
	key string
}

var _ categorizer.SnapshotStore = (*Store)(nil)

// New returns a Store on client.
func New(client redis.UniversalClient, cfg Config) (*Store, error) {
	if client == nil {
		return nil, fmt.Errorf("redisstore: nil client")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Store{rdb: client, cfg: cfg, key: "{" + cfg.Prefix + "}"}, nil
}

func (s *Store) metaKey(v uint64) string { return s.key + ":snapshot:" + strconv.FormatUint(v, 10) }
func (s *Store) chunkKey(v uint64, i int) string {
	return s.metaKey(v) + ":" + strconv.Itoa(i)
}
func (s *Store) latestKey() string   { return s.key + ":snapshot:latest" }
func (s *Store) versionsKey() string { return s.key + ":snapshot:versions" }
func (s *Store) channel() string     { return s.key + ":snapshots" }

// setLatest moves latest forward only.
var setLatest = redis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > cur then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
return 0`)

// Put implements categorizer.SnapshotStore: chunks first, then the
// metadata (so a reader never sees a version without its data), then
// latest, then the announcement.
func (s *Store) Put(ctx context.Context, version uint64, data []byte) error {
	sum := sha256.Sum256(data)
	n := (len(data) + s.cfg.ChunkSize - 1) / s.cfg.ChunkSize
	pipe := s.rdb.Pipeline()
	for i := 0; i < n; i++ {
		end := min((i+1)*s.cfg.ChunkSize, len(data))
		pipe.Set(ctx, s.chunkKey(version, i), data[i*s.cfg.ChunkSize:end], 0)
	}
	pipe.HSet(ctx, s.metaKey(version), "chunks", n, "size", len(data), "sha256", hex.EncodeToString(sum[:]))
	pipe.ZAdd(ctx, s.versionsKey(), redis.Z{Score: float64(version), Member: strconv.FormatUint(version, 10)})
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redisstore: put snapshot %d: %w", version, err)
	}
	if err := setLatest.Run(ctx, s.rdb, []string{s.latestKey()}, strconv.FormatUint(version, 10)).Err(); err != nil {
		return fmt.Errorf("redisstore: put snapshot %d: set latest: %w", version, err)
	}
	if err := s.prune(ctx); err != nil {
		return err
	}
	if err := s.rdb.Publish(ctx, s.channel(), strconv.FormatUint(version, 10)).Err(); err != nil {
		return fmt.Errorf("redisstore: announce snapshot %d: %w", version, err)
	}
	return nil
}

// prune deletes versions beyond Keep, oldest first, never the latest.
func (s *Store) prune(ctx context.Context) error {
	vs, err := s.rdb.ZRange(ctx, s.versionsKey(), 0, -1).Result()
	if err != nil {
		return fmt.Errorf("redisstore: prune snapshots: %w", err)
	}
	if len(vs) <= s.cfg.Keep {
		return nil
	}
	latest, _ := s.rdb.Get(ctx, s.latestKey()).Uint64()
	for _, m := range vs[:len(vs)-s.cfg.Keep] {
		v, err := strconv.ParseUint(m, 10, 64)
		if err != nil || v == latest {
			continue
		}
		chunks, _ := s.rdb.HGet(ctx, s.metaKey(v), "chunks").Int()
		keys := []string{s.metaKey(v)}
		for i := 0; i < chunks; i++ {
			keys = append(keys, s.chunkKey(v, i))
		}
		pipe := s.rdb.Pipeline()
		pipe.ZRem(ctx, s.versionsKey(), m)
		for _, k := range keys {
			pipe.Del(ctx, k)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("redisstore: prune snapshot %d: %w", v, err)
		}
	}
	return nil
}

// LatestVersion implements categorizer.SnapshotStore: one GET.
func (s *Store) LatestVersion(ctx context.Context) (uint64, error) {
	v, err := s.rdb.Get(ctx, s.latestKey()).Uint64()
	if errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("redisstore: %w", categorizer.ErrNoSnapshot)
	}
	if err != nil {
		return 0, fmt.Errorf("redisstore: latest snapshot: %w", err)
	}
	return v, nil
}

// Latest implements categorizer.SnapshotStore.
func (s *Store) Latest(ctx context.Context) (uint64, []byte, error) {
	v, err := s.LatestVersion(ctx)
	if err != nil {
		return 0, nil, err
	}
	data, err := s.Get(ctx, v)
	return v, data, err
}

// Get implements categorizer.SnapshotStore. The reassembled chunks are
// checked against the stored size and sha256.
func (s *Store) Get(ctx context.Context, version uint64) ([]byte, error) {
	meta, err := s.rdb.HGetAll(ctx, s.metaKey(version)).Result()
	if err != nil {
		return nil, fmt.Errorf("redisstore: get snapshot %d: %w", version, err)
	}
	if len(meta) == 0 {
		return nil, fmt.Errorf("redisstore: snapshot %d: %w", version, categorizer.ErrNoSnapshot)
	}
	chunks, err1 := strconv.Atoi(meta["chunks"])
	size, err2 := strconv.Atoi(meta["size"])
	want, err3 := hex.DecodeString(meta["sha256"])
	if err := errors.Join(err1, err2, err3); err != nil || chunks < 0 || size < 0 || len(want) != sha256.Size {
		return nil, fmt.Errorf("redisstore: snapshot %d: %w: bad metadata %v", version, categorizer.ErrCorruptSnapshot, meta)
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, chunks)
	for i := range cmds {
		cmds[i] = pipe.Get(ctx, s.chunkKey(version, i))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("redisstore: get snapshot %d: %w", version, err)
	}
	buf := bytes.NewBuffer(make([]byte, 0, size))
	for i, c := range cmds {
		b, err := c.Bytes()
		if err != nil {
			return nil, fmt.Errorf("redisstore: snapshot %d chunk %d: %w: %v", version, i, categorizer.ErrCorruptSnapshot, err)
		}
		buf.Write(b)
	}
	data := buf.Bytes()
	if sum := sha256.Sum256(data); len(data) != size || !bytes.Equal(sum[:], want) {
		return nil, fmt.Errorf("redisstore: snapshot %d: %w: size or sha256 of the chunks does not match", version, categorizer.ErrCorruptSnapshot)
	}
	return data, nil
}

// Subscribe implements categorizer.SnapshotStore. go-redis reconnects the
// subscription by itself after a connection loss.
func (s *Store) Subscribe(ctx context.Context, fn func(uint64)) error {
	ps := s.rdb.Subscribe(ctx, s.channel())
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("redisstore: subscribe: %w", err)
	}
	ch := ps.Channel()
	// Live now: hand over the current latest, which may have been
	// published before the subscription started.
	if v, err := s.rdb.Get(ctx, s.latestKey()).Uint64(); err == nil {
		fn(v)
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m, ok := <-ch:
			if !ok {
				return fmt.Errorf("redisstore: subscription closed")
			}
			if v, err := strconv.ParseUint(m.Payload, 10, 64); err == nil {
				fn(v)
			}
		}
	}
}
