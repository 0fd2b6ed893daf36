package dnsfilter_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cordon-gw/cordon/policies"
	"github.com/cordon-gw/cordon/proxy/dnsfilter"
)

// Wiring as cmd/cordon does it: one Engine shared with the HTTP proxy, the
// listeners on Config.Listen, DoH on the admin mux.
func Example() {
	eng := policies.NewEngine(policies.EngineConfig{Logger: slog.New(slog.DiscardHandler)})
	cfg := dnsfilter.Config{
		Listen:    "127.0.0.1:0",
		Upstreams: []string{"udp://127.0.0.1:53"},
	}
	if err := cfg.Validate(); err != nil {
		fmt.Println(err)
		return
	}
	srv, err := dnsfilter.New(cfg, dnsfilter.Deps{
		Engine:     eng,
		Logger:     slog.New(slog.DiscardHandler),
		Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.Handle("/dns-query", srv.DoHHandler())
	mux.Handle("/dns-query/{token}", srv.DoHHandler())

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = srv.ListenAndServe(ctx) // returns when ctx is done
	fmt.Println(errors.Is(err, dnsfilter.ErrServerClosed))
	// Output: true
}
