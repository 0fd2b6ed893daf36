package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
)

// errHelp is returned when help was asked for and printed.
var errHelp = flag.ErrHelp

// usageError is bad command-line input: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func exitCode(err error) int {
	var ue *usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

type command struct {
	name  string
	short string
	run   func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"serve", "run the gateway: HTTP/HTTPS proxy, DNS filter, admin API", runServe},
		{"feeds", "sync feeds and show their status (feeds sync|status)", runFeeds},
		{"policy", "validate, apply, diff, roll back and list policy versions", runPolicy},
		{"change", "change requests: open, list, show, approve, reject, apply, rebase, promote, abort", runChange},
		{"report", "print a browsing report (report user NAME --since 24h)", runReport},
		{"loadtest", "drive load through a proxy or DNS server (loadtest http|dns|origin)", runLoadtest},
		{"ca", "manage the TLS inspection CA (ca init)", runCA},
		{"version", "print the version", runVersion},
	}
}

// run is the whole program, so tests can start it in-process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(stdout)
		if len(args) == 0 {
			return &usageError{"missing subcommand"}
		}
		return errHelp
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	printUsage(stderr)
	return &usageError{fmt.Sprintf("unknown subcommand %q", args[0])}
}

func printUsage(w io.Writer) {
	var b strings.Builder
	b.WriteString("Cordon, a secure web gateway: filtering HTTP/HTTPS proxy and DNS filter.\n\nUsage: cordon <command> [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(&b, "  %-9s %s\n", c.name, c.short)
	}
	b.WriteString("\nRun `cordon <command> --help` for the flags of a command.\n")
	io.WriteString(w, b.String())
}

// Version is set at build time with -ldflags "-X main.Version=…".
var Version = ""

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" {
			if dirty {
				rev += "-dirty"
			}
			return "dev-" + rev
		}
	}
	return "dev"
}

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "cordon version", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "cordon", version())
	return nil
}

// newFlagSet makes a flag set that reports errors instead of exiting.
func newFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s\n\nFlags:\n", usage)
		fs.PrintDefaults()
	}
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return &usageError{err.Error()}
	}
	return nil
}
