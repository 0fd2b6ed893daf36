package reports

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"
)

// Defaults of Config, documented on its fields.
const (
	DefaultQueueSize          = 65536
	DefaultFlushInterval      = time.Second
	DefaultRetention          = 30 * 24 * time.Hour
	DefaultBufferMaxFields    = 1_000_000
	DefaultCompactInterval    = 5 * time.Minute
	DefaultTopN               = 10
	DefaultMaxDomainsPerRow   = 1000
	DefaultSpillMaxMB         = 256
	DefaultAccessLogMaxSizeMB = 100
	DefaultAccessLogMaxAge    = 24 * time.Hour
	DefaultAccessLogMaxFiles  = 7
	DefaultSyslogFacility     = 16 // local0
	DefaultSyslogAppName      = "cordon"
	DefaultDir                = "cordon-data/reports"
)

// Config configures the reports pipeline, stores and pages. Start from
// Defaults(); zero numeric and duration fields also mean their default.
type Config struct {
	// Dir holds the access log and the local aggregate store (in
	// Dir/agg). Default "cordon-data/reports"; cmd sets <data-dir>/reports.
	Dir string `yaml:"dir"`
	// QueueSize is the capacity of the event queue between Record and
	// the worker. A full queue drops the event and counts it in
	// cordon_reports_events_dropped_total{reason="queue_full"}. Default 65536.
	QueueSize int `yaml:"queue_size"`
	// FlushInterval is how often aggregated deltas are written to the
	// store. Default 1s.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// Retention is how long aggregates are kept: Redis keys expire, the
	// local store deletes older hours. Default 720h (30 days).
	Retention time.Duration `yaml:"retention"`
	// BufferMaxFields bounds the aggregated deltas held in memory while
	// the store is unreachable, in stored cells (a total, or one domain,
	// category, rule … of one row; about 100 bytes each). Deltas that
	// would exceed it go to the spill file (SpillMaxMB), or when that is
	// full or off are dropped and counted in
	// cordon_reports_events_dropped_total{reason="buffer_full"}.
	// Default 1000000.
	BufferMaxFields int `yaml:"buffer_max_fields"`
	// SpillMaxMB bounds <dir>/spill.log, where aggregates go when the
	// memory buffer is full while a remote store (Redis) is unreachable,
	// and what is still buffered when the pipeline closes; they are
	// replayed, also by the next start, once the store is back. -1
	// disables spilling (overflow is dropped and counted). Not used with
	// the local store. Default 256.
	SpillMaxMB int `yaml:"spill_max_mb"`
	// CompactInterval is how often the local store seals past hours into
	// segment files and applies retention. Default 5m.
	CompactInterval time.Duration `yaml:"compact_interval"`
	// MaxDomainsPerRow bounds the distinct domains (and distinct blocked
	// attempts) kept per row (one subject, one hour); requests to further
	// domains are counted under "(other)". Totals stay exact. Default 1000.
	MaxDomainsPerRow int `yaml:"max_domains_per_row"`
	// TopN is how many entries the "top" lists of a report hold unless
	// the query asks otherwise (?top=). Default 10.
	TopN int `yaml:"top_n"`
	// AccessLog is the JSON-lines access log.
	AccessLog AccessLogConfig `yaml:"access_log"`
	// Syslog sends each event as an RFC 5424 message; off unless
	// Address is set.
	Syslog SyslogConfig `yaml:"syslog"`
	// Privacy controls what of a user's identity and URLs is kept.
	Privacy PrivacyConfig `yaml:"privacy"`
}

// AccessLogConfig configures the JSON-lines access log.
type AccessLogConfig struct {
	// Enabled writes the log. Default true (Defaults()).
	Enabled bool `yaml:"enabled"`
	// Path of the live file. Default <dir>/access.log.
	Path string `yaml:"path"`
	// MaxSizeMB rotates the file when it reaches this size. Default 100.
	MaxSizeMB int `yaml:"max_size_mb"`
	// MaxAge rotates the file when it is this old. Default 24h.
	MaxAge time.Duration `yaml:"max_age"`
	// MaxFiles is how many rotated files are kept (oldest deleted).
	// Default 7.
	MaxFiles int `yaml:"max_files"`
}

// SyslogConfig configures RFC 5424 syslog output.
type SyslogConfig struct {
	// Address is host:port of the collector; "" disables syslog.
	Address string `yaml:"address"`
	// Network is "udp" (default) or "tcp" (octet-counted framing,
	// RFC 6587).
	Network string `yaml:"network"`
	// Facility is the syslog facility number 1..23 (0 means the default,
	// 16: local0; kern is not for access logs).
	Facility int `yaml:"facility"`
	// AppName is the APP-NAME field. Default "cordon".
	AppName string `yaml:"app_name"`
	// Hostname is the HOSTNAME field. Default os.Hostname().
	Hostname string `yaml:"hostname"`
}

// PrivacyConfig controls pseudonymization and URL paths.
type PrivacyConfig struct {
	// PseudonymizeUsers replaces each user name by a stable keyed HMAC
	// pseudonym ("u-" and 16 hex digits) before it is logged or
	// aggregated. Default false.
	PseudonymizeUsers bool `yaml:"pseudonymize_users"`
	// PseudonymKey is the HMAC key (at least 16 bytes). Empty: with the
	// Redis store, one random key kept in Redis and shared by every edge
	// (copied to <dir>/pseudonym.key for starts while Redis is down);
	// with the local store, a random key generated once into
	// <dir>/pseudonym.key (0600). Either way pseudonyms stay stable
	// across restarts.
	PseudonymKey Secret `yaml:"pseudonym_key"`
	// DropPaths removes URL paths from logged events. Default false.
	DropPaths bool `yaml:"drop_paths"`
}

// Secret is a string that never prints: String, MarshalText and LogValue
// redact it.
type Secret string

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// MarshalText redacts the secret.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// MarshalYAML redacts the secret.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// LogValue redacts the secret.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Defaults returns the documented default configuration.
func Defaults() Config {
	c := Config{AccessLog: AccessLogConfig{Enabled: true}}
	c.fill()
	return c
}

// fill sets every zero field to its default.
func (c *Config) fill() {
	if c.Dir == "" {
		c.Dir = DefaultDir
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.BufferMaxFields == 0 {
		c.BufferMaxFields = DefaultBufferMaxFields
	}
	if c.CompactInterval == 0 {
		c.CompactInterval = DefaultCompactInterval
	}
	if c.TopN == 0 {
		c.TopN = DefaultTopN
	}
	if c.MaxDomainsPerRow == 0 {
		c.MaxDomainsPerRow = DefaultMaxDomainsPerRow
	}
	if c.SpillMaxMB == 0 {
		c.SpillMaxMB = DefaultSpillMaxMB
	}
	a := &c.AccessLog
	if a.Path == "" {
		a.Path = filepath.Join(c.Dir, "access.log")
	}
	if a.MaxSizeMB == 0 {
		a.MaxSizeMB = DefaultAccessLogMaxSizeMB
	}
	if a.MaxAge == 0 {
		a.MaxAge = DefaultAccessLogMaxAge
	}
	if a.MaxFiles == 0 {
		a.MaxFiles = DefaultAccessLogMaxFiles
	}
	s := &c.Syslog
	if s.Network == "" {
		s.Network = "udp"
	}
	if s.Facility == 0 {
		s.Facility = DefaultSyslogFacility
	}
	if s.AppName == "" {
		s.AppName = DefaultSyslogAppName
	}
}

// Validate reports every invalid field at once. Zero values are valid
// (they mean the defaults).
func (c Config) Validate() error {
	var errs []error
	bad := func(field, why string, v any) {
		errs = append(errs, fmt.Errorf("reports: config %s: %s (got %v)", field, why, v))
	}
	if c.QueueSize < 0 || c.QueueSize > 1<<24 {
		bad("queue_size", "must be between 1 and 16777216", c.QueueSize)
	}
	if c.FlushInterval < 0 || (c.FlushInterval > 0 && c.FlushInterval < time.Millisecond) || c.FlushInterval > time.Hour {
		bad("flush_interval", "must be between 1ms and 1h", c.FlushInterval)
	}
	if c.Retention < 0 || (c.Retention > 0 && c.Retention < time.Hour) || c.Retention > 5*365*24*time.Hour {
		bad("retention", "must be between 1h and 5 years", c.Retention)
	}
	if c.BufferMaxFields < 0 {
		bad("buffer_max_fields", "must not be negative", c.BufferMaxFields)
	}
	if c.CompactInterval < 0 || (c.CompactInterval > 0 && c.CompactInterval < time.Second) {
		bad("compact_interval", "must be at least 1s", c.CompactInterval)
	}
	if c.SpillMaxMB < -1 {
		bad("spill_max_mb", "must be -1 (off) or more", c.SpillMaxMB)
	}
	if c.MaxDomainsPerRow < 0 {
		bad("max_domains_per_row", "must not be negative", c.MaxDomainsPerRow)
	}
	if c.TopN < 0 || c.TopN > 10000 {
		bad("top_n", "must be between 1 and 10000", c.TopN)
	}
	if c.AccessLog.MaxSizeMB < 0 {
		bad("access_log.max_size_mb", "must not be negative", c.AccessLog.MaxSizeMB)
	}
	if c.AccessLog.MaxAge < 0 {
		bad("access_log.max_age", "must not be negative", c.AccessLog.MaxAge)
	}
	if c.AccessLog.MaxFiles < 0 {
		bad("access_log.max_files", "must not be negative", c.AccessLog.MaxFiles)
	}
	if s := c.Syslog; s.Address != "" {
		if _, _, err := net.SplitHostPort(s.Address); err != nil {
			bad("syslog.address", "must be host:port", s.Address)
		}
	}
	if n := c.Syslog.Network; n != "" && n != "udp" && n != "tcp" {
		bad("syslog.network", `must be "udp" or "tcp"`, n)
	}
	if f := c.Syslog.Facility; f < 0 || f > 23 {
		bad("syslog.facility", "must be between 0 and 23", f)
	}
	if k := c.Privacy.PseudonymKey; k != "" && len(k) < 16 {
		bad("privacy.pseudonym_key", "must be at least 16 bytes", len(k))
	}
	return errors.Join(errs...)
}
