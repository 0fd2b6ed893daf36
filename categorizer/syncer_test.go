package categorizer

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cordon-gw/cordon/internal/testutil"
)

// feedServer serves files from memory with ETag / Last-Modified support;
// tests replace content and status codes between syncs.
type feedServer struct {
	mu      sync.Mutex
	files   map[string][]byte
	status  map[string]int
	gets    atomic.Int32
	cond304 atomic.Int32
}

func (s *feedServer) set(name string, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[name] = b
	delete(s.status, name)
}

func (s *feedServer) fail(name string, code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status[name] = code
}

func (s *feedServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.gets.Add(1)
	s.mu.Lock()
	b, ok := s.files[r.URL.Path]
	code := s.status[r.URL.Path]
	s.mu.Unlock()
	if code != 0 {
		http.Error(w, "unavailable", code)
		return
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	sum := sha256.Sum256(b)
	w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:8])+`"`)
	if r.Header.Get("If-None-Match") != "" {
		s.cond304.Add(1)
	}
	http.ServeContent(w, r, r.URL.Path, time.Unix(1700000000, 0), bytes.NewReader(b))
}

// readData returns a committed feed sample (testutil.Data).
func readData(t *testing.T, rel string) []byte {
	t.Helper()
	return testutil.ReadData(t, rel)
}

func newFeedServer(t *testing.T) (*feedServer, *httptest.Server) {
	fs := &feedServer{files: map[string][]byte{}, status: map[string]int{}}
	srv := httptest.NewServer(fs)
	t.Cleanup(srv.Close)
	return fs, srv
}

func TestSyncer(t *testing.T) {
	ctx := t.Context()
	feeds, srv := newFeedServer(t)
	feeds.set("/urlhaus.txt", readData(t, "urlhaus/hosts"))
	feeds.set("/phish.txt", readData(t, "ut1/blacklists/phishing/urls"))
	feeds.set("/drop.txt", readData(t, "spamhaus/drop.txt"))
	cache := t.TempDir()
	store, err := NewFileStore(FileStoreConfig{Dir: filepath.Join(cache, "snapshots")})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Feeds: []FeedConfig{
		{Name: "urlhaus", Source: srv.URL + "/urlhaus.txt", Format: FormatHosts, Categories: []string{"malware"}, Threat: true},
		{Name: "ut1-phishing", Source: srv.URL + "/phish.txt", Format: FormatURLs, Categories: []string{"phishing"}, Threat: true},
		{Name: "drop", Source: srv.URL + "/drop.txt", Format: FormatIPs, Categories: []string{"badnet"}, Threat: true, MaxShrink: 0.2},
		{Name: "ransomware", Source: testutil.Data(t, "blocklistproject/ransomware.txt"), Format: FormatHosts, Categories: []string{"malware"}},
	}}
	reg := prometheus.NewRegistry()
	var progress atomic.Int64
	clock := time.Unix(1_800_000_000, 0)
	newSyncer := func() *Syncer {
		s, err := NewSyncer(SyncerConfig{
			Config: cfg, CacheDir: filepath.Join(cache, "feeds"), Store: store,
			Logger: slog.New(slog.NewTextHandler(t.Output(), nil)), Registerer: prometheus.NewRegistry(),
			Progress: func(feed string, done, total int64) { progress.Store(done) },
			Now:      func() time.Time { return clock },
		})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s, err := NewSyncer(SyncerConfig{
		Config: cfg, CacheDir: filepath.Join(cache, "feeds"), Store: store,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil)), Registerer: reg,
		Progress: func(feed string, done, total int64) { progress.Store(done) },
		Now:      func() time.Time { return clock },
	})
	if err != nil {
		t.Fatal(err)
	}
	ix, err := s.Sync(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if !ix.Lookup("1008691.com", "", noIP).Threats.Has(0) {
		t.Error("urlhaus host not found after sync")
	}
	if v := ix.Lookup("0001-5cf.pages.dev", "/awards/x", noIP); names(ix, v) != "phishing|ut1-phishing" {
		t.Errorf("ut1-phishing lookup = %s", names(ix, v))
	}
	if progress.Load() == 0 {
		t.Error("no progress reported")
	}
	v1 := ix.Version()
	if stored, err := LoadLatest(ctx, store); err != nil || stored.Version() != v1 {
		t.Fatalf("store latest: %v", err)
	}
	st := s.Status()
	if st[0].Entries != 1089 || st[2].Entries != 100 || st[0].ETag == "" || st[3].Entries != 1904 {
		t.Errorf("status after first sync: %+v", st)
	}

	// Nothing changed: conditional requests, no new snapshot.
	clock = clock.Add(7 * time.Hour)
	ix2, err := s.Sync(ctx, true)
	if err != nil || ix2.Version() != v1 {
		t.Fatalf("unchanged sync built version %d (was %d): %v", ix2.Version(), v1, err)
	}
	if feeds.cond304.Load() < 3 {
		t.Errorf("%d conditional requests, want 3", feeds.cond304.Load())
	}

	// Broken updates are rejected and the last good version kept.
	feeds.set("/urlhaus.txt", []byte("<html>maintenance</html>\n"))
	feeds.set("/drop.txt", []byte(strings.Join(strings.Split(string(readData(t, "spamhaus/drop.txt")), "\n")[:50], "\n")))
	feeds.fail("/phish.txt", http.StatusBadGateway)
	ix3, err := s.Sync(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if ix3.Version() != v1 {
		t.Errorf("rejected updates built a new version")
	}
	st = s.Status()
	for i, want := range []string{"parsed to nothing", "download failed", "shrank from 100 to 50"} {
		if !st[i].Rejected || !strings.Contains(st[i].LastError, want) || st[i].Rejections != 1 {
			t.Errorf("feed %s: rejected=%v error=%q, want rejection %q", st[i].Name, st[i].Rejected, st[i].LastError, want)
		}
	}
	if st[0].Entries != 1089 || st[2].Entries != 100 {
		t.Errorf("entries changed after rejection: %d %d", st[0].Entries, st[2].Entries)
	}
	if got := promtest.ToFloat64(s.metrics.syncs.WithLabelValues("urlhaus", "rejected")); got != 1 {
		t.Errorf("rejected metric = %v, want 1", got)
	}
	if problems, err := promtest.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("metric lint: %v %v", problems, err)
	}

	// A good update is taken.
	feeds.set("/urlhaus.txt", append(readData(t, "urlhaus/hosts"), "\n127.0.0.1\tnew-bad.example\n"...))
	ix4, err := s.Sync(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if ix4.Version() <= v1 || !ix4.Lookup("new-bad.example", "", noIP).Threats.Has(0) || ix4.Lookup("1.10.16.1", "", noIP).Threats.Empty() {
		t.Errorf("update not applied: version %d", ix4.Version())
	}
	if st := s.Status(); st[0].Rejected || st[0].Entries != 1090 || st[2].Entries != 100 {
		t.Errorf("status after good update: %+v", st[0])
	}

	// A restart with the feed server gone serves from the cache.
	srv.Close()
	s2 := newSyncer()
	ix5, err := s2.Sync(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if !ix5.Lookup("new-bad.example", "", noIP).Threats.Has(0) || ix5.Len() != ix4.Len() {
		t.Errorf("restart from cache: len %d, want %d", ix5.Len(), ix4.Len())
	}
	saved, err := ReadStatus(filepath.Join(cache, "feeds"))
	if err != nil || len(saved) != 4 {
		t.Errorf("ReadStatus: %v", err)
	}
}

// ut1Archive builds a .tar.gz of some UT1 categories of the committed
// sample, laid out as upstream's blacklists.tar.gz.
func ut1Archive(t *testing.T, dirs ...string) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	root := testutil.Data(t, "ut1/blacklists")
	for _, d := range dirs {
		err := filepath.WalkDir(filepath.Join(root, d), func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(filepath.Dir(root), p)
			if err := tw.WriteHeader(&tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
				return err
			}
			_, err = tw.Write(b)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func TestSyncerUT1(t *testing.T) {
	ctx := t.Context()
	feeds, srv := newFeedServer(t)
	feeds.set("/blacklists.tar.gz", ut1Archive(t, "gambling", "dating", "adult"))
	gambling := strings.Fields(string(readData(t, "ut1/blacklists/gambling/domains")))[100]
	dating := strings.Fields(string(readData(t, "ut1/blacklists/dating/domains")))[7]
	adultURL := strings.Fields(string(readData(t, "ut1/blacklists/adult/urls")))[3]
	cfg := Config{Feeds: []FeedConfig{
		{Name: "ut1", Source: srv.URL + "/blacklists.tar.gz", Format: FormatUT1, Categories: []string{"gambling", "porn:adult"}},
		{Name: "ut1-local", Source: testutil.Data(t, "ut1/blacklists"), Format: FormatUT1, Categories: []string{"dating"}},
	}}
	s, err := NewSyncer(SyncerConfig{Config: cfg, CacheDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ix, err := s.Sync(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	host, path, _ := strings.Cut(adultURL, "/")
	for _, c := range []struct{ host, path, want string }{
		{gambling, "", "gambling|"}, {"www." + gambling, "", "gambling|"}, {dating, "", "dating|"},
		{host, "/" + path, "adult|"},
	} {
		if got := names(ix, ix.Lookup(c.host, c.path, noIP)); got != c.want {
			t.Errorf("Lookup(%q, %q) = %q, want %q", c.host, c.path, got, c.want)
		}
	}
	// The sample's gambling and adult (through the alias porn) lines, and
	// dating's.
	if st := s.Status(); st[0].Entries != 1500+5+300 || st[1].Entries != 800+15 {
		t.Errorf("UT1 entries: %d %d, want %d %d", st[0].Entries, st[1].Entries, 1500+5+300, 800+15)
	}
}

func TestConfigValidate(t *testing.T) {
	good := FeedConfig{Name: "f", Source: "https://example.com/x", Format: FormatHosts, Categories: []string{"c"}}
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"ok", func(*Config) {}, ""},
		{"bad name", func(c *Config) { c.Feeds[0].Name = "Bad Name" }, "feeds[0] (Bad Name).name"},
		{"duplicate", func(c *Config) { c.Feeds = append(c.Feeds, good) }, "duplicate feed name"},
		{"format", func(c *Config) { c.Feeds[0].Format = "csv" }, ".format"},
		{"source scheme", func(c *Config) { c.Feeds[0].Source = "gopher://x/y" }, "scheme not supported"},
		{"bundled missing", func(c *Config) { c.Feeds[0].Source = "bundled:nope.gz" }, "no such bundled list"},
		{"no categories", func(c *Config) { c.Feeds[0].Categories = nil }, "categories"},
		{"threat only", func(c *Config) { c.Feeds[0].Categories, c.Feeds[0].Threat = nil, true }, ""},
		{"shrink", func(c *Config) { c.Feeds[0].MaxShrink = 1.5 }, "max_shrink"},
		{"refresh", func(c *Config) { c.Feeds[0].Refresh = time.Second }, "shorter than 1m"},
		{"window", func(c *Config) { c.NewlySeen.Window = -time.Hour }, "newly_seen.window"},
		{"ut1 mapping", func(c *Config) { c.Feeds[0].Format, c.Feeds[0].Categories = FormatUT1, []string{"porn:"} }, "dir:category"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{Feeds: []FeedConfig{good}}
			tt.mod(&c)
			err := c.Validate()
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
	many := Config{}
	for i := 0; i < MaxCategories+1; i++ {
		many.Feeds = append(many.Feeds, FeedConfig{Name: "f" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Source: "x", Format: FormatDomains, Categories: []string{"c" + string(rune('a'+i%26)) + string(rune('a'+i/26))}})
	}
	if err := many.Validate(); err == nil || !strings.Contains(err.Error(), "categories") {
		t.Errorf("Validate with %d categories = %v", MaxCategories+1, err)
	}
	if err := (Config{}).Effective().Validate(); err != nil {
		t.Errorf("default config invalid: %v", err)
	}
}

func TestSyncerErrors(t *testing.T) {
	if _, err := NewSyncer(SyncerConfig{Config: Config{Feeds: []FeedConfig{{Name: "x"}}}, CacheDir: t.TempDir()}); err == nil {
		t.Error("NewSyncer with an invalid config: no error")
	}
	if _, err := NewSyncer(SyncerConfig{}); err == nil {
		t.Error("NewSyncer without cache dir: no error")
	}
	if _, err := BuildFeeds([]FeedConfig{{Name: "x", Source: "https://example.com/", Format: FormatHosts, Categories: []string{"c"}}}, 1); err == nil {
		t.Error("BuildFeeds with an http source: no error")
	}
	if _, err := BuildFeeds([]FeedConfig{{Name: "x", Source: "/no/such/file", Format: FormatHosts, Categories: []string{"c"}}}, 1); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("BuildFeeds with a missing file = %v", err)
	}
}

// flakyStore fails Put while down is set.
type flakyStore struct {
	*FileStore
	down atomic.Bool
}

func (f *flakyStore) Put(ctx context.Context, v uint64, data []byte) error {
	if f.down.Load() {
		return errors.New("store unreachable")
	}
	return f.FileStore.Put(ctx, v, data)
}

func TestSyncerRetriesPublish(t *testing.T) {
	ctx := t.Context()
	fs, err := NewFileStore(FileStoreConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	store := &flakyStore{FileStore: fs}
	store.down.Store(true)
	s, err := NewSyncer(SyncerConfig{
		Config:   Config{Feeds: []FeedConfig{{Name: "urlhaus", Source: testutil.Data(t, "urlhaus/hosts"), Format: FormatHosts, Threat: true}}},
		CacheDir: t.TempDir(), Store: store, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sync(ctx, false); err == nil {
		t.Fatal("Sync with the store down: no error")
	}
	store.down.Store(false)
	// Nothing is due, but the failed publish is retried.
	ix, err := s.Sync(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if v, _, err := fs.Latest(ctx); err != nil || v != ix.Version() {
		t.Errorf("store latest = %d, %v; want %d", v, err, ix.Version())
	}
}
