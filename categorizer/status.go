package categorizer

import "time"

// FeedStatus is what the Syncer knows about one feed: shown by
// `cordon feeds status` and the feed status API, and carried inside
// snapshots so every edge can show it.
type FeedStatus struct {
	Name       string   `json:"name"`
	Source     string   `json:"source"`
	Format     Format   `json:"format"`
	Categories []string `json:"categories,omitempty"`
	Threat     bool     `json:"threat"`
	// Entries, Skipped and Invalid count the content in use (the last
	// good version).
	Entries int `json:"entries"`
	Skipped int `json:"skipped"`
	Invalid int `json:"invalid"`
	// Errors are the first invalid lines ("file:line: why: text").
	Errors []string `json:"errors,omitempty"`
	// UpdatedAt is when the content in use was fetched; zero if never.
	UpdatedAt time.Time `json:"updated_at"`
	// CheckedAt is the last fetch attempt.
	CheckedAt time.Time `json:"checked_at"`
	// LastError is the error of the last attempt, "" when it succeeded.
	LastError string `json:"last_error,omitempty"`
	// Rejected is true when the last fetched content failed validation
	// (download failure, parsed to nothing, shrank too much) and the
	// previous version was kept.
	Rejected bool `json:"rejected"`
	// Rejections counts rejected updates since the process started.
	Rejections int `json:"rejections"`
	// Bytes is the size of the content in use.
	Bytes int64 `json:"bytes"`
	// ETag and LastModified are the validators of the content in use.
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
	// SHA256 of the content in use, hex.
	SHA256 string `json:"sha256,omitempty"`
}

// Age is how old the content in use is at now (0 when never fetched).
func (s FeedStatus) Age(now time.Time) time.Duration {
	if s.UpdatedAt.IsZero() {
		return 0
	}
	return now.Sub(s.UpdatedAt)
}
