// Command loadtest is `cordon loadtest` as a binary of its own, so the
// load generators and the local origin can be built and run (and
// loadtest/compare.sh can drive them) without the server's code.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/cordon-gw/cordon/loadtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := loadtest.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	default:
		fmt.Fprintln(os.Stderr, err)
		if errors.Is(err, loadtest.ErrUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
