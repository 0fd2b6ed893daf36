package reports_test

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/cordon-gw/cordon/policies"
	"github.com/cordon-gw/cordon/reports"
)

// Example shows the wiring cmd does: a local store in the data directory,
// the pipeline the proxy and DNS filter record into, and the report
// routes mounted on the admin mux.
func Example() {
	dir, _ := os.MkdirTemp("", "cordon-reports")
	defer os.RemoveAll(dir)

	cfg := reports.Defaults()
	cfg.Dir = dir
	cfg.AccessLog.Path = filepath.Join(dir, "access.log")
	store, err := reports.OpenLocal(cfg, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()
	p, err := reports.New(cfg, reports.Deps{Store: store})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close(context.Background())

	mux := http.NewServeMux()
	for _, rt := range reports.NewHandler(p.Reader(), nil).Routes() {
		mux.Handle(rt.Method+" "+rt.Pattern, rt.Handler) // cmd: api.Mount(rt.Method, rt.Pattern, auditor, rt.Handler)
	}

	p.Record(&policies.AccessEvent{
		Time: time.Now(), User: "alice", ClientIP: netip.MustParseAddr("10.0.0.7"),
		Method: "GET", Host: "casino.example", Categories: []string{"gambling"},
		Action: "block", RuleAction: "block", RuleID: "no-gambling",
	})
	_ = p.Flush(context.Background())

	rep, _ := p.Reader().Report(context.Background(), reports.ScopeUser, "alice",
		reports.Query{From: time.Now().Add(-time.Hour), To: time.Now()})
	fmt.Println(rep.Requests, rep.Blocked, rep.BlockedAttempts[0].Domain, rep.BlockedAttempts[0].Rule)
	// Output: 1 1 casino.example no-gambling
}
