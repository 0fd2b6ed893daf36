package dnsfilter

import "errors"

// Sentinel errors, matched with errors.Is.
var (
	// ErrInvalidConfig wraps every Config.Validate error.
	ErrInvalidConfig = errors.New("invalid config")
	// ErrNoEngine is returned by New when Deps.Engine is nil.
	ErrNoEngine = errors.New("dnsfilter: no policy engine")
	// ErrUpstreamsFailed is returned when every upstream failed or the
	// query deadline passed; the client gets SERVFAIL.
	ErrUpstreamsFailed = errors.New("dnsfilter: all upstreams failed")
	// ErrBadAnswer is returned when an upstream answer does not match the
	// question asked.
	ErrBadAnswer = errors.New("dnsfilter: upstream answer does not match the question")
	// ErrUpstreamStatus is returned when a DoH upstream answers with an
	// HTTP status other than 200 or a wrong content type.
	ErrUpstreamStatus = errors.New("dnsfilter: DoH upstream answered with an error")
	// ErrOverloaded is returned when Config.MaxInflight upstream queries
	// are already in flight; the client gets SERVFAIL.
	ErrOverloaded = errors.New("dnsfilter: too many upstream queries in flight")
	// ErrServerClosed is returned by Serve and ListenAndServe after
	// Shutdown.
	ErrServerClosed = errors.New("dnsfilter: server closed")
)
