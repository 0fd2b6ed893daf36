package proxy_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cordon-gw/cordon/policies"
	"github.com/cordon-gw/cordon/proxy"
)

// ExampleNew shows how cmd/cordon wires the proxy: a policy engine, the
// reports pipeline as EventSink, the policies Service as ReviewSink, the
// PAC handler on the admin mux, and a graceful shutdown.
func ExampleNew() {
	engine := policies.NewEngine(policies.EngineConfig{})
	cfg := proxy.Defaults()
	cfg.Listen = "127.0.0.1:0"
	srv, err := proxy.New(cfg, proxy.Deps{
		Engine:     engine,
		Events:     proxy.EventSinkFunc(func(ev *policies.AccessEvent) { /* reports.Pipeline.Record */ }),
		Logger:     slog.Default(),
		Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		panic(err)
	}
	admin := http.NewServeMux()
	admin.Handle("/proxy.pac", srv.PACHandler())
	admin.Handle("/wpad.dat", srv.PACHandler())

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		panic(err)
	}
	go func() { _ = srv.Serve(ln) }()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
}
