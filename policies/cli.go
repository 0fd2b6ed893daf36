package policies

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// DefaultServer is the admin API the CLI talks to when neither --server
// nor CORDON_SERVER is set.
const DefaultServer = "http://127.0.0.1:8080"

const cliUsage = `usage: cordon policy <command> [flags] [arguments]

commands:
  validate FILE           check a policy file against the server's feeds (--local: offline, no feed names)
  apply FILE [-m TEXT]    store FILE as a new policy version with a comment
  preview FILE            what FILE would change over recent traffic (users, requests)
  diff [FROM [TO]]        rule-by-rule diff of two versions (default: current and the one before)
  diff FILE               diff of the current policy and a local file
  rollback VERSION [-m TEXT]
                          store an old version again as a new version
  history [-n N]          list versions, newest first
  get [VERSION]           print a version (default: current) as YAML
  hash-password           read a password on stdin, print an argon2id hash for password_hash

flags:
  --server URL            admin API (env CORDON_SERVER, default ` + DefaultServer + `)
  --token TOKEN           bearer token (env CORDON_TOKEN)
`

// RunCLI runs `cordon policy <args>`; stdin is os.Stdin (hash-password).
// Errors are returned (after details are printed to stderr); a usage error
// wraps flag.ErrHelp when help was asked.
func RunCLI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runCLI(ctx, args, os.Stdin, stdout, stderr)
}

func runCLI(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, cliUsage)
		if len(args) == 0 {
			return errors.New("policy: missing command")
		}
		return flag.ErrHelp
	}
	cmd := args[0]
	fs := flag.NewFlagSet("cordon policy "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, cliUsage) }
	server := fs.String("server", envOr("CORDON_SERVER", DefaultServer), "admin API base URL")
	token := fs.String("token", os.Getenv("CORDON_TOKEN"), "bearer token")
	comment := fs.String("m", "", "comment for the new version")
	local := fs.Bool("local", false, "validate offline")
	limit := fs.Int("n", 20, "versions to list")
	// Flags may follow the arguments.
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
	needToken := func() error {
		if c.Token == "" {
			return errors.New("policy: no token: set CORDON_TOKEN or --token (the first admin token is in <data-dir>/admin.token)")
		}
		return nil
	}
	nargs := func(min, max int) error {
		if len(pos) < min || len(pos) > max {
			fs.Usage()
			return fmt.Errorf("policy %s: want %d to %d arguments, got %d", cmd, min, max, len(pos))
		}
		return nil
	}
	switch cmd {
	case "validate":
		if err := nargs(1, 1); err != nil {
			return err
		}
		doc, err := os.ReadFile(pos[0])
		if err != nil {
			return fmt.Errorf("policy validate: %w", err)
		}
		var probs []FieldError
		if *local {
			p, err := Parse(doc)
			if err != nil {
				return fmt.Errorf("policy validate %s: %w", pos[0], err)
			}
			if err := Validate(p, nil); err != nil {
				var ve *ValidationError
				if !errors.As(err, &ve) {
					return err
				}
				probs = ve.Problems
			}
		} else {
			if err := needToken(); err != nil {
				return err
			}
			if probs, err = c.Validate(ctx, doc); err != nil {
				return fmt.Errorf("policy validate %s: %w", pos[0], err)
			}
		}
		if len(probs) > 0 {
			for _, p := range probs {
				fmt.Fprintf(stderr, "%s:%s\n", pos[0], p)
			}
			return fmt.Errorf("policy validate %s: %w: %d problem(s)", pos[0], ErrInvalidPolicy, len(probs))
		}
		fmt.Fprintf(stdout, "%s: valid\n", pos[0])
		return nil
	case "apply", "preview":
		if err := nargs(1, 1); err != nil {
			return err
		}
		if err := needToken(); err != nil {
			return err
		}
		doc, err := os.ReadFile(pos[0])
		if err != nil {
			return fmt.Errorf("policy %s: %w", cmd, err)
		}
		if cmd == "preview" {
			res, err := c.Preview(ctx, doc)
			if err != nil {
				return fmt.Errorf("policy preview %s: %w", pos[0], err)
			}
			printPreview(stdout, res)
			return nil
		}
		v, err := c.Apply(ctx, doc, *comment)
		if err != nil {
			return fmt.Errorf("policy apply %s: %w", pos[0], err)
		}
		fmt.Fprintf(stdout, "version %d by %s at %s (%d rules)\n", v.Number, v.Author, v.Time.Format(time.RFC3339), v.Rules)
		return nil
	case "diff":
		if err := nargs(0, 2); err != nil {
			return err
		}
		if err := needToken(); err != nil {
			return err
		}
		if len(pos) == 1 {
			if _, err := strconv.ParseInt(pos[0], 10, 64); err != nil {
				return diffFile(ctx, c, pos[0], stdout)
			}
		}
		var from, to int64
		for i, s := range pos {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 0 {
				return fmt.Errorf("policy diff: %q: want a version number or a file", s)
			}
			if i == 0 {
				from = n
			} else {
				to = n
			}
		}
		d, err := c.Diff(ctx, from, to)
		if err != nil {
			return fmt.Errorf("policy diff: %w", err)
		}
		fmt.Fprint(stdout, d.String())
		return nil
	case "rollback":
		if err := nargs(1, 1); err != nil {
			return err
		}
		if err := needToken(); err != nil {
			return err
		}
		n, err := strconv.ParseInt(pos[0], 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("policy rollback: %q: want a version number", pos[0])
		}
		v, err := c.Rollback(ctx, n, *comment)
		if err != nil {
			return fmt.Errorf("policy rollback: %w", err)
		}
		fmt.Fprintf(stdout, "version %d restores version %d\n", v.Number, v.RollbackOf)
		return nil
	case "history":
		if err := nargs(0, 0); err != nil {
			return err
		}
		if err := needToken(); err != nil {
			return err
		}
		vs, err := c.History(ctx)
		if err != nil {
			return fmt.Errorf("policy history: %w", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tTIME\tAUTHOR\tSOURCE\tRULES\tCOMMENT")
		for i, v := range vs {
			if i == *limit {
				break
			}
			cm := v.Comment
			if v.RollbackOf > 0 && !strings.Contains(cm, "rollback") {
				cm = fmt.Sprintf("(rollback to %d) %s", v.RollbackOf, cm)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\n", v.Number, v.Time.Format(time.RFC3339), v.Author, v.Source, v.Rules, cm)
		}
		return tw.Flush()
	case "get":
		if err := nargs(0, 1); err != nil {
			return err
		}
		if err := needToken(); err != nil {
			return err
		}
		var n int64
		if len(pos) == 1 {
			var err error
			if n, err = strconv.ParseInt(pos[0], 10, 64); err != nil || n < 0 {
				return fmt.Errorf("policy get: %q: want a version number", pos[0])
			}
		}
		b, err := c.Get(ctx, n)
		if err != nil {
			return fmt.Errorf("policy get: %w", err)
		}
		_, err = stdout.Write(b)
		return err
	case "hash-password":
		if err := nargs(0, 0); err != nil {
			return err
		}
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("policy hash-password: %w", err)
		}
		h, err := HashPassword(strings.TrimRight(line, "\r\n"))
		if err != nil {
			return fmt.Errorf("policy hash-password: %w", err)
		}
		fmt.Fprintln(stdout, h)
		return nil
	}
	fs.Usage()
	return fmt.Errorf("policy: unknown command %q", cmd)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// diffFile prints the diff from the server's current policy to a local
// file.
func diffFile(ctx context.Context, c *Client, path string, w io.Writer) error {
	doc, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("policy diff: %w", err)
	}
	next, err := Parse(doc)
	if err != nil {
		return fmt.Errorf("policy diff %s: %w", path, err)
	}
	curYAML, err := c.Get(ctx, 0)
	if err != nil {
		return fmt.Errorf("policy diff: %w", err)
	}
	cur, err := Parse(curYAML)
	if err != nil {
		return fmt.Errorf("policy diff: current policy: %w", err)
	}
	// Secrets the server redacted for this token cannot be compared.
	for i := range next.Users {
		for _, u := range cur.Users {
			if u.Name != next.Users[i].Name {
				continue
			}
			if u.PasswordHash == RedactedSecret {
				next.Users[i].PasswordHash = RedactedSecret
			}
			if u.DoHToken == RedactedSecret {
				next.Users[i].DoHToken = RedactedSecret
			}
		}
	}
	d := &Diff{Changes: DiffPolicies(cur, next)}
	fmt.Fprintf(w, "current → %s: %d change(s)\n", path, len(d.Changes))
	s := d.String()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	fmt.Fprint(w, s)
	return nil
}

func printPreview(w io.Writer, r PreviewResult) {
	fmt.Fprintf(w, "replayed %d recent requests against version %d\n", r.Events, r.CurrentVersion)
	for _, x := range []struct {
		name string
		imp  PreviewImpact
	}{{"newly blocked", r.NewlyBlocked}, {"newly warned", r.NewlyWarned}, {"newly allowed", r.NewlyAllowed}} {
		fmt.Fprintf(w, "%s: %d request(s)", x.name, x.imp.Requests)
		if len(x.imp.Users) > 0 {
			var us []string
			for _, u := range x.imp.Users {
				us = append(us, fmt.Sprintf("%s (%d)", u.Name, u.Count))
			}
			fmt.Fprintf(w, "; users: %s", strings.Join(us, ", "))
		}
		fmt.Fprintln(w)
	}
}
