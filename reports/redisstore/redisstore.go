// Package redisstore keeps report aggregates in Redis (go-redis
// UniversalClient: single node, Sentinel or Cluster) so that every edge
// writing to the same Redis contributes to one combined report.
//
// Each row (scope, subject, hour) is one hash, key
// <prefix>:<scope code>:<unix hour>:<subject>, whose fields are counters
// incremented with HINCRBY ("req", "up", "down", "blk", "d:<domain>",
// "c:<category>", "bc:<category>", "a:<action>", "r:<rule>", "m:<rule>",
// "t:<threat>", "u:<user>", "ub:<user>", "g:<group>", "l:<location>",
// "b:<attempt>") plus "bt:<attempt>"
// holding the last blocked time (a maximum). A small Lua script applies
// one row atomically: it caps distinct domains and blocked attempts per
// row (counted in the fields "nd" and "na"; further names go to
// reports.OtherName), sets the key to expire when the hour leaves the
// retention window, and records the batch sequence of the writing edge
// in "s:<origin>", so a batch retried after a failure mid-way is never
// counted twice. The package owns no client: the caller builds it and
// closes it.
package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cordon-gw/cordon/reports"
)

// Defaults of Config.
const (
	DefaultPrefix = "cordon:reports"
	// chunk is how many rows go in one pipeline round trip.
	chunk = 256
)

// Config configures the Redis store.
type Config struct {
	// Prefix of every key. Default "cordon:reports".
	Prefix string `yaml:"key_prefix"`
	// Retention is how long a row lives after its hour ends (Redis
	// expiry). Default 720h, like reports.Config.Retention; cmd passes
	// that value.
	Retention time.Duration `yaml:"retention"`
	// MaxDomainsPerRow caps distinct domains and blocked attempts per
	// row, like reports.Config.MaxDomainsPerRow; cmd passes that value.
	// Default 1000.
	MaxDomainsPerRow int `yaml:"max_domains_per_row"`
}

// Validate reports invalid fields.
func (c Config) Validate() error {
	var errs []error
	if strings.ContainsAny(c.Prefix, " \r\n") {
		errs = append(errs, fmt.Errorf("redisstore: config key_prefix: must not contain spaces or newlines (got %q)", c.Prefix))
	}
	if c.MaxDomainsPerRow < 0 {
		errs = append(errs, fmt.Errorf("redisstore: config max_domains_per_row: must not be negative (got %d)", c.MaxDomainsPerRow))
	}
	if c.Retention < 0 || (c.Retention > 0 && c.Retention < time.Hour) {
		errs = append(errs, fmt.Errorf("redisstore: config retention: must be at least 1h (got %v)", c.Retention))
	}
	return errors.Join(errs...)
}

// Store is a reports.Store on Redis. Safe for concurrent use.
type Store struct {
	c          redis.UniversalClient
	prefix     string
	retention  time.Duration
	maxDomains int
}

var _ reports.Store = (*Store)(nil)

// New returns a Store using client. It does not take ownership of client.
func New(client redis.UniversalClient, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if client == nil {
		return nil, errors.New("redisstore: nil client")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.Retention == 0 {
		cfg.Retention = reports.DefaultRetention
	}
	if cfg.MaxDomainsPerRow == 0 {
		cfg.MaxDomainsPerRow = reports.DefaultMaxDomainsPerRow
	}
	return &Store{c: client, prefix: cfg.Prefix, retention: cfg.Retention, maxDomains: cfg.MaxDomainsPerRow}, nil
}

// Key is the hash key of one row.
func (s *Store) Key(scope reports.Scope, subject string, hour int64) string {
	return s.prefix + ":" + scope.Code() + ":" + strconv.FormatInt(hour, 10) + ":" + subject
}

// applyScript applies one row atomically. KEYS[1] row key. ARGV: seq
// field, seq, expire-at (ms), domain cap (0: none), the other-domain name,
// the other-attempt name, then three sections each led by its count:
// HINCRBY pairs (field, n); domain pairs (name, n); attempt triples
// (name, count, last ms). Distinct domains and attempts are counted in
// the fields "nd" and "na"; past the cap, new names go to the "other"
// entries. A row already holding this origin's seq is left alone.
var applyScript = redis.NewScript(`
local key = KEYS[1]
local cur = redis.call('HGET', key, ARGV[1])
if cur and tonumber(cur) >= tonumber(ARGV[2]) then return 0 end
local cap = tonumber(ARGV[4])
local i = 7
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('HINCRBY', key, ARGV[i], ARGV[i + 1])
  i = i + 2
end
n = tonumber(ARGV[i]); i = i + 1
if n > 0 then
  local nd = tonumber(redis.call('HGET', key, 'nd') or '0')
  for _ = 1, n do
    local f = 'd:' .. ARGV[i]
    if ARGV[i] ~= ARGV[5] and redis.call('HEXISTS', key, f) == 0 then
      if cap > 0 and nd >= cap then f = 'd:' .. ARGV[5] else nd = nd + 1 end
    end
    redis.call('HINCRBY', key, f, ARGV[i + 1])
    i = i + 2
  end
  redis.call('HSET', key, 'nd', nd)
end
n = tonumber(ARGV[i]); i = i + 1
if n > 0 then
  local na = tonumber(redis.call('HGET', key, 'na') or '0')
  for _ = 1, n do
    local name = ARGV[i]
    if name ~= ARGV[6] and redis.call('HEXISTS', key, 'b:' .. name) == 0 then
      if cap > 0 and na >= cap then name = ARGV[6] else na = na + 1 end
    end
    redis.call('HINCRBY', key, 'b:' .. name, ARGV[i + 1])
    local old = redis.call('HGET', key, 'bt:' .. name)
    if (not old) or tonumber(old) < tonumber(ARGV[i + 2]) then
      redis.call('HSET', key, 'bt:' .. name, ARGV[i + 2])
    end
    i = i + 3
  end
  redis.call('HSET', key, 'na', na)
end
redis.call('HSET', key, ARGV[1], ARGV[2])
redis.call('PEXPIREAT', key, ARGV[3])
return 1
`)

type prefixed struct {
	prefix string
	m      *map[string]int64
}

func mapsOf(c *reports.Counters) []prefixed {
	return []prefixed{
		{"c:", &c.Categories}, {"bc:", &c.BlockedCategories},
		{"a:", &c.Actions}, {"r:", &c.Rules}, {"m:", &c.WouldBlock}, {"t:", &c.Threats},
		{"u:", &c.Users}, {"ub:", &c.UserBlocks}, {"g:", &c.Groups}, {"l:", &c.Locations},
	}
}

func (s *Store) args(b *reports.Batch, k reports.RowKey, c *reports.Counters) []any {
	expire := (k.Hour+1)*3600*1000 + s.retention.Milliseconds()
	args := make([]any, 0, 10+2*c.Fields()+len(c.Attempts))
	args = append(args, "s:"+b.Origin, b.Seq, expire, s.maxDomains, reports.OtherName, reports.OtherAttemptKey, 0)
	nIdx := len(args) - 1
	add := func(f string, v int64) {
		if v != 0 {
			args = append(args, f, v)
		}
	}
	add("req", c.Requests)
	add("up", c.BytesUp)
	add("down", c.BytesDown)
	add("blk", c.Blocked)
	for _, p := range mapsOf(c) {
		for name, v := range *p.m {
			add(p.prefix+name, v)
		}
	}
	args[nIdx] = (len(args) - nIdx - 1) / 2
	args = append(args, len(c.Domains))
	for name, v := range c.Domains {
		args = append(args, name, v)
	}
	args = append(args, len(c.Attempts))
	for name, a := range c.Attempts {
		args = append(args, name, a.Count, a.Last)
	}
	return args
}

// Apply implements reports.Store: every row through the script, in
// pipelined chunks. A retry of the same batch skips rows already applied.
func (s *Store) Apply(ctx context.Context, b *reports.Batch) error {
	keys := make([]reports.RowKey, 0, len(b.Rows))
	for k := range b.Rows {
		keys = append(keys, k)
	}
	for start := 0; start < len(keys); start += chunk {
		part := keys[start:min(start+chunk, len(keys))]
		if err := s.applyChunk(ctx, b, part); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) applyChunk(ctx context.Context, b *reports.Batch, keys []reports.RowKey) error {
	run := func(useEval bool, which []reports.RowKey) ([]reports.RowKey, error) {
		pipe := s.c.Pipeline()
		cmds := make([]*redis.Cmd, len(which))
		for i, k := range which {
			key := []string{s.Key(k.Scope, k.Subject, k.Hour)}
			args := s.args(b, k, b.Rows[k])
			if useEval {
				cmds[i] = applyScript.Eval(ctx, pipe, key, args...)
			} else {
				cmds[i] = applyScript.EvalSha(ctx, pipe, key, args...)
			}
		}
		_, _ = pipe.Exec(ctx)
		var noScript []reports.RowKey
		for i, cmd := range cmds {
			err := cmd.Err()
			if err == nil {
				continue
			}
			if redis.HasErrorPrefix(err, "NOSCRIPT") && !useEval {
				noScript = append(noScript, which[i])
				continue
			}
			return nil, fmt.Errorf("redisstore: apply batch %s/%d: %w", b.Origin, b.Seq, err)
		}
		return noScript, nil
	}
	retry, err := run(false, keys)
	if err != nil {
		return err
	}
	if len(retry) > 0 {
		// The script cache was empty (a restarted or new node): EVAL
		// sends the source and caches it.
		if _, err := run(true, retry); err != nil {
			return err
		}
	}
	return nil
}

// Rows implements reports.Store: one HGETALL per hour, pipelined.
func (s *Store) Rows(ctx context.Context, scope reports.Scope, subject string, fromHour, toHour int64) ([]reports.Row, error) {
	if toHour < fromHour {
		return nil, nil
	}
	var out []reports.Row
	for start := fromHour; start <= toHour; start += chunk {
		end := min(start+chunk-1, toHour)
		pipe := s.c.Pipeline()
		cmds := make([]*redis.MapStringStringCmd, 0, end-start+1)
		for h := start; h <= end; h++ {
			cmds = append(cmds, pipe.HGetAll(ctx, s.Key(scope, subject, h)))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("redisstore: rows %s %q: %w", scope, subject, err)
		}
		for i, cmd := range cmds {
			m := cmd.Val()
			if len(m) == 0 {
				continue
			}
			c, err := decode(m)
			if err != nil {
				return nil, fmt.Errorf("redisstore: row %s: %w", s.Key(scope, subject, start+int64(i)), err)
			}
			out = append(out, reports.Row{Hour: start + int64(i), Counters: c})
		}
	}
	return out, nil
}

// decode turns a row hash into Counters.
func decode(m map[string]string) (*reports.Counters, error) {
	c := &reports.Counters{}
	maps := mapsOf(c)
	for f, v := range m {
		if strings.HasPrefix(f, "s:") {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("field %q: %w", f, err)
		}
		switch f {
		case "req":
			c.Requests = n
			continue
		case "up":
			c.BytesUp = n
			continue
		case "down":
			c.BytesDown = n
			continue
		case "blk":
			c.Blocked = n
			continue
		}
		if name, ok := strings.CutPrefix(f, "bt:"); ok {
			c.AddAttempt(name, reports.Attempt{Last: n})
			continue
		}
		if name, ok := strings.CutPrefix(f, "d:"); ok {
			if c.Domains == nil {
				c.Domains = make(map[string]int64)
			}
			c.Domains[name] += n
			continue
		}
		if name, ok := strings.CutPrefix(f, "b:"); ok {
			c.AddAttempt(name, reports.Attempt{Count: n})
			continue
		}
		// Fields of unknown prefixes (written by a newer edge) are
		// skipped, not an error.
		for _, p := range maps {
			if name, ok := strings.CutPrefix(f, p.prefix); ok {
				if *p.m == nil {
					*p.m = make(map[string]int64)
				}
				(*p.m)[name] += n
				break
			}
		}
	}
	return c, nil
}

// PseudonymKey implements reports.KeySource: one random 32-byte key at
// <prefix>:pseudonym-key, created by the first edge (SET NX) and read by
// every other, so a user has the same pseudonym on every edge.
func (s *Store) PseudonymKey(ctx context.Context) ([]byte, error) {
	var fresh [32]byte
	if _, err := rand.Read(fresh[:]); err != nil {
		return nil, fmt.Errorf("redisstore: pseudonym key: %w", err)
	}
	key := s.prefix + ":pseudonym-key"
	if err := s.c.SetNX(ctx, key, hex.EncodeToString(fresh[:]), 0).Err(); err != nil {
		return nil, fmt.Errorf("redisstore: pseudonym key: %w", err)
	}
	v, err := s.c.Get(ctx, key).Result()
	if err != nil {
		return nil, fmt.Errorf("redisstore: pseudonym key: %w", err)
	}
	k, err := hex.DecodeString(v)
	if err != nil || len(k) < 16 {
		return nil, fmt.Errorf("redisstore: pseudonym key %s: not 32+ hex digits", key)
	}
	return k, nil
}

var _ reports.KeySource = (*Store)(nil)

// Close implements reports.Store; the client stays open (the caller owns
// it).
func (s *Store) Close() error { return nil }
