package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/api"
)

func (e *clientEnv) logsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "logs",
		Short: "Show an app's logs",
		Long: `Show an app's recent log lines, merged from every node of its region: its
dynos' output (app[web.1]), the router (heroku[router]) and platform events
(app[api]). With --tail, keep streaming new lines until interrupted.`,
		Example: `  slipway logs -a demo
  slipway logs -a demo -n 500 --source app --dyno web
  slipway logs -a demo --tail`,
		Args: cobra.NoArgs,
	}
	app := e.appFlag(cmd)
	lines := cmd.Flags().IntP("num", "n", 100, "number of history lines to show (at most 1500)")
	tail := cmd.Flags().BoolP("tail", "t", false, "keep streaming new lines")
	source := cmd.Flags().StringP("source", "s", "", "only lines from this source: app or heroku")
	dyno := cmd.Flags().StringP("dyno", "d", "", "only lines from this dyno (web.1) or process type (web)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		req := api.LogSessionCreateRequest{Lines: lines, Tail: tail}
		if *source != "" {
			req.Source = source
		}
		if *dyno != "" {
			req.Dyno = dyno
		}
		sess, err := c.CreateLogSession(cmd.Context(), name, req)
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		return c.StreamLogs(cmd.Context(), sess.LogplexURL, func(line string) { fmt.Fprintln(w, line) })
	}
	return cmd
}

func (e *clientEnv) drainsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "drains",
		Short: "List an app's log drains",
		Long: `List an app's log drains (GET /apps/{app}/log-drains): each URL with its
token (the syslog HOSTNAME or Logplex-Drain-Token it is identified by),
then its delivery health across the region's nodes.`,
		Example: `  slipway drains -a demo`,
		Args:    cobra.NoArgs,
	}
	app := e.appFlag(cmd)
	asJSON := jsonFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		drains, err := c.LogDrains(cmd.Context(), name)
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		if *asJSON {
			raw, err := json.Marshal(drains)
			if err != nil {
				return err
			}
			return printRawJSON(w, raw)
		}
		if len(drains) == 0 {
			fmt.Fprintf(w, "%s has no log drains.\n", appLabel(name))
			return nil
		}
		header(w, "Drains")
		rows := make([][]string, 0, len(drains))
		for _, d := range drains {
			health := fmt.Sprintf("%s, %d delivered, %d dropped", d.Status, d.Delivered, d.Dropped)
			if d.Rejected > 0 {
				health += fmt.Sprintf(", %d rejected", d.Rejected)
			}
			if d.LastError != nil && d.Status == "failing" {
				health += ": " + *d.LastError
			}
			rows = append(rows, []string{fmt.Sprintf("%s (%s)", d.URL, d.Token), health})
		}
		return printTable(w, nil, rows)
	}
	return cmd
}

func (e *clientEnv) drainsAddCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "drains:add URL",
		Short: "Add a log drain to an app",
		Long: `Send an app's logs to a syslog or HTTPS endpoint (POST /apps/{app}/log-drains):
syslog://host:port and syslog+tls://host:port (RFC 5424 messages,
octet-counted, the drain token as HOSTNAME), or https://[user:pass@]host/path
(batched POSTs of application/logplex-1). An app can have 6 drains.`,
		Example: `  slipway drains:add syslog+tls://logs.example.com:6514 -a demo`,
		Args:    cobra.ExactArgs(1),
	}
	app := e.appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		d, err := c.AddLogDrain(cmd.Context(), name, args[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Successfully added drain %s\n", d.URL)
		return nil
	}
	return cmd
}

func (e *clientEnv) drainsRemoveCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "drains:remove URL|TOKEN",
		Short:   "Remove a log drain from an app",
		Long:    `Remove a log drain, named by its URL, token or id (DELETE /apps/{app}/log-drains/{drain}).`,
		Example: `  slipway drains:remove syslog+tls://logs.example.com:6514 -a demo`,
		Args:    cobra.ExactArgs(1),
	}
	app := e.appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		d, err := c.RemoveLogDrain(cmd.Context(), name, args[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Successfully removed drain %s\n", d.URL)
		return nil
	}
	return cmd
}

// logsCommands are the log commands, registered by addClientCommandsWith.
func (e *clientEnv) logsCommands() []*cobra.Command {
	return []*cobra.Command{e.logsCommand(), e.drainsCommand(), e.drainsAddCommand(), e.drainsRemoveCommand()}
}
