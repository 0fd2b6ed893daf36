package policies

import "errors"

// Sentinel errors, matched with errors.Is.
var (
	// ErrInvalidPolicy wraps every parse or validation failure of a policy
	// document.
	ErrInvalidPolicy = errors.New("invalid policy")
	// ErrNotFound is returned for an unknown version, user, group,
	// location, list, token or review.
	ErrNotFound = errors.New("not found")
	// ErrConflict is returned when a write lost a race with another writer
	// (the version it was based on is no longer current) or a name is
	// already taken.
	ErrConflict = errors.New("conflict")
	// ErrForbidden is returned when a token's role does not allow an
	// operation.
	ErrForbidden = errors.New("forbidden")
	// ErrUnauthorized is returned for a missing or unknown token.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrBadRequest wraps malformed input to the Service (not a policy
	// document error).
	ErrBadRequest = errors.New("bad request")
)
