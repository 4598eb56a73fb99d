// Command levqor is Levqor in one binary: `levqor dev` runs everything
// locally with no setup, `levqor migrate` applies migrations, and the other
// subcommands are operator tools. Run `levqor help` for the list.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/levqor/levqor/pkg/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
