package categorizer

import (
	"bytes"
	"compress/gzip"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// bundledPrefix marks a FeedConfig.Source embedded in the binary.
const bundledPrefix = "bundled:"

//go:embed bundled/*.gz bundled/manifest.json bundled/ATTRIBUTION.md
var bundledFiles embed.FS

// bundledFS holds the embedded lists, named as in manifest.json.
var bundledFS = func() fs.FS {
	sub, err := fs.Sub(bundledFiles, "bundled")
	if err != nil {
		panic(err)
	}
	return sub
}()

type bundledFeed struct {
	Name       string   `json:"name"`
	File       string   `json:"file"`
	Format     Format   `json:"format"`
	Categories []string `json:"categories"`
	Threat     bool     `json:"threat"`
	License    string   `json:"license"`
}

var bundledManifest = func() []bundledFeed {
	b, err := fs.ReadFile(bundledFS, "manifest.json")
	if err != nil {
		panic(err)
	}
	var m []bundledFeed
	if err := json.Unmarshal(b, &m); err != nil {
		panic(fmt.Sprintf("categorizer: bundled manifest: %v", err))
	}
	return m
}()

// DefaultFeeds returns the bundled default feed set: permissively
// licensed malware, phishing, scam, cryptomining and malicious-IP threat
// lists plus UT1 content categories (gambling, adult, social_networks,
// dating, games, shopping, ...), embedded in the binary so `cordon serve`
// filters with no configuration. BundledAttribution gives the licences.
func DefaultFeeds() []FeedConfig {
	out := make([]FeedConfig, 0, len(bundledManifest))
	for _, f := range bundledManifest {
		out = append(out, FeedConfig{
			Name:       f.Name,
			Source:     bundledPrefix + f.File,
			Format:     f.Format,
			Categories: append([]string(nil), f.Categories...),
			Threat:     f.Threat,
			MaxShrink:  0.5,
		})
	}
	return out
}

// BundledAttribution returns the licence and attribution text of the
// bundled feeds (serve it, or print it with `cordon version`).
func BundledAttribution() string {
	b, _ := fs.ReadFile(bundledFS, "ATTRIBUTION.md")
	return string(b)
}

// openBundled returns the decompressed content of a bundled list.
func openBundled(source string) (io.ReadCloser, error) {
	name := strings.TrimPrefix(source, bundledPrefix)
	b, err := fs.ReadFile(bundledFS, name)
	if err != nil {
		return nil, fmt.Errorf("categorizer: bundled list %q: %w", name, err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("categorizer: bundled list %q: %w", name, err)
	}
	return zr, nil
}

// BuildBundled compiles the bundled default feeds into an Index without
// touching the network or the disk: the Index an edge serves before its
// first sync completes or when no snapshot exists yet.
func BuildBundled(version uint64) (*Index, error) {
	return BuildFeeds(DefaultFeeds(), version)
}

// BuildFeeds compiles feeds from local or bundled sources (no HTTP) into
// an Index; per-feed status is recorded in it. Invalid lines are counted,
// not fatal; a source that cannot be read is an error.
func BuildFeeds(feeds []FeedConfig, version uint64) (*Index, error) {
	b := NewBuilder()
	status := make([]FeedStatus, 0, len(feeds))
	for _, f := range feeds {
		st, err := addFeed(b, f, "")
		if err != nil {
			return nil, err
		}
		status = append(status, feedStatus(f, st))
	}
	b.SetStatus(status)
	return b.Build(version)
}

func feedStatus(f FeedConfig, st ParseStats) FeedStatus {
	s := FeedStatus{
		Name: f.Name, Source: f.Source, Format: f.Format, Categories: f.Categories, Threat: f.Threat,
		Entries: st.Entries, Skipped: st.Skipped, Invalid: st.Invalid,
	}
	for i, e := range st.Errors {
		if i == 10 {
			break
		}
		s.Errors = append(s.Errors, e.Error())
	}
	return s
}
