// Command slipway is Slipway's one binary: `slipway agent` runs a node,
// `slipway dev` runs a local multi-node cluster, and the other commands are
// the client of the cluster's API.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCommand()
	if err := root.ExecuteContext(ctx); err != nil {
		var ec exitCodeError
		if errors.As(err, &ec) {
			os.Exit(ec.code) // a one-off dyno's own exit status
		}
		fmt.Fprintln(os.Stderr, " ▸   ", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "slipway",
		Short: "Slipway: a self-hosted, Heroku-compatible platform",
		Long: `Slipway runs apps the way Heroku does, on machines you own.

Run a local three-node cluster:   slipway dev
Run a node of a real cluster:     slipway agent --config /etc/slipway/slipway.json

Every other command talks to a cluster's API. They read SLIPWAY_API_URL and
SLIPWAY_API_TOKEN, or the credentials saved by 'slipway login'.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	addServerCommands(root)
	addClientCommands(root)
	return root
}
