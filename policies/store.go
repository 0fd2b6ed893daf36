package policies

import (
	"context"
	"time"
)

// Store persists what the Service manages: numbered policy versions, the
// append-only audit log, API tokens (hashed) and review requests. The file
// store (OpenFileStore) keeps them in the data directory; policies/redisstore
// keeps them in Redis and announces new versions over pub/sub.
//
// Every method that writes returns only after the data is durable (the
// file is fsynced; Redis acknowledged it). Implementations are safe for
// concurrent use by several processes sharing the same backend.
type Store interface {
	// LatestVersion returns the newest version, or ErrNotFound when none
	// was ever stored.
	LatestVersion(ctx context.Context) (*Version, error)
	// GetVersion returns version n, or ErrNotFound.
	GetVersion(ctx context.Context, n int64) (*Version, error)
	// ListVersions returns the metadata of every version, oldest first.
	ListVersions(ctx context.Context) ([]VersionInfo, error)
	// PutVersion stores v and appends audit as one step, only if v.Number
	// is exactly one more than the newest stored version (0 when none);
	// otherwise it stores nothing and returns ErrConflict. audit.Seq and
	// audit.Version are set by the store.
	PutVersion(ctx context.Context, v *Version, audit *AuditEntry) error
	// AppendAudit appends e to the audit log and sets e.Seq (1, 2, …).
	AppendAudit(ctx context.Context, e *AuditEntry) error
	// AuditBefore returns up to n entries with Seq < before, newest first
	// (before <= 0 means from the newest).
	AuditBefore(ctx context.Context, before int64, n int) ([]AuditEntry, error)

	// PutToken stores or replaces a token record by ID.
	PutToken(ctx context.Context, t TokenRecord) error
	// GetToken returns one token record, or ErrNotFound.
	GetToken(ctx context.Context, id string) (TokenRecord, error)
	// ListTokens returns every token record.
	ListTokens(ctx context.Context) ([]TokenRecord, error)
	// DeleteToken removes a token record; ErrNotFound when absent.
	DeleteToken(ctx context.Context, id string) error

	// PutReview stores or replaces a review request by ID.
	PutReview(ctx context.Context, r Review) error
	// GetReview returns one review, or ErrNotFound.
	GetReview(ctx context.Context, id string) (Review, error)
	// ListReviews returns every review, oldest first.
	ListReviews(ctx context.Context) ([]Review, error)

	// Watch calls fn with the newest version number whenever another
	// writer (any process) may have stored a version, until ctx is done.
	// fn may be called with a number already seen. Watch returns ctx.Err()
	// or a fatal error.
	Watch(ctx context.Context, fn func(version int64)) error
}

// Source says through which path a change was made.
type Source string

// Sources of changes.
const (
	SourceAPI    Source = "api"
	SourceCLI    Source = "cli"
	SourceFile   Source = "file"
	SourceSystem Source = "system"
	SourcePage   Source = "page" // block page (review requests)
	// SourceConsole is the admin console at /ui/ (an API call made for a
	// signed-in operator).
	SourceConsole Source = "console"
)

// VersionInfo is the metadata of one policy version.
type VersionInfo struct {
	Number  int64     `json:"number"`
	Time    time.Time `json:"time"`
	Author  string    `json:"author"`
	Source  Source    `json:"source"`
	Comment string    `json:"comment"`
	// RollbackOf is the version this one restored, 0 when it is not a
	// rollback.
	RollbackOf int64 `json:"rollback_of,omitempty"`
	Rules      int   `json:"rules"`
}

// Version is one stored policy version.
type Version struct {
	VersionInfo
	Policy *Policy `json:"policy"`
}

// AuditEntry is one record of the append-only audit log: who did what,
// when and from where.
type AuditEntry struct {
	Seq    int64     `json:"seq"`
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`
	Role   Role      `json:"role,omitempty"`
	Source Source    `json:"source"`
	// Remote is the client address of an API call.
	Remote string `json:"remote,omitempty"`
	// Action names the operation: "policy.put", "policy.rollback",
	// "list.entries.add", "user.put", "token.create", …
	Action string `json:"action"`
	// Target names the object acted on: a list, user, token ID…
	Target string `json:"target,omitempty"`
	// Version is the policy version the change created, 0 when none.
	Version int64  `json:"version,omitempty"`
	Detail  string `json:"detail,omitempty"`
	// Emergency marks an admin's change applied without the approvals
	// the approval rules ask for.
	Emergency bool `json:"emergency,omitempty"`
}

// TokenRecord is a stored API token: never the token itself, only the
// SHA-256 of its secret.
type TokenRecord struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      Role      `json:"role"`
	Hash      string    `json:"hash"` // hex SHA-256 of the secret
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by"`
}

// Review statuses.
const (
	ReviewOpen     = "open"
	ReviewAccepted = "accepted"
	ReviewRejected = "rejected"
)

// Review is a request, sent from a block page, to review a decision.
type Review struct {
	ID            string    `json:"id"`
	Time          time.Time `json:"time"`
	User          string    `json:"user,omitempty"`
	ClientIP      string    `json:"client_ip,omitempty"`
	URL           string    `json:"url"`
	Host          string    `json:"host"`
	RuleID        string    `json:"rule,omitempty"`
	Categories    []string  `json:"categories,omitempty"`
	PolicyVersion int64     `json:"policy_version,omitempty"`
	RequestID     string    `json:"request_id,omitempty"`
	// Message is what the user wrote.
	Message    string    `json:"message,omitempty"`
	Status     string    `json:"status"`
	ResolvedBy string    `json:"resolved_by,omitempty"`
	ResolvedAt time.Time `json:"resolved_at,omitzero"`
	Note       string    `json:"note,omitempty"`
}
