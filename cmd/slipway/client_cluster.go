package main

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/client"
)

func (e *clientEnv) regionsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "regions",
		Short:   "List the cluster's regions",
		Long:    `List the regions apps can be created in (GET /regions).`,
		Example: `  slipway regions`,
		Args:    cobra.NoArgs,
	}
	asJSON := jsonFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := e.newAPIClient()
		if err != nil {
			return err
		}
		if *asJSON {
			return printList(cmd, c, "/regions", client.ListOptions{All: true})
		}
		regions, err := c.Regions(cmd.Context())
		if err != nil {
			return err
		}
		rows := make([][]string, 0, len(regions))
		for _, r := range regions {
			rows = append(rows, []string{r.Name, r.Description})
		}
		return printTable(cmd.OutOrStdout(), []string{"ID", "LOCATION"}, rows)
	}
	return cmd
}

func (e *clientEnv) stacksCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stacks",
		Short: "List the stacks apps can be built on",
		Long: `List the stacks apps can be built and run on (GET /stacks), with their
state; DEFAULT marks the stack the server reports as its default.`,
		Example: `  slipway stacks`,
		Args:    cobra.NoArgs,
	}
	asJSON := jsonFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := e.newAPIClient()
		if err != nil {
			return err
		}
		if *asJSON {
			return printList(cmd, c, "/stacks", client.ListOptions{All: true})
		}
		stacks, err := c.Stacks(cmd.Context())
		if err != nil {
			return err
		}
		rows := make([][]string, 0, len(stacks))
		for _, s := range stacks {
			def := ""
			if s.Default {
				def = "*"
			}
			rows = append(rows, []string{s.Name, s.State, def})
		}
		return printTable(cmd.OutOrStdout(), []string{"NAME", "STATE", "DEFAULT"}, rows)
	}
	return cmd
}

func (e *clientEnv) nodesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "nodes",
		Short: "List the cluster's nodes",
		Long: `List the cluster's nodes as the node answering the API sees them
(GET /cluster/nodes): region, zone, Raft role, gossip state, whether it is
draining, its Slipway version and API address.`,
		Example: `  slipway nodes
  slipway nodes --json`,
		Args: cobra.NoArgs,
	}
	asJSON := jsonFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := e.newAPIClient()
		if err != nil {
			return err
		}
		if *asJSON {
			return printGet(cmd, c, "/cluster/nodes")
		}
		nodes, err := c.Nodes(cmd.Context())
		if err != nil {
			return err
		}
		rows := make([][]string, 0, len(nodes))
		for _, n := range nodes {
			rows = append(rows, []string{n.Name, n.Region, n.Zone, n.RaftRole, n.GossipState,
				yesNo(n.Draining), n.Version, n.Addresses.API})
		}
		return printTable(cmd.OutOrStdout(),
			[]string{"NAME", "REGION", "ZONE", "ROLE", "GOSSIP", "DRAINING", "VERSION", "API"}, rows)
	}
	return cmd
}

func (e *clientEnv) nodesDrainCommand(drain bool) *cobra.Command {
	use, verb := "nodes:undrain", "Undraining"
	short := "Let the scheduler place dynos on a node again"
	long := `Clear a node's draining mark (POST /cluster/nodes/{name}/drain
{"draining": false}), so that new dynos may be placed on it again.`
	if drain {
		use, verb = "nodes:drain", "Draining"
		short = "Stop placing new dynos on a node"
		long = `Mark a node draining (POST /cluster/nodes/{name}/drain {"draining": true}):
no new dynos are placed on it. Use it before maintenance, and nodes:undrain
after.`
	}
	cmd := &cobra.Command{
		Use:     use + " NODE",
		Short:   short,
		Long:    long,
		Example: "  slipway " + use + " node-2",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.newAPIClient()
			if err != nil {
				return err
			}
			return action(cmd.ErrOrStderr(), verb+" node "+args[0], func() (string, error) {
				_, err := c.DrainNode(cmd.Context(), args[0], drain)
				return "", err
			})
		},
	}
	return cmd
}

func (e *clientEnv) raftCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "raft",
		Short: "Show the Raft group: leader, term, indexes and peers",
		Long: `Show the Raft group of the answering node's region as that node sees it
(GET /cluster/raft): the leader, the term, the commit and applied indexes, and
each peer with its zone, role and health.`,
		Example: `  slipway raft
  slipway raft --json`,
		Args: cobra.NoArgs,
	}
	asJSON := jsonFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := e.newAPIClient()
		if err != nil {
			return err
		}
		if *asJSON {
			return printGet(cmd, c, "/cluster/raft")
		}
		r, err := c.Raft(cmd.Context())
		if err != nil {
			return err
		}
		leader := r.Leader
		switch {
		case leader == "" && r.LeaderAddress == "":
			leader = "none"
		case leader == "":
			leader = r.LeaderAddress
		case r.LeaderAddress != "":
			leader += " (" + r.LeaderAddress + ")"
		}
		fields := []field{
			{"Leader", leader},
			{"Term", strconv.FormatUint(r.Term, 10)},
			{"Commit Index", strconv.FormatUint(r.CommitIndex, 10)},
			{"Applied Index", strconv.FormatUint(r.AppliedIndex, 10)},
			{"Last Index", strconv.FormatUint(r.LastIndex, 10)},
		}
		if r.LastContact != "" {
			fields = append(fields, field{"Last Contact", r.LastContact})
		}
		if r.Healthy != nil {
			fields = append(fields, field{"Healthy", yesNo(*r.Healthy)})
		}
		if r.FailureTolerance != nil {
			fields = append(fields, field{"Failure Tolerance", strconv.Itoa(*r.FailureTolerance)})
		}
		w := cmd.OutOrStdout()
		header(w, fmt.Sprintf("Raft, as seen by %s (%s)", r.Node, r.State))
		printFields(w, fields)
		fmt.Fprintln(w)
		rows := make([][]string, 0, len(r.Peers))
		for _, p := range r.Peers {
			healthy := "-"
			if p.Healthy != nil {
				healthy = yesNo(*p.Healthy)
			}
			rows = append(rows, []string{p.Name, p.Address, p.Zone, p.Role, healthy})
		}
		return printTable(w, []string{"NAME", "ADDRESS", "ZONE", "ROLE", "HEALTHY"}, rows)
	}
	return cmd
}
