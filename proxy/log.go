package proxy

// Log attribute keys, the same in every message.
const (
	logRequestID     = "request_id" // the id shown on pages and in events
	logHost          = "host"
	logErr           = "err"
	logKind          = "kind"
	logPanic         = "panic"
	logMethod        = "method"
	logSource        = "source"
	logReviewRequest = "review_request"
)
