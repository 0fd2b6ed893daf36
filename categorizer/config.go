package categorizer

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// FeedConfig declares one feed.
type FeedConfig struct {
	// Name identifies the feed in status, metrics and Explain, and names a
	// threat when Threat is set: lower-case letters, digits, '-', '_', '.'.
	Name string `yaml:"name"`
	// Source is an http(s) URL, a local file or directory path (a
	// "file://" prefix is accepted), or "bundled:<path>" for a list
	// embedded in the binary (see DefaultFeeds). A ut1 feed reads a
	// directory or a .tar.gz archive of one (local or http).
	Source string `yaml:"source"`
	// Format is the syntax: hosts, domains, adblock, dnsmasq, urls, ips,
	// ut1.
	Format Format `yaml:"format"`
	// Categories the feed's entries get. For ut1 each item is a UT1
	// directory, optionally mapped to another name: "gambling",
	// "porn:adult". Required unless Threat is set (ut1: always required).
	Categories []string `yaml:"categories"`
	// Threat makes the feed a threat feed: matches are reported under the
	// feed's name in Verdict.Threats.
	Threat bool `yaml:"threat"`
	// Refresh is how often the source is checked; 0 means Config.Refresh.
	Refresh time.Duration `yaml:"refresh"`
	// MaxShrink is the largest accepted drop in entries from one version
	// to the next, as a fraction: a new version with fewer than
	// (1-MaxShrink) × the previous entries is rejected and the previous
	// kept. 0 means 0.5; 1 disables the check.
	MaxShrink float64 `yaml:"max_shrink"`
}

// Config is the categorizer section of the Cordon config file.
type Config struct {
	// Feeds to load. Empty means DefaultFeeds() (the bundled lists).
	Feeds []FeedConfig `yaml:"feeds"`
	// Refresh is the default refresh interval of a feed. Default 6h.
	Refresh time.Duration `yaml:"refresh"`
	// Timeout bounds one feed download. Default 2m.
	Timeout time.Duration `yaml:"timeout"`
	// MaxBytes bounds one feed download. Default 512 MiB.
	MaxBytes int64 `yaml:"max_bytes"`
	// UserAgent is sent with downloads. Default "cordon-feeds/1".
	UserAgent string `yaml:"user_agent"`
	// GeoIP is the path of a MaxMind Country or City database; "" means
	// no GeoIP (Verdict.Country stays unknown).
	GeoIP string `yaml:"geoip"`
	// NewlySeen configures the newly_seen category.
	NewlySeen NewlySeenConfig `yaml:"newly_seen"`
}

// Defaults returns a Config with every default filled in (Feeds stays
// empty: Effective fills the bundled feeds in).
func Defaults() Config {
	return Config{
		Refresh:   6 * time.Hour,
		Timeout:   2 * time.Minute,
		MaxBytes:  512 << 20,
		UserAgent: "cordon-feeds/1",
		NewlySeen: NewlySeenDefaults(),
	}
}

// Effective returns c with zero fields replaced by their defaults and the
// bundled feeds when no feed is configured.
func (c Config) Effective() Config {
	d := Defaults()
	if c.Refresh <= 0 {
		c.Refresh = d.Refresh
	}
	if c.Timeout <= 0 {
		c.Timeout = d.Timeout
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = d.MaxBytes
	}
	if c.UserAgent == "" {
		c.UserAgent = d.UserAgent
	}
	c.NewlySeen = c.NewlySeen.effective()
	if len(c.Feeds) == 0 {
		c.Feeds = DefaultFeeds()
	}
	feeds := make([]FeedConfig, len(c.Feeds))
	for i, f := range c.Feeds {
		if f.Refresh <= 0 {
			f.Refresh = c.Refresh
		}
		if f.MaxShrink == 0 {
			f.MaxShrink = 0.5
		}
		feeds[i] = f
	}
	c.Feeds = feeds
	return c
}

// Validate reports every invalid field, each with its path.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("categorizer: %s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.Refresh < 0 {
		bad("refresh", "%v is negative", c.Refresh)
	}
	if c.Timeout < 0 {
		bad("timeout", "%v is negative", c.Timeout)
	}
	if c.MaxBytes < 0 {
		bad("max_bytes", "%d is negative", c.MaxBytes)
	}
	if len(c.Feeds) > MaxFeeds {
		bad("feeds", "%d feeds, at most %d", len(c.Feeds), MaxFeeds)
	}
	names := map[string]bool{}
	categories := map[string]bool{NewlySeenCategory: true}
	threats := 0
	for i, f := range c.Feeds {
		field := fmt.Sprintf("feeds[%d]", i)
		if f.Name != "" {
			field = fmt.Sprintf("feeds[%d] (%s)", i, f.Name)
		}
		if err := validFeedName(f.Name); err != nil {
			bad(field+".name", "%v", err)
		} else if names[f.Name] {
			bad(field+".name", "duplicate feed name %q", f.Name)
		}
		names[f.Name] = true
		if !f.Format.Valid() {
			bad(field+".format", "%q is not one of %v", f.Format, Formats)
		}
		if err := validSource(f.Source); err != nil {
			bad(field+".source", "%v", err)
		}
		if len(f.Categories) == 0 && (!f.Threat || f.Format == FormatUT1) {
			bad(field+".categories", "empty: a feed needs categories (ut1: the directories to load) or threat: true")
		}
		for _, cat := range f.Categories {
			name := cat
			if f.Format == FormatUT1 {
				if dir, to, ok := strings.Cut(cat, ":"); ok {
					if dir == "" || to == "" {
						bad(field+".categories", "%q: want \"dir\" or \"dir:category\"", cat)
					}
					name = to
				}
			}
			if name == "" {
				bad(field+".categories", "empty category name")
			}
			categories[name] = true
		}
		if f.Threat {
			threats++
		}
		if f.Refresh < 0 {
			bad(field+".refresh", "%v is negative", f.Refresh)
		}
		if f.Refresh > 0 && f.Refresh < time.Minute {
			bad(field+".refresh", "%v is shorter than 1m", f.Refresh)
		}
		if f.MaxShrink < 0 || f.MaxShrink > 1 {
			bad(field+".max_shrink", "%v is outside 0..1", f.MaxShrink)
		}
	}
	if len(categories) > MaxCategories {
		bad("feeds", "%d distinct categories (with newly_seen), at most %d", len(categories), MaxCategories)
	}
	if threats > MaxCategories {
		bad("feeds", "%d threat feeds, at most %d", threats, MaxCategories)
	}
	if err := c.NewlySeen.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func validFeedName(n string) error {
	if n == "" {
		return errors.New("empty")
	}
	if len(n) > 64 {
		return fmt.Errorf("%q is longer than 64 bytes", n)
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') || (i == 0 && c == '.') {
			return fmt.Errorf("%q: only a-z, 0-9, '-', '_' and '.' (not first) are allowed", n)
		}
	}
	return nil
}

func validSource(s string) error {
	switch {
	case s == "":
		return errors.New("empty")
	case strings.HasPrefix(s, "http://"), strings.HasPrefix(s, "https://"):
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return fmt.Errorf("%q is not a valid URL", s)
		}
	case strings.HasPrefix(s, bundledPrefix):
		if _, err := bundledFS.Open(strings.TrimPrefix(s, bundledPrefix)); err != nil {
			return fmt.Errorf("%q: no such bundled list", s)
		}
	case strings.Contains(s, "://") && !strings.HasPrefix(s, "file://"):
		return fmt.Errorf("%q: scheme not supported (http, https, file, bundled:)", s)
	}
	return nil
}

// UT1Mapping turns ut1 Categories items ("dir" or "dir:category") into
// the directory → category map ParseUT1 takes.
func UT1Mapping(items []string) map[string]string {
	m := make(map[string]string, len(items))
	for _, it := range items {
		dir, cat, ok := strings.Cut(it, ":")
		if !ok {
			cat = dir
		}
		m[dir] = cat
	}
	return m
}
