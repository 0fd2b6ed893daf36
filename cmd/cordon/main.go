// Command cordon is the one Cordon binary: the secure web gateway server
// (`serve`) and its tools (`feeds`, `policy`, `report`, `loadtest`, `ca`,
// `version`).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, errHelp) {
		fmt.Fprintln(os.Stderr, "cordon:", err)
		os.Exit(exitCode(err))
	}
}
