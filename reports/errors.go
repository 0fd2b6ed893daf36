package reports

import "errors"

// Sentinel errors, matched with errors.Is.
var (
	// ErrClosed is returned by operations on a closed Pipeline or Store.
	ErrClosed = errors.New("reports: closed")
	// ErrBadQuery is wrapped by query-parameter parsing errors (from, to,
	// top, format); the API answers 400 with the message.
	ErrBadQuery = errors.New("reports: bad query")
	// ErrCorrupt is wrapped when a local store file fails its checksum or
	// cannot be decoded.
	ErrCorrupt = errors.New("reports: corrupt store file")
	// ErrNotFound is returned by the CLI when the API answers 404.
	ErrNotFound = errors.New("reports: not found")
)
