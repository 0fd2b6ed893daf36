package redisstore

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cordon-gw/cordon/categorizer"
	"github.com/cordon-gw/cordon/internal/testutil"
)

// TestSyncerPublishesThroughRedis runs the feed pipeline against Redis: a
// sync publishes a snapshot an edge loads; a broken feed update is
// rejected and the edge keeps the old snapshot.
func TestSyncerPublishesThroughRedis(t *testing.T) {
	ctx := t.Context()
	r := testutil.StartRedis(t)
	hosts := testutil.ReadData(t, "urlhaus/hosts")
	var mu sync.Mutex
	body := hosts
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	pub, err := New(client(t, r), Config{ChunkSize: 8192})
	if err != nil {
		t.Fatal(err)
	}
	s, err := categorizer.NewSyncer(categorizer.SyncerConfig{
		Config: categorizer.Config{Feeds: []categorizer.FeedConfig{
			{Name: "urlhaus", Source: srv.URL + "/hostfile", Format: categorizer.FormatHosts, Categories: []string{"malware"}, Threat: true},
		}},
		CacheDir: filepath.Join(t.TempDir(), "feeds"),
		Store:    pub,
		Logger:   slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ix, err := s.Sync(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	edge, err := New(client(t, r), Config{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := categorizer.LoadLatest(ctx, edge)
	if err != nil || got.Version() != ix.Version() || !listed(got, "1008691.com") {
		t.Fatalf("edge loaded %v, %v; want version %d with urlhaus", got, err, ix.Version())
	}
	// The feed breaks: the update is rejected, Redis keeps the old version.
	mu.Lock()
	body = []byte("<html>502 Bad Gateway</html>\n")
	mu.Unlock()
	if _, err := s.Sync(ctx, true); err != nil {
		t.Fatal(err)
	}
	if st := s.Status()[0]; !st.Rejected || st.Entries != 1089 {
		t.Errorf("status after broken update: %+v", st)
	}
	got, err = categorizer.LoadLatest(ctx, edge)
	if err != nil || got.Version() != ix.Version() || !listed(got, "1008691.com") {
		t.Fatalf("after a rejected update the edge loads %v, %v; want the old version %d", got, err, ix.Version())
	}
}
