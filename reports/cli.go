package reports

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cordon-gw/cordon/policies"
)

const cliUsage = `usage: cordon report <overview | user NAME | group NAME | location NAME> [flags]

Prints a report from the admin API of a running Cordon.

flags:
  --api URL        admin API base URL (default http://127.0.0.1:8080)
  --token TOKEN    bearer token (default $CORDON_TOKEN, then $CORDON_ADMIN_TOKEN)
  --since D        look back D: 24h, 90m, 7d, 2w (default 24h)
  --from T --to T  absolute range (RFC 3339 or relative like --since)
  --top N          entries per top list (default 10)
  --format F       table (default), json or csv
`

// ReportCLI runs `cordon report ...`: it queries the reports API over
// HTTP and prints a table (or the JSON / CSV the API returns). Flags may
// come before or after the positional arguments.
func ReportCLI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, cliUsage) }
	api := fs.String("api", "http://127.0.0.1:8080", "")
	token := fs.String("token", "", "")
	since := fs.String("since", "", "")
	from := fs.String("from", "", "")
	to := fs.String("to", "", "")
	top := fs.Int("top", DefaultTopN, "")
	format := fs.String("format", "table", "")
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			return fmt.Errorf("reports: cli: %w", err)
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	var path string
	switch {
	case len(pos) == 1 && pos[0] == "overview":
		path = PathOverview
	case len(pos) == 2 && (pos[0] == "user" || pos[0] == "group" || pos[0] == "location"):
		path = "/api/v1/reports/" + pos[0] + "s/" + url.PathEscape(pos[1])
	default:
		fs.Usage()
		return fmt.Errorf("reports: cli: want overview, user NAME, group NAME or location NAME (got %q)", strings.Join(pos, " "))
	}
	if *format != "table" && *format != "json" && *format != "csv" {
		return fmt.Errorf("reports: cli: --format %q: want table, json or csv", *format)
	}
	if *since != "" && *from != "" {
		return errors.New("reports: cli: give --since or --from, not both")
	}
	if *since != "" {
		if _, err := ParseSince(*since); err != nil {
			return fmt.Errorf("reports: cli: --since: %w", err)
		}
		*from = *since
	}
	q := url.Values{}
	if *from != "" {
		q.Set("from", *from)
	}
	if *to != "" {
		q.Set("to", *to)
	}
	q.Set("top", strconv.Itoa(*top))
	if *format == "csv" {
		q.Set("format", "csv")
	}
	base, err := url.Parse(strings.TrimRight(*api, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return fmt.Errorf("reports: cli: --api %q: want an http(s) URL", *api)
	}
	tok := *token
	if tok == "" {
		tok = os.Getenv("CORDON_TOKEN")
	}
	if tok == "" {
		tok = os.Getenv("CORDON_ADMIN_TOKEN")
	}
	u := base.String() + path + "?" + q.Encode()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("reports: cli: %w", err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	req.Header.Set(policies.ClientHeader, "cli")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("reports: cli: %w", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reports: cli: read response: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		var e apiError
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		switch res.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("reports: cli: %s: %s (set --token or CORDON_TOKEN to an auditor token)", res.Status, msg)
		case http.StatusNotFound:
			return fmt.Errorf("reports: cli: %s: %w", u, ErrNotFound)
		}
		return fmt.Errorf("reports: cli: %s: %s", res.Status, msg)
	}
	if *format != "table" {
		_, err := stdout.Write(body)
		return err
	}
	var rep Report
	if err := json.Unmarshal(body, &rep); err != nil {
		return fmt.Errorf("reports: cli: decode report: %w", err)
	}
	return rep.WriteTable(stdout)
}

// WriteTable prints rep for a terminal.
func (rep *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	title := "Overview"
	if rep.Subject != "" {
		title = strings.ToUpper(rep.Scope[:1]) + rep.Scope[1:] + " " + rep.Subject
	}
	const tf = "2006-01-02 15:04"
	fmt.Fprintf(tw, "%s  %s → %s UTC\n", title, rep.From.UTC().Format(tf), rep.To.UTC().Format(tf))
	fmt.Fprintf(tw, "Requests %s\tBlocked %s (%s)\tDown %s\tUp %s\n\n",
		formatNum(rep.Requests), formatNum(rep.Blocked), pct(rep.Blocked, rep.Requests), formatBytes(rep.BytesDown), formatBytes(rep.BytesUp))
	list := func(head string, l []Count) {
		if len(l) == 0 {
			return
		}
		fmt.Fprintf(tw, "%s\tREQUESTS\n", head)
		for _, c := range l {
			name := c.Name
			if name == "" {
				name = "(default)"
			}
			fmt.Fprintf(tw, "%s\t%s\n", name, formatNum(c.Count))
		}
		fmt.Fprintln(tw)
	}
	list("TOP DOMAINS", rep.TopDomains)
	list("TOP CATEGORIES", rep.TopCategories)
	list("TOP USERS", rep.TopUsers)
	if len(rep.TopUsersByBlocks) > 0 {
		fmt.Fprintf(tw, "TOP USERS BY BLOCKS\tBLOCKED\n")
		for _, c := range rep.TopUsersByBlocks {
			fmt.Fprintf(tw, "%s\t%s\n", c.Name, formatNum(c.Count))
		}
		fmt.Fprintln(tw)
	}
	if len(rep.BlockedCategories) > 0 {
		fmt.Fprintf(tw, "TOP BLOCKED CATEGORIES\tBLOCKED\n")
		for _, c := range rep.BlockedCategories {
			fmt.Fprintf(tw, "%s\t%s\n", c.Name, formatNum(c.Count))
		}
		fmt.Fprintln(tw)
	}
	list("THREATS", rep.Threats)
	if len(rep.WouldBlock) > 0 {
		fmt.Fprintf(tw, "MONITOR RULE\tWOULD BLOCK\n")
		for _, c := range rep.WouldBlock {
			fmt.Fprintf(tw, "%s\t%s\n", c.Name, formatNum(c.Count))
		}
		fmt.Fprintln(tw)
	}
	if len(rep.BlockedAttempts) > 0 {
		fmt.Fprintf(tw, "BLOCKED DOMAIN\tCATEGORY\tRULE\tCOUNT\tLAST (UTC)\n")
		for _, a := range rep.BlockedAttempts {
			rule := a.Rule
			if rule == "" {
				rule = "(default)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.Domain, a.Category, rule, formatNum(a.Count), a.Last.UTC().Format(tf))
		}
		fmt.Fprintln(tw)
	}
	// Long ranges print one line per day instead of per hour.
	timeline, head, tfmt := rep.Timeline, "HOUR (UTC)", tf
	if len(timeline) > 48 {
		timeline, head, tfmt = perDay(timeline), "DAY (UTC)", "2006-01-02"
	}
	var peak int64
	for _, p := range timeline {
		peak = max(peak, p.Requests)
	}
	if peak > 0 {
		fmt.Fprintf(tw, "%s\tREQUESTS\tBLOCKED\t\n", head)
		for _, p := range timeline {
			if p.Requests == 0 {
				continue
			}
			bar := strings.Repeat("█", int((p.Requests*30+peak-1)/peak))
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Hour.UTC().Format(tfmt), formatNum(p.Requests), formatNum(p.Blocked), bar)
		}
	}
	return tw.Flush()
}

// perDay sums hourly points into UTC days.
func perDay(hours []HourPoint) []HourPoint {
	var out []HourPoint
	for _, h := range hours {
		day := h.Hour.UTC().Truncate(24 * time.Hour)
		if n := len(out); n > 0 && out[n-1].Hour.Equal(day) {
			o := &out[n-1]
			o.Requests += h.Requests
			o.Blocked += h.Blocked
			o.BytesUp += h.BytesUp
			o.BytesDown += h.BytesDown
			continue
		}
		h.Hour = day
		out = append(out, h)
	}
	return out
}
