package policies

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

const changeUsage = `usage: cordon change <command> [flags] [arguments]

commands:
  open FILE -t TITLE [-r REASON]       open a change request from a full draft policy (YAML)
  open --patch FILE -t TITLE [-r R]    ... or from a patch of named parts (JSON, see the README)
  list [--state STATE]                 list change requests (open, approved, stale, staged, applied, rejected, withdrawn)
  show ID                              one change: state, approvals, impact, conflicts, stage and observed effect
  comment ID -m TEXT                   comment on a change
  approve ID [-m TEXT]                 approve (a required role, never the author)
  reject ID -m TEXT                    reject, saying why
  withdraw ID [-m TEXT]                withdraw your change
  rebase ID                            re-apply a stale change on the live version (conflicts are listed)
  apply ID                             apply an approved change: a new policy version
  apply ID --stage-locations a,b [--stage-edges e1] [--max-block-rate R] [--max-error-rate R] [--min-requests N]
                                       stage it: those locations/edges first, the rest keeps the live version
  apply ID --emergency -r REASON       (admin) apply without the approvals; flagged in the audit log
  promote ID [-m TEXT]                 make a staged change live everywhere
  abort ID [-r REASON]                 end the stage: back to the live version
  edges                                the edge registry (heartbeats, versions served, requests/s, latency)

flags:
  --server URL            admin API (env CORDON_SERVER, default ` + DefaultServer + `)
  --token TOKEN           bearer token (env CORDON_TOKEN)
`

// RunChangeCLI runs `cordon change <args>`.
func RunChangeCLI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, changeUsage)
		if len(args) == 0 {
			return errors.New("change: missing command")
		}
		return flag.ErrHelp
	}
	cmd := args[0]
	fs := flag.NewFlagSet("cordon change "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, changeUsage) }
	server := fs.String("server", envOr("CORDON_SERVER", DefaultServer), "admin API base URL")
	token := fs.String("token", os.Getenv("CORDON_TOKEN"), "bearer token")
	title := fs.String("t", "", "title")
	reason := fs.String("r", "", "reason")
	msg := fs.String("m", "", "comment")
	patch := fs.String("patch", "", "patch file (JSON)")
	state := fs.String("state", "", "state filter")
	locs := fs.String("stage-locations", "", "comma-separated locations to stage on")
	edges := fs.String("stage-edges", "", "comma-separated edge names to stage on")
	maxBlock := fs.Float64("max-block-rate", 0, "auto-abort above this staged block rate (0..1, 0 off)")
	maxErr := fs.Float64("max-error-rate", 0, "auto-abort above this staged error rate (0..1, 0 off)")
	minReq := fs.Int64("min-requests", 0, "staged requests before the thresholds apply (default 20)")
	emergency := fs.Bool("emergency", false, "admin: apply without the approvals (needs -r)")
	var pos []string
	rest := args[1:]
	for {
		if err := fs.Parse(rest); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	c := NewClient(*server, *token)
	if c.Token == "" {
		return errors.New("change: no token: set CORDON_TOKEN or --token")
	}
	nargs := func(n int) error {
		if len(pos) != n {
			fs.Usage()
			return fmt.Errorf("change %s: want %d argument(s), got %d", cmd, n, len(pos))
		}
		return nil
	}
	var ch ChangeRequest
	post := func(path string, body any) error {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		_, err = c.do(ctx, "POST", APIPrefix+"/changes/"+url.PathEscape(pos[0])+path, "application/json", b, &ch)
		return err
	}
	switch cmd {
	case "open":
		if *patch != "" {
			if err := nargs(0); err != nil {
				return err
			}
			raw, err := os.ReadFile(*patch)
			if err != nil {
				return fmt.Errorf("change open: %w", err)
			}
			var pt Patch
			if err := decodeStrictJSON(strings.NewReader(string(raw)), &pt); err != nil {
				return fmt.Errorf("change open: patch %s: %w", *patch, err)
			}
			b, _ := json.Marshal(changeBody{Title: *title, Reason: *reason, Patch: &pt})
			if _, err := c.do(ctx, "POST", APIPrefix+"/changes", "application/json", b, &ch); err != nil {
				return fmt.Errorf("change open: %w", err)
			}
		} else {
			if err := nargs(1); err != nil {
				return err
			}
			doc, err := os.ReadFile(pos[0])
			if err != nil {
				return fmt.Errorf("change open: %w", err)
			}
			q := url.Values{"title": {*title}, "reason": {*reason}}
			if _, err := c.do(ctx, "POST", APIPrefix+"/changes?"+q.Encode(), "application/yaml", doc, &ch); err != nil {
				return fmt.Errorf("change open: %w", err)
			}
		}
		printChange(stdout, &ch)
		return nil
	case "list":
		if err := nargs(0); err != nil {
			return err
		}
		var res struct {
			Changes []ChangeRequest `json:"changes"`
		}
		path := APIPrefix + "/changes"
		if *state != "" {
			path += "?state=" + url.QueryEscape(*state)
		}
		if _, err := c.do(ctx, "GET", path, "", nil, &res); err != nil {
			return fmt.Errorf("change list: %w", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATE\tAUTHOR\tBASE\tAPPROVALS\tTITLE")
		for _, x := range res.Changes {
			fmt.Fprintf(tw, "%s\t%s\t%s (%s)\t%d\t%s\t%s\n", x.ID, x.State, x.Author, x.AuthorRole, x.BaseVersion, approvalSummary(&x), x.Title)
		}
		return tw.Flush()
	case "show":
		if err := nargs(1); err != nil {
			return err
		}
		if _, err := c.do(ctx, "GET", APIPrefix+"/changes/"+url.PathEscape(pos[0]), "", nil, &ch); err != nil {
			return fmt.Errorf("change show: %w", err)
		}
		printChange(stdout, &ch)
		return nil
	case "comment":
		if err := nargs(1); err != nil {
			return err
		}
		b, _ := json.Marshal(map[string]string{"text": *msg})
		var cm ChangeComment
		if _, err := c.do(ctx, "POST", APIPrefix+"/changes/"+url.PathEscape(pos[0])+"/comments", "application/json", b, &cm); err != nil {
			return fmt.Errorf("change comment: %w", err)
		}
		fmt.Fprintf(stdout, "comment by %s (%s) at %s\n", cm.Actor, cm.Role, cm.Time.Format(time.RFC3339))
		return nil
	case "approve", "reject", "withdraw", "promote":
		if err := nargs(1); err != nil {
			return err
		}
		if err := post("/"+cmd, map[string]string{"comment": *msg}); err != nil {
			return fmt.Errorf("change %s: %w", cmd, err)
		}
		printChange(stdout, &ch)
		return nil
	case "abort":
		if err := nargs(1); err != nil {
			return err
		}
		if err := post("/abort", map[string]string{"reason": *reason}); err != nil {
			return fmt.Errorf("change abort: %w", err)
		}
		printChange(stdout, &ch)
		return nil
	case "rebase":
		if err := nargs(1); err != nil {
			return err
		}
		if err := post("/rebase", map[string]string{}); err != nil {
			var ae *APIError
			if errors.As(err, &ae) && ae.Status == 409 {
				if _, gerr := c.do(ctx, "GET", APIPrefix+"/changes/"+url.PathEscape(pos[0]), "", nil, &ch); gerr == nil {
					printConflicts(stderr, ch.Conflicts)
				}
			}
			return fmt.Errorf("change rebase: %w", err)
		}
		printChange(stdout, &ch)
		return nil
	case "apply":
		if err := nargs(1); err != nil {
			return err
		}
		body := map[string]any{}
		if *emergency {
			body["emergency"], body["reason"] = true, *reason
		}
		if *locs != "" || *edges != "" {
			body["stage"] = StageRequest{Locations: splitList(*locs), Edges: splitList(*edges), MaxBlockRate: *maxBlock,
				MaxErrorRate: *maxErr, MinRequests: *minReq}
		}
		if err := post("/apply", body); err != nil {
			return fmt.Errorf("change apply: %w", err)
		}
		printChange(stdout, &ch)
		return nil
	case "edges":
		if err := nargs(0); err != nil {
			return err
		}
		var res struct {
			Edges []EdgeStatus `json:"edges"`
		}
		if _, err := c.do(ctx, "GET", APIPrefix+"/edges", "", nil, &res); err != nil {
			return fmt.Errorf("change edges: %w", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tROLE\tPOLICY\tSTAGED\tFEEDS\tREQ/S\tP50 ms\tP99 ms\tLAST HEARTBEAT")
		for _, e := range res.Edges {
			staged := "-"
			if e.StagedVersion > 0 {
				staged = fmt.Sprintf("%d (%s)", e.StagedVersion, e.InStage)
			}
			last := e.LastHeartbeat.Format(time.RFC3339)
			if e.Stale {
				last += " STALE"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%.1f\t%.3f\t%.3f\t%s\n", e.Name, e.Role, e.PolicyVersion, staged, e.FeedVersion,
				e.RequestsPerSecond, e.LatencyP50MS, e.LatencyP99MS, last)
		}
		return tw.Flush()
	}
	fs.Usage()
	return fmt.Errorf("change: unknown command %q", cmd)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func approvalSummary(c *ChangeRequest) string {
	var parts []string
	for _, ra := range c.RequiredApprovals {
		by := ra.ApprovedBy
		if by == "" {
			by = "?"
		}
		parts = append(parts, string(ra.Role)+":"+by)
	}
	return strings.Join(parts, " ")
}

func printConflicts(w io.Writer, cs []Conflict) {
	for _, c := range cs {
		fmt.Fprintf(w, "conflict: %s %s changed both here and on the live policy\n  live:   %s\n  change: %s\n", c.Section, c.Name, short(c.Live), short(c.Change))
	}
}

func printChange(w io.Writer, c *ChangeRequest) {
	fmt.Fprintf(w, "change %s: %s\n", c.ID, c.Title)
	fmt.Fprintf(w, "  state %s, by %s (%s), base version %d, live %d\n", c.State, c.Author, c.AuthorRole, c.BaseVersion, c.LiveVersion)
	if c.Reason != "" {
		fmt.Fprintf(w, "  reason: %s\n", c.Reason)
	}
	fmt.Fprintf(w, "  touches: %s; approvals: %s\n", strings.Join(c.Sections, ", "), approvalSummary(c))
	if c.Rejection != nil {
		fmt.Fprintf(w, "  rejected by %s (%s): %s\n", c.Rejection.Actor, c.Rejection.Role, c.Rejection.Comment)
	}
	if c.AppliedVersion > 0 {
		fmt.Fprintf(w, "  applied as version %d", c.AppliedVersion)
		if c.Emergency {
			fmt.Fprintf(w, " (EMERGENCY: %s)", c.EmergencyReason)
		}
		fmt.Fprintln(w)
	}
	if im := c.Impact; im != nil {
		d := Diff{From: im.AgainstVersion, To: im.AgainstVersion + 1, Changes: im.Diff}
		fmt.Fprint(w, "  "+strings.ReplaceAll(strings.TrimRight(d.String(), "\n"), "\n", "\n  ")+"\n")
		for _, p := range im.Problems {
			fmt.Fprintf(w, "  problem: %s\n", p)
		}
		if im.Preview != nil {
			printPreview(w, *im.Preview)
		}
	}
	printConflicts(w, c.Conflicts)
	if st := c.Stage; st != nil {
		fmt.Fprintf(w, "  stage: version %d on locations %v edges %v since %s %s\n", st.Version, st.Locations, st.Edges, st.Started.Format(time.RFC3339), st.Outcome)
	}
	if o := c.Observed; o != nil {
		for _, side := range []struct {
			name string
			s    EffectSummary
		}{{"staged", o.Staged}, {"rest", o.Rest}} {
			fmt.Fprintf(w, "  %-6s %d requests, block %.2f%%, warn %.2f%%, errors %.2f%%, added latency p50 %.3f ms p99 %.3f ms\n", side.name,
				side.s.Requests, 100*side.s.BlockRate, 100*side.s.WarnRate, 100*side.s.ErrorRate, side.s.LatencyP50MS, side.s.LatencyP99MS)
		}
	}
	for _, cm := range c.Comments {
		fmt.Fprintf(w, "  %s %s (%s): %s\n", cm.Time.Format(time.RFC3339), cm.Actor, cm.Role, cm.Text)
	}
}
