// Package reports owns what happens to an access event after the request
// was answered: a bounded, non-blocking queue (Pipeline), the JSON-lines
// access log with rotation, optional RFC 5424 syslog output, aggregation
// into per-user, per-group and per-location hourly rows, the Store those
// rows live in (LocalStore in the data directory by default; Redis through
// reports/redisstore when edges share state), retention, the report
// queries, the reports API handlers, the HTML report pages with
// server-rendered SVG charts, and the `cordon report` terminal client.
//
// It deliberately does not authenticate anyone: the API handlers and pages
// are plain http.Handlers that the caller mounts behind the admin API's
// authentication (auditor role and up). It never blocks the request path:
// Record copies the event and hands it to a queue, or counts a drop.
package reports
