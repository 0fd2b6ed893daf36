package loadtest

import "errors"

// Sentinel errors; match them with errors.Is.
var (
	// ErrUsage wraps every command-line error: unknown subcommand, bad flag value, missing file.
	ErrUsage = errors.New("loadtest: usage")
	// ErrConfig wraps every invalid configuration field.
	ErrConfig = errors.New("loadtest: invalid config")
	// ErrNoTargets is returned when a URL or name file holds no usable line.
	ErrNoTargets = errors.New("loadtest: no targets")
)
