package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/cordon-gw/cordon/categorizer"
	"github.com/cordon-gw/cordon/loadtest"
	"github.com/cordon-gw/cordon/policies"
	"github.com/cordon-gw/cordon/proxy"
	"github.com/cordon-gw/cordon/reports"
)

func runPolicy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return policies.RunCLI(ctx, args, stdout, stderr)
}

func runChange(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return policies.RunChangeCLI(ctx, args, stdout, stderr)
}

func runReport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return reports.ReportCLI(ctx, args, stdout, stderr)
}

func runLoadtest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return loadtest.Main(ctx, args, stdout, stderr)
}

func runCA(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "init" {
		fmt.Fprintln(stderr, "Usage: cordon ca init [--dir DIR]")
		return &usageError{"ca: the only command is init"}
	}
	fs := newFlagSet("ca init", "cordon ca init [--dir DIR]", stderr)
	dir := fs.String("dir", filepath.Join("cordon-data", "ca"), "directory for ca.crt and ca.key")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if _, err := proxy.InitCA(*dir); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created %s (install it in clients' trust stores) and %s (keep it secret)\n",
		filepath.Join(*dir, "ca.crt"), filepath.Join(*dir, "ca.key"))
	return nil
}

// runFeeds is `cordon feeds sync|status`: it works on the same data
// directory (and Redis, when configured) as `cordon serve`, so a sync
// publishes a snapshot the running edges pick up.
func runFeeds(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "sync" && args[0] != "status") {
		fmt.Fprintln(stderr, "Usage: cordon feeds sync [--force] [--config FILE] | cordon feeds status [--config FILE]")
		return &usageError{"feeds: say sync or status"}
	}
	sub := args[0]
	fs := newFlagSet("feeds "+sub, "cordon feeds "+sub+" [flags]", stderr)
	var f serveFlags
	fs.StringVar(&f.config, "config", "", "YAML config file")
	fs.StringVar(&f.dataDir, "data-dir", "", "data directory (default ./cordon-data)")
	fs.StringVar(&f.redis, "redis", "", "Redis URL for shared snapshots")
	force := fs.Bool("force", false, "sync: download every feed even when unchanged")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	cfg, err := f.load()
	if err != nil {
		return err
	}
	if sub == "status" {
		st, err := categorizer.ReadStatus(cfg.path("feeds"))
		if err != nil {
			return err
		}
		printFeedStatus(stdout, st)
		return nil
	}

	logger := newLogger(cfg.Log, stderr)
	g := &gateway{cfg: cfg, log: logger}
	defer g.close(context.Background())
	store, err := g.openSnapshotStore()
	if err != nil {
		return err
	}
	var progress func(string, int64, int64)
	if fd, ok := stderr.(*os.File); ok && term.IsTerminal(int(fd.Fd())) {
		progress = progressPrinter(stderr)
	}
	s, err := categorizer.NewSyncer(categorizer.SyncerConfig{
		Config: cfg.Categorizer, CacheDir: cfg.path("feeds"), Store: store, Logger: logger, Progress: progress,
	})
	if err != nil {
		return err
	}
	ix, err := s.Sync(ctx, *force)
	if progress != nil {
		fmt.Fprintln(stderr)
	}
	printFeedStatus(stdout, s.Status())
	if err != nil {
		return err
	}
	if ix == nil {
		return errors.New("feeds: no snapshot compiled")
	}
	fmt.Fprintf(stdout, "snapshot %d published: %d entries\n", ix.Version(), ix.Len())
	return nil
}

func progressPrinter(w io.Writer) func(feed string, done, total int64) {
	last := time.Time{}
	return func(feed string, done, total int64) {
		if time.Since(last) < 100*time.Millisecond && done != total {
			return
		}
		last = time.Now()
		if total > 0 {
			fmt.Fprintf(w, "\r%-28s %7.1f / %.1f MiB (%3.0f%%)   ", feed, float64(done)/(1<<20), float64(total)/(1<<20), 100*float64(done)/float64(total))
		} else {
			fmt.Fprintf(w, "\r%-28s %7.1f MiB   ", feed, float64(done)/(1<<20))
		}
	}
}

func printFeedStatus(w io.Writer, st []categorizer.FeedStatus) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FEED\tFORMAT\tENTRIES\tINVALID\tAGE\tSTATE")
	now := time.Now()
	for _, s := range st {
		state := "ok"
		if s.LastError != "" {
			state = "error: " + s.LastError
		}
		if s.Rejected {
			state = "rejected, last good kept: " + s.LastError
		}
		age := "-"
		if d := s.Age(now); d > 0 {
			age = d.Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", s.Name, s.Format, s.Entries, s.Invalid, age, state)
	}
	tw.Flush()
}
