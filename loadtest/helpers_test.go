package loadtest

import (
	"context"
	"testing"
	"time"
)

// contextWithCancelAfter is t.Context() cancelled after d.
func contextWithCancelAfter(t *testing.T, d time.Duration) (context.Context, context.CancelFunc) {
	t.Helper()
	return context.WithTimeout(t.Context(), d)
}
