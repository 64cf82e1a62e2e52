package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/agent"
	"github.com/slipwayhq/slipway/devcluster"
)

// addServerCommands adds `agent` and `dev`.
func addServerCommands(root *cobra.Command) {
	root.AddCommand(newAgentCommand(), newDevCommand())
}

func newAgentCommand() *cobra.Command {
	var configPath string
	cfg := agent.DefaultConfig()
	var join, joinWAN string
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a Slipway node",
		Long: `Run a Slipway node: gossip membership, the region's Raft group, and the API.

Settings come from, in increasing precedence: built-in defaults, the JSON
config file (--config), SLIPWAY_* environment variables, and flags.
docs/configuration.md documents every setting.

Environment variables:
` + envHelp(),
		Example: `  # First three nodes of region "eu", one per zone; each forms the cluster once it sees the others:
  slipway agent --node-name n1 --region eu --zone a --bind 10.0.0.1 --join 10.0.0.2:5002,10.0.0.3:5002 \
      --bootstrap-expect 3 --data-dir /var/lib/slipway --encrypt-key-file /etc/slipway/cluster.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			final := agent.DefaultConfig()
			if configPath != "" {
				if err := agent.LoadFile(&final, configPath); err != nil {
					return err
				}
			}
			if err := agent.ApplyEnv(&final, os.Environ()); err != nil {
				return err
			}
			applyFlags(cmd, &final, &cfg, join, joinWAN)
			logger, err := newLogger(final.LogLevel, final.LogFormat)
			if err != nil {
				return err
			}
			a, err := agent.Start(final, agent.Options{Logger: logger, Version: version})
			if err != nil {
				return err
			}
			<-cmd.Context().Done()
			logger.Info("shutting down")
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := a.Shutdown(ctx); err != nil {
				logger.Warn("shutdown", "err", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&configPath, "config", "", "JSON config file")
	f.StringVar(&cfg.NodeName, "node-name", cfg.NodeName, "node name, unique in the region")
	f.StringVar(&cfg.Region, "region", cfg.Region, "region")
	f.StringVar(&cfg.Zone, "zone", cfg.Zone, "availability zone")
	f.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "data directory")
	f.StringVar(&cfg.BindAddr, "bind", cfg.BindAddr, "IP address to listen on")
	f.StringVar(&cfg.AdvertiseAddr, "advertise", cfg.AdvertiseAddr, "IP address other nodes reach this one at (default: --bind)")
	f.IntVar(&cfg.Ports.API, "api-port", cfg.Ports.API, "API port")
	f.IntVar(&cfg.Ports.Raft, "raft-port", cfg.Ports.Raft, "Raft port")
	f.IntVar(&cfg.Ports.Gossip, "gossip-port", cfg.Ports.Gossip, "LAN gossip port (TCP and UDP)")
	f.IntVar(&cfg.Ports.WAN, "wan-port", cfg.Ports.WAN, "WAN gossip port (0 disables the WAN pool)")
	f.IntVar(&cfg.Ports.RPC, "rpc-port", cfg.Ports.RPC, "internal RPC port")
	f.IntVar(&cfg.Ports.Router, "router-port", cfg.Ports.Router, "router HTTP port")
	f.IntVar(&cfg.Ports.RouterTLS, "router-tls-port", cfg.Ports.RouterTLS, "router HTTPS port")
	f.IntVar(&cfg.Ports.Rendezvous, "rendezvous-port", cfg.Ports.Rendezvous, "port of the attach endpoint for one-off dynos (heroku run)")
	f.StringVar(&cfg.DynoPorts, "dyno-ports", cfg.DynoPorts, "host port range for dynos, like 30000-39999")
	f.IntVar(&cfg.DynoMemoryMB, "dyno-memory", 0, "memory (MB) this node gives to dynos (default: 80% of the machine's)")
	f.StringVar(&join, "join", "", "comma-separated gossip addresses (host:port) of region members to join")
	f.StringVar(&joinWAN, "join-wan", "", "comma-separated WAN gossip addresses of nodes in other regions")
	f.IntVar(&cfg.BootstrapExpect, "bootstrap-expect", 0, "form the region's Raft cluster once this many nodes see each other")
	f.IntVar(&cfg.Voters, "voters", 0, "target number of Raft voters: 1, 3 or 5 (default 3, or 1 with --bootstrap-expect 1)")
	f.StringVar(&cfg.Domain, "domain", cfg.Domain, "cluster domain: apps answer at APP.<domain>")
	f.StringVar(&cfg.EncryptKeyFile, "encrypt-key-file", "", "file holding the base64 gossip/RPC key (same on every node)")
	f.StringVar(&cfg.InitialAdminTokenFile, "initial-admin-token-file", "", "file holding the admin token to register when the cluster is first formed")
	f.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	f.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "text or json")
	return cmd
}

// applyFlags copies the flags the user set over the loaded configuration.
func applyFlags(cmd *cobra.Command, dst, flags *agent.Config, join, joinWAN string) {
	set := func(name string, apply func()) {
		if cmd.Flags().Changed(name) {
			apply()
		}
	}
	set("node-name", func() { dst.NodeName = flags.NodeName })
	set("region", func() { dst.Region = flags.Region })
	set("zone", func() { dst.Zone = flags.Zone })
	set("data-dir", func() { dst.DataDir = flags.DataDir })
	set("bind", func() { dst.BindAddr = flags.BindAddr })
	set("advertise", func() { dst.AdvertiseAddr = flags.AdvertiseAddr })
	set("api-port", func() { dst.Ports.API = flags.Ports.API })
	set("raft-port", func() { dst.Ports.Raft = flags.Ports.Raft })
	set("gossip-port", func() { dst.Ports.Gossip = flags.Ports.Gossip })
	set("wan-port", func() { dst.Ports.WAN = flags.Ports.WAN })
	set("rpc-port", func() { dst.Ports.RPC = flags.Ports.RPC })
	set("router-port", func() { dst.Ports.Router = flags.Ports.Router })
	set("router-tls-port", func() { dst.Ports.RouterTLS = flags.Ports.RouterTLS })
	set("rendezvous-port", func() { dst.Ports.Rendezvous = flags.Ports.Rendezvous })
	set("dyno-ports", func() { dst.DynoPorts = flags.DynoPorts })
	set("dyno-memory", func() { dst.DynoMemoryMB = flags.DynoMemoryMB })
	set("join", func() { dst.Join = splitComma(join) })
	set("join-wan", func() { dst.JoinWAN = splitComma(joinWAN) })
	set("bootstrap-expect", func() { dst.BootstrapExpect = flags.BootstrapExpect })
	set("voters", func() { dst.Voters = flags.Voters })
	set("domain", func() { dst.Domain = flags.Domain })
	set("encrypt-key-file", func() { dst.EncryptKeyFile = flags.EncryptKeyFile })
	set("initial-admin-token-file", func() { dst.InitialAdminTokenFile = flags.InitialAdminTokenFile })
	set("log-level", func() { dst.LogLevel = flags.LogLevel })
	set("log-format", func() { dst.LogFormat = flags.LogFormat })
}

func splitComma(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func envHelp() string {
	vars := agent.EnvVars()
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %-34s %s\n", k, vars[k])
	}
	return b.String()
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "", "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: use text or json", format)
}

func newDevCommand() *cobra.Command {
	var opts devcluster.Options
	var verbose bool
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a local multi-node cluster (the quickest way to try Slipway)",
		Long: `Run a whole Slipway cluster on this machine: --nodes agent processes on
127.0.0.1, in region "local" and zones a, b, c, with all data under --data.

Node i (from 1) listens on --base-port + 10*(i-1): +0 API, +1 Raft, +2 gossip,
+3 internal RPC, +4 WAN gossip, +5 router HTTP, +6 router HTTPS, +7 rendezvous
(heroku run). Each node's dynos get 100 ports above 30000, chosen from the
base port (dynos listen on 127.0.0.1 too).

It writes DIR/env (source it to point slipway and heroku at the cluster),
DIR/nodes.json (each node's name, zone, pid, API and router URLs, and config
file) and DIR/<node>/agent.log. Running it again on the same directory
resumes the same cluster with its state. If a node dies, the others keep
running; restart it with: slipway agent --config DIR/<node>/agent.json.
Ctrl-C stops every node.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			opts.Out = out
			if verbose {
				opts.Logs = out
			}
			c, err := devcluster.Start(cmd.Context(), opts)
			if err != nil {
				return err
			}
			stopCtx := context.Background()
			defer c.Stop(stopCtx)
			nodes := c.Nodes()
			fmt.Fprintf(out, "Starting %d nodes in %s ...\n", len(nodes), c.Dir())
			wctx, cancel := context.WithTimeout(cmd.Context(), 90*time.Second)
			err = c.WaitReady(wctx)
			cancel()
			if err != nil {
				return err
			}
			for _, n := range nodes {
				fmt.Fprintf(out, "  %-7s zone %s  pid %-7d API %s  router %s\n", n.Name, n.Zone, n.PID, n.API, n.Router)
			}
			fmt.Fprintf(out, `
The cluster is up. In another shell:

  . %s/env              # sets SLIPWAY_API_URL, SLIPWAY_API_TOKEN, HEROKU_HOST, HEROKU_API_KEY
  slipway nodes         # the nodes, their zones and Raft roles
  slipway apps:create demo
  heroku apps:info -a demo

Ctrl-C stops the cluster; running 'slipway dev' again resumes it.
`, c.Dir())
			exited := c.Exited()
			for {
				select {
				case <-cmd.Context().Done():
					fmt.Fprintln(out, "\nStopping the nodes ...")
					return nil
				case n := <-exited:
					why := "exited"
					if err := c.ExitError(n.Name); err != nil {
						why = err.Error()
					}
					fmt.Fprintf(out, "%s stopped (%s); the other nodes keep running. Restart it with: slipway agent --config %s\n", n.Name, why, n.Config)
				}
			}
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.Nodes, "nodes", 3, "number of nodes")
	f.StringVar(&opts.Dir, "data", ".slipway", "directory for all of the cluster's data")
	f.IntVar(&opts.BasePort, "base-port", 5000, "first port; node i uses base-port+10*(i-1) ...")
	f.StringVar(&opts.Domain, "domain", "localhost", "cluster domain (apps answer at APP.<domain>)")
	f.BoolVarP(&verbose, "verbose", "v", false, "also print every node's log here")
	return cmd
}
