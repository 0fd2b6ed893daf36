package loadtest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("loadtest: write json: %w", err)
	}
	return nil
}

// WriteHTTPTable prints r for people.
func WriteHTTPTable(w io.Writer, r *HTTPResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	loop := "closed loop"
	if r.Loop == "open" {
		loop = fmt.Sprintf("open loop at %.0f/s", r.Rate)
	}
	fmt.Fprintf(tw, "HTTP load\t%s, %s, %d connections, %.1fs\n", r.Target, loop, r.Connections, r.ElapsedSec)
	fmt.Fprintf(tw, "requests\t%d answered, %.1f/s, %s body\n", r.Requests, r.RPS, bytesIEC(r.BodyBytes))
	if r.Missed > 0 {
		fmt.Fprintf(tw, "missed\t%d due but never sent: every connection was busy, the target fell behind the rate\n", r.Missed)
	}
	fmt.Fprintf(tw, "status\t%s\n", countsLine(intKeys(r.Status)))
	fmt.Fprintf(tw, "errors\t%s\n", countsLine(r.Errors))
	fmt.Fprintf(tw, "connections\t%d dials, %d resent on a new connection\n", r.Dials, r.Retries)
	if r.Tunnels+r.TunnelsRefused > 0 {
		fmt.Fprintf(tw, "tunnels\t%d established (%.1f/s), %d refused\n", r.Tunnels, r.TunnelsPerSec, r.TunnelsRefused)
	}
	if r.TLSHandshake != nil {
		verify := "origin certificates not verified (no --ca)"
		if r.TLSVerified {
			verify = "origin certificates verified"
		}
		fmt.Fprintf(tw, "TLS\t%d handshakes, %d resumed, %s\n", r.TLSHandshake.Count, r.TLSResumed, verify)
	}
	fmt.Fprintln(tw)
	writeLatencyHeader(tw)
	name := "request"
	if r.Loop == "open" {
		name = "request (from due)"
	}
	writeLatencyRow(tw, name, r.Latency)
	if r.Service != nil {
		writeLatencyRow(tw, "service (from send)", *r.Service)
	}
	if r.TunnelSetup != nil {
		writeLatencyRow(tw, "tunnel set-up", *r.TunnelSetup)
	}
	if r.TLSHandshake != nil {
		writeLatencyRow(tw, "TLS handshake", *r.TLSHandshake)
	}
	return tw.Flush()
}

// WriteDNSTable prints r for people.
func WriteDNSTable(w io.Writer, r *DNSResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	loop := "closed loop"
	if r.Loop == "open" {
		loop = fmt.Sprintf("open loop at %.0f/s", r.Rate)
	}
	names := strconv.Itoa(r.Names) + " names"
	if r.Names == 0 {
		names = "unique names"
	}
	fmt.Fprintf(tw, "DNS load\t%s over %s, %s, %d workers, %s, %.1fs\n", r.Server, r.Transport, loop, r.Concurrency, names, r.ElapsedSec)
	fmt.Fprintf(tw, "answers\t%d, %.1f/s (%d NODATA, %d truncated, %d resent)\n", r.Answers, r.QPS, r.NoData, r.Truncated, r.Retries)
	if r.Missed > 0 {
		fmt.Fprintf(tw, "missed\t%d due but never sent: every worker was waiting, the server fell behind the rate\n", r.Missed)
	}
	fmt.Fprintf(tw, "rcodes\t%s\n", countsLine(r.Rcodes))
	fmt.Fprintf(tw, "errors\t%s\n", countsLine(r.Errors))
	fmt.Fprintln(tw)
	writeLatencyHeader(tw)
	name := "query"
	if r.Loop == "open" {
		name = "query (from due)"
	}
	writeLatencyRow(tw, name, r.Latency)
	if r.Service != nil {
		writeLatencyRow(tw, "service (from send)", *r.Service)
	}
	return tw.Flush()
}

func writeLatencyHeader(w io.Writer) {
	fmt.Fprintln(w, "latency\tcount\tmin\tmean\tp50\tp90\tp99\tp99.9\tmax")
}

func writeLatencyRow(w io.Writer, name string, s Summary) {
	fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, s.Count,
		fmtDur(s.Min), fmtDur(s.Mean), fmtDur(s.P50), fmtDur(s.P90), fmtDur(s.P99), fmtDur(s.P999), fmtDur(s.Max))
}

// fmtDur prints a latency with three significant digits in µs, ms or s.
func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Millisecond:
		return strconv.FormatFloat(float64(d)/1e3, 'f', sigDecimals(float64(d)/1e3), 64) + "µs"
	case d < time.Second:
		return strconv.FormatFloat(float64(d)/1e6, 'f', sigDecimals(float64(d)/1e6), 64) + "ms"
	default:
		return strconv.FormatFloat(d.Seconds(), 'f', sigDecimals(d.Seconds()), 64) + "s"
	}
}

func sigDecimals(v float64) int {
	switch {
	case v >= 100:
		return 0
	case v >= 10:
		return 1
	default:
		return 2
	}
}

func bytesIEC(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + " B"
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func intKeys(m map[int]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for k, v := range m {
		out[strconv.Itoa(k)] = v
	}
	return out
}

// countsLine prints "a: 3, b: 1", largest first, or "none".
func countsLine(m map[string]uint64) string {
	if len(m) == 0 {
		return "none"
	}
	keys := slices.SortedFunc(maps.Keys(m), func(a, b string) int {
		return cmp.Or(cmp.Compare(m[b], m[a]), strings.Compare(a, b))
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
