package categorizer

import (
	"errors"
	"fmt"
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrInvalidHost is returned for a name that is not a valid DNS name.
	ErrInvalidHost = errors.New("invalid host name")
	// ErrTooManyCategories is returned when an Index would name more than
	// MaxCategories categories (including newly_seen).
	ErrTooManyCategories = errors.New("too many categories")
	// ErrTooManyThreats is returned when more than MaxCategories threat
	// feeds are declared.
	ErrTooManyThreats = errors.New("too many threat feeds")
	// ErrTooManyFeeds is returned when more than MaxFeeds feeds are declared.
	ErrTooManyFeeds = errors.New("too many feeds")
	// ErrUnknownFormat is returned for a feed format this package cannot parse.
	ErrUnknownFormat = errors.New("unknown feed format")
	// ErrCorruptSnapshot is returned when a snapshot fails validation
	// (bad magic, unsupported version, checksum mismatch, truncated data).
	ErrCorruptSnapshot = errors.New("corrupt snapshot")
	// ErrNoSnapshot is returned by a SnapshotStore that holds no snapshot
	// (or not the requested version).
	ErrNoSnapshot = errors.New("no snapshot")
	// ErrFeedRejected is returned when a fetched feed fails validation and
	// the last good version is kept.
	ErrFeedRejected = errors.New("feed rejected")
	// ErrNotModified is returned by a fetch when the source did not change
	// since the last fetch (HTTP 304).
	ErrNotModified = errors.New("feed not modified")
)

// LineError is one invalid line of a feed file.
type LineError struct {
	File string // file name or feed source
	Line int    // 1-based line number
	Text string // the offending line, truncated to 120 bytes
	Err  error  // what was wrong
}

func (e *LineError) Error() string {
	return fmt.Sprintf("%s:%d: %v: %q", e.File, e.Line, e.Err, e.Text)
}

func (e *LineError) Unwrap() error { return e.Err }
