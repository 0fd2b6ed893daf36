// Command mktraffic builds the traffic files of loadtest from public feed
// data:
//
//	go run ./loadtest/cmd/mktraffic [--data DIR] [--out loadtest/traffic]
//
// urls.txt holds scheme-less host/path lines (90 % /1k, 10 % /64k),
// names.txt dnsperf-style "name TYPE" lines (80 % A, 20 % AAAA), and hosts
// maps every URL host to 127.0.0.1 in /etc/hosts format, for a proxy under
// test to reach the local origin (Squid hosts_file, Cordon proxy hosts_file). Hosts are
// drawn from a popularity list with a Zipf law over the rank, so popular
// names repeat (a cache warms up) while the long tail keeps it partly
// cold, plus a share of listed names from the Block List Project
// (ransomware, scam, phishing) and the URLhaus host file, which a filter
// blocks. The draw is seeded: the same flags give the same files.
//
// By default everything comes from the repository: the listed names from
// the bundled default lists (categorizer/bundled) and the popular names
// from the OpenDNS top 10,000 (bundled as the newly-seen baseline).
// --data names a folder laid out like the public feed snapshot the
// committed files were built from (blocklistproject/, urlhaus/ and
// umbrella/umbrella-top-100k.txt): the same listed names, and the Cisco
// Umbrella top 100k as the popularity list.
package main

import (
	"bufio"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "mktraffic:", err)
		}
		os.Exit(2)
	}
}

// config is what the flags set.
type config struct {
	data, out    string
	urls, names  int
	blockedShare float64
	seed         uint64
}

// sources are the files names are drawn from; a ".gz" file is read
// decompressed.
type sources struct {
	blocked     []string // lists of blocked names
	popular     string   // popular names in rank order
	popularName string   // what the header calls the popular list
	root        string   // blocked and popular are relative to root
}

// Feed files of blocked names, relative to a --data folder, and the same
// lists as bundled in the repository.
var (
	blockedFeeds = []string{
		"blocklistproject/ransomware.txt",
		"blocklistproject/scam.txt",
		"blocklistproject/alt-version/phishing-nl.txt",
		"urlhaus/hosts",
	}
	bundledFeeds = []string{
		"categorizer/bundled/blp-ransomware.gz",
		"categorizer/bundled/blp-scam.gz",
		"categorizer/bundled/blp-phishing.gz",
		"categorizer/bundled/urlhaus-hosts.gz",
	}
)

// dataSources reads a folder laid out like the public feed snapshot.
func dataSources(dir string) sources {
	return sources{blocked: blockedFeeds, popular: "umbrella/umbrella-top-100k.txt", popularName: "Umbrella top-100k", root: dir}
}

// repoSources reads the repository the working directory is in.
func repoSources() (sources, error) {
	root, err := repoRoot()
	if err != nil {
		return sources{}, err
	}
	return sources{blocked: bundledFeeds, popular: "categorizer/bundled/popular-opendns-top.gz", popularName: "OpenDNS top-10k", root: root}, nil
}

// repoRoot is the nearest folder at or above the working directory whose
// go.mod is this module's.
func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.HasPrefix(string(b), "module github.com/cordon-gw/cordon\n") {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("not inside the cordon repository (%s); run from it or pass --data", wd)
		}
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	var c config
	fs := flag.NewFlagSet("mktraffic", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.data, "data", "", "feed data `folder` laid out like the public feed snapshot (blocklistproject/, urlhaus/, umbrella/); default the repository's bundled lists and OpenDNS top 10,000")
	fs.StringVar(&c.out, "out", "loadtest/traffic", "output `folder` for urls.txt and names.txt")
	fs.IntVar(&c.urls, "urls", 8000, "URL lines to write")
	fs.IntVar(&c.names, "names", 20000, "name lines to write")
	fs.Float64Var(&c.blockedShare, "blocked-share", 0.1, "share of lines naming a listed (blocked) host")
	fs.Uint64Var(&c.seed, "seed", 1, "random seed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.urls < 1 || c.names < 1 || c.blockedShare < 0 || c.blockedShare > 1 {
		return fmt.Errorf("--urls %d, --names %d, --blocked-share %v: want counts >= 1 and a share in [0, 1]", c.urls, c.names, c.blockedShare)
	}
	src := dataSources(c.data)
	if c.data == "" {
		var err error
		if src, err = repoSources(); err != nil {
			return err
		}
	}
	blocked, err := readBlocked(src)
	if err != nil {
		return err
	}
	popular, err := readPopular(filepath.Join(src.root, src.popular), blocked)
	if err != nil {
		return err
	}
	blockedList := make([]string, 0, len(blocked))
	for n := range blocked {
		blockedList = append(blockedList, n)
	}
	slices.Sort(blockedList) // map order must not leak into the seeded draw
	rng := rand.New(rand.NewPCG(c.seed, 0x636f72646f6e))
	zipf := rand.NewZipf(rng, 1.07, 1, uint64(len(popular)-1))
	pick := func() (string, bool) {
		if rng.Float64() < c.blockedShare {
			return blockedList[rng.IntN(len(blockedList))], true
		}
		return popular[zipf.Uint64()], false
	}

	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}
	header := fmt.Sprintf("generated by `go run ./loadtest/cmd/mktraffic --seed %d --blocked-share %v`: %s names by Zipf(1.07) over rank, plus listed names from %s",
		c.seed, c.blockedShare, src.popularName, strings.Join(src.blocked, ", "))
	var urls, names strings.Builder
	fmt.Fprintf(&urls, "# %s\n# scheme-less lines: loadtest http makes them http://host:18080/path (or https://host:18443/path with --https)\n", header)
	nBlockedURLs, urlHosts := 0, make(map[string]bool)
	for range c.urls {
		host, isBlocked := pick()
		if isBlocked {
			nBlockedURLs++
		}
		urlHosts[host] = true
		path := "/1k"
		if rng.IntN(10) == 0 {
			path = "/64k"
		}
		urls.WriteString(host + path + "\n")
	}
	fmt.Fprintf(&names, "; %s\n", header)
	nBlockedNames, distinct := 0, make(map[string]bool)
	for range c.names {
		host, isBlocked := pick()
		if isBlocked {
			nBlockedNames++
		}
		distinct[host] = true
		qtype := "A"
		if rng.IntN(5) == 0 {
			qtype = "AAAA"
		}
		names.WriteString(host + " " + qtype + "\n")
	}
	var hosts strings.Builder
	fmt.Fprintf(&hosts, "# every host of urls.txt at the local origin; %s\n", header)
	for _, h := range slices.Sorted(maps.Keys(urlHosts)) {
		hosts.WriteString("127.0.0.1 " + h + "\n")
	}
	for file, text := range map[string]string{"urls.txt": urls.String(), "names.txt": names.String(), "hosts": hosts.String()} {
		if err := os.WriteFile(filepath.Join(c.out, file), []byte(text), 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "%s/urls.txt: %d URLs (%d blocked); hosts: %d URL hosts; names.txt: %d queries (%d blocked, %d distinct names); from %d popular and %d listed names\n",
		c.out, c.urls, nBlockedURLs, len(urlHosts), c.names, nBlockedNames, len(distinct), len(popular), len(blockedList))
	return nil
}

// readBlocked reads the listed names of every blocked feed: hosts-format
// lines ("0.0.0.0 name", "127.0.0.1<TAB>name") and bare-name lines alike.
func readBlocked(src sources) (map[string]bool, error) {
	out := make(map[string]bool)
	for _, feed := range src.blocked {
		err := eachLine(filepath.Join(src.root, feed), func(fields []string) {
			if n, ok := hostName(fields[len(fields)-1]); ok {
				out[n] = true
			}
		})
		if err != nil {
			return nil, err
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no listed names in %s", src.root)
	}
	return out, nil
}

// readPopular reads the popularity list in rank order, leaving out names
// a blocked feed lists, so "popular" lines stay allowed.
func readPopular(path string, blocked map[string]bool) ([]string, error) {
	var out []string
	err := eachLine(path, func(fields []string) {
		if n, ok := hostName(fields[0]); ok && !blocked[n] {
			out = append(out, n)
		}
	})
	if err != nil {
		return nil, err
	}
	if len(out) < 2 {
		return nil, fmt.Errorf("%s: fewer than 2 usable names", path)
	}
	return out, nil
}

func eachLine(path string, fn func(fields []string)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		r = zr
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") || strings.HasPrefix(fields[0], "!") {
			continue
		}
		fn(fields)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// hostName keeps multi-label DNS names usable in a URL: no IP literals,
// no wildcards or underscores, no localhost entries.
func hostName(s string) (string, bool) {
	s = strings.ToLower(strings.TrimSuffix(s, "."))
	if _, err := netip.ParseAddr(s); err == nil {
		return "", false
	}
	if !strings.Contains(s, ".") || strings.ContainsAny(s, "*_/:\\") || s == "localhost.localdomain" {
		return "", false
	}
	if _, ok := dns.IsDomainName(s); !ok {
		return "", false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", false
		}
	}
	return s, true
}
