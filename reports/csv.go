package reports

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"time"
)

// CSVHeader is the header row of a report's CSV export. Every row has a
// section; columns that do not apply to a section are empty:
//
//	summary           name=subject, count=requests, blocked, bytes, time=from
//	timeline          count=requests, blocked, bytes, time=hour start
//	domain, category, blocked_category, action, rule, would_block,
//	threat, user, user_blocks, group, location      name, count
//	blocked           name=domain, category, rule, count, time=last attempt
var CSVHeader = []string{"section", "name", "category", "rule", "count", "blocked", "bytes_up", "bytes_down", "time"}

// WriteCSV writes rep as one flat CSV table (see CSVHeader). Cells that a
// spreadsheet would run as a formula are prefixed with a quote.
func (rep *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	i64 := func(v int64) string { return strconv.FormatInt(v, 10) }
	ts := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	rows := [][]string{CSVHeader,
		{"summary", cellSafe(rep.Subject), "", "", i64(rep.Requests), i64(rep.Blocked), i64(rep.BytesUp), i64(rep.BytesDown), ts(rep.From)},
	}
	for _, p := range rep.Timeline {
		rows = append(rows, []string{"timeline", "", "", "", i64(p.Requests), i64(p.Blocked), i64(p.BytesUp), i64(p.BytesDown), ts(p.Hour)})
	}
	for _, sec := range []struct {
		name string
		list []Count
	}{
		{"domain", rep.TopDomains}, {"category", rep.TopCategories},
		{"blocked_category", rep.BlockedCategories}, {"action", rep.Actions},
		{"rule", rep.Rules}, {"would_block", rep.WouldBlock}, {"threat", rep.Threats},
		{"user", rep.TopUsers}, {"user_blocks", rep.TopUsersByBlocks},
		{"group", rep.TopGroups}, {"location", rep.TopLocations},
	} {
		for _, c := range sec.list {
			rows = append(rows, []string{sec.name, cellSafe(c.Name), "", "", i64(c.Count), "", "", "", ""})
		}
	}
	for _, a := range rep.BlockedAttempts {
		rows = append(rows, []string{"blocked", cellSafe(a.Domain), cellSafe(a.Category), cellSafe(a.Rule), i64(a.Count), "", "", "", ts(a.Last)})
	}
	if err := cw.WriteAll(rows); err != nil {
		return fmt.Errorf("reports: write csv: %w", err)
	}
	return nil
}

// cellSafe defuses spreadsheet formula injection (OWASP "CSV injection").
func cellSafe(s string) string {
	if s != "" {
		switch s[0] {
		case '=', '+', '-', '@', '\t', '\r':
			return "'" + s
		}
	}
	return s
}
