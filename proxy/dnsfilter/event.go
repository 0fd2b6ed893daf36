package dnsfilter

import "github.com/cordon-gw/cordon/policies"

// EventSink receives one access event per answered query (the reports
// pipeline implements it). Record is called after the answer is written,
// on the query's goroutine, so it must not block: a sink queues or drops
// and counts. The event is owned by the DNS filter and reused after Record
// returns; a sink that keeps it must copy it.
type EventSink interface {
	Record(ev *policies.AccessEvent)
}

// Log attribute keys.
const (
	logAddr      = "addr"
	logClient    = "client"
	logErr       = "err"
	logHost      = "host"
	logPanic     = "panic"
	logUpstream  = "upstream"
	logUpstreams = "upstreams"
)
