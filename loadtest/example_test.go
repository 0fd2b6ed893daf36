package loadtest_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/cordon-gw/cordon/loadtest"
)

// Start a local origin and drive a bounded, closed-loop HTTP load at it
// directly (with cfg.Proxy set, the same load goes through a forward proxy).
func ExampleRunHTTP() {
	o, err := loadtest.StartOrigin(loadtest.OriginConfig{HTTPAddr: "127.0.0.1:0"}, slog.New(slog.DiscardHandler))
	if err != nil {
		panic(err)
	}
	defer o.Close()
	targets, err := loadtest.ParseURLs(strings.NewReader("www.example.com/1k\nstatic.example.net/64k\n"), loadtest.URLOptions{})
	if err != nil {
		panic(err)
	}
	cfg := loadtest.HTTPDefaults()
	cfg.ConnectTo = o.HTTPAddr()
	cfg.Targets = targets
	cfg.Connections = 2
	cfg.MaxRequests = 10
	cfg.Duration = 30 * time.Second
	res, err := loadtest.RunHTTP(context.Background(), cfg)
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Requests, "answered:", res.Status[200], "× 200,", res.BodyBytes, "body bytes,", res.ErrorCount(), "errors")
	// Output: 10 answered: 10 × 200, 332800 body bytes, 0 errors
}
