package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/api"
	"github.com/slipwayhq/slipway/client"
)

func (e *clientEnv) psCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ps [TYPE]...",
		Short: "List an app's dynos",
		Long: `List an app's dynos grouped by process type, with their state and when it
last changed (GET /apps/{app}/dynos). A dyno waiting for a node shows why.
One-off dynos are listed last. With TYPE, only those process types.`,
		Example: `  slipway ps -a demo
  slipway ps web -a demo`,
	}
	app := e.appFlag(cmd)
	asJSON := jsonFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		if *asJSON {
			return printGet(cmd, c, client.Path("apps", name, "dynos"))
		}
		dynos, err := c.Dynos(cmd.Context(), name)
		if err != nil {
			return err
		}
		formation, err := c.Formation(cmd.Context(), name)
		if err != nil {
			return err
		}
		e.printPS(cmd.OutOrStdout(), name, dynos, formation, args)
		return nil
	}
	return cmd
}

func (e *clientEnv) printPS(w io.Writer, app string, dynos []api.Dyno, formation []api.Formation, only []string) {
	want := map[string]bool{}
	for _, t := range only {
		want[t] = true
	}
	byType := map[string][]api.Dyno{}
	var oneOffs []api.Dyno
	for _, d := range dynos {
		if len(want) > 0 && !want[d.Type] {
			continue
		}
		if d.Type == "run" {
			oneOffs = append(oneOffs, d)
			continue
		}
		byType[d.Type] = append(byType[d.Type], d)
	}
	commands := map[string]api.Formation{}
	for _, f := range formation {
		commands[f.Type] = f
	}
	types := make([]string, 0, len(byType))
	for t := range byType {
		types = append(types, t)
	}
	sort.Strings(types)
	if len(types) == 0 && len(oneOffs) == 0 {
		fmt.Fprintf(w, "No dynos on %s\n", appLabel(app))
		return
	}
	for i, t := range types {
		ds := byType[t]
		size, command := ds[0].Size, ds[0].Command
		if f, ok := commands[t]; ok {
			size, command = f.Size, f.Command
		}
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "=== %s (%s): %s (%d)\n\n", t, size, command, len(ds))
		for _, d := range ds {
			fmt.Fprintln(w, e.dynoLine(d))
		}
	}
	if len(oneOffs) > 0 {
		if len(types) > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "=== run: one-off processes (%d)\n\n", len(oneOffs))
		for _, d := range oneOffs {
			fmt.Fprintf(w, "%s (%s): %s %s: %s\n", d.Name, d.Size, d.State, e.formatTime(d.UpdatedAt), d.Command)
		}
	}
}

func (e *clientEnv) dynoLine(d api.Dyno) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s %s", d.Name, d.State, e.formatTime(d.UpdatedAt))
	if d.Node != "" {
		fmt.Fprintf(&b, " on %s", d.Node)
		if d.Zone != "" {
			fmt.Fprintf(&b, " (zone %s)", d.Zone)
		}
	}
	if d.PendingReason != "" {
		fmt.Fprintf(&b, " — waiting: %s", d.PendingReason)
	}
	if d.Reason != "" {
		fmt.Fprintf(&b, " — %s", d.Reason)
	}
	return b.String()
}

// psTarget registers -d/--dyno-name and -p/--process-type.
type psTarget struct{ dyno, typ string }

func (t *psTarget) flags(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&t.dyno, "dyno-name", "d", "", "a dyno, like web.1")
	cmd.Flags().StringVarP(&t.typ, "process-type", "p", "", "a process type, like web")
}

func (t *psTarget) check(required bool) error {
	if t.dyno != "" && t.typ != "" {
		return fmt.Errorf("give --dyno-name or --process-type, not both")
	}
	if required && t.dyno == "" && t.typ == "" {
		return fmt.Errorf("give --dyno-name (like web.1) or --process-type (like web)")
	}
	return nil
}

func (e *clientEnv) psRestartCommand() *cobra.Command {
	var t psTarget
	cmd := &cobra.Command{
		Use:     "ps:restart",
		Aliases: []string{"restart"},
		Short:   "Restart an app's dynos",
		Long: `Restart every dyno of an app, those of one process type (-p), or one dyno
(-d): each starts again from a clean copy of its slug. Heroku's crash
backoff starts afresh.`,
		Example: `  slipway ps:restart -a demo
  slipway ps:restart -p web -a demo
  slipway ps:restart -d web.1 -a demo`,
		Args: cobra.NoArgs,
	}
	t.flags(cmd)
	app := e.appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := t.check(false); err != nil {
			return err
		}
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		what := "all dynos"
		switch {
		case t.dyno != "":
			what = "dyno " + t.dyno
		case t.typ != "":
			what = "all " + t.typ + " dynos"
		}
		return action(cmd.ErrOrStderr(), fmt.Sprintf("Restarting %s on %s", what, appLabel(name)), func() (string, error) {
			return "", c.RestartDynos(cmd.Context(), name, t.typ, t.dyno)
		})
	}
	return cmd
}

func (e *clientEnv) psStopCommand() *cobra.Command {
	var t psTarget
	cmd := &cobra.Command{
		Use:   "ps:stop",
		Short: "Stop a dyno or the dynos of a process type",
		Long: `Stop one dyno (-d) or every dyno of a process type (-p). As on Heroku, a
stopped formation dyno is started again (the formation still wants it); use
scale to run fewer. A stopped one-off dyno just ends.`,
		Example: `  slipway ps:stop -d run.1234 -a demo
  slipway ps:stop -p worker -a demo`,
		Args: cobra.NoArgs,
	}
	t.flags(cmd)
	app := e.appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := t.check(true); err != nil {
			return err
		}
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		what := t.dyno
		if what == "" {
			what = "all " + t.typ + " dynos"
		}
		return action(cmd.ErrOrStderr(), fmt.Sprintf("Stopping %s on %s", what, appLabel(name)), func() (string, error) {
			return "", c.StopDynos(cmd.Context(), name, t.typ, t.dyno)
		})
	}
	return cmd
}

func (e *clientEnv) runDetachedCommand() *cobra.Command {
	var size string
	var ttl int
	var envPairs []string
	cmd := &cobra.Command{
		Use:     "run:detached COMMAND...",
		Aliases: []string{"run-detached"},
		Short:   "Run a one-off dyno in the background",
		Long: `Start a one-off dyno running COMMAND with the app's current release and
config (POST /apps/{app}/dynos). Its output goes to the app's log stream
(slipway logs --dyno run.N); it is never restarted.`,
		Example: `  slipway run:detached -a demo -- ./bin/migrate
  slipway run:detached -a demo -e 'DEBUG=1' -s standard-2x -- ./bin/report`,
		Args: cobra.MinimumNArgs(1),
	}
	cmd.Flags().StringVarP(&size, "size", "s", "", "dyno size (default Basic)")
	cmd.Flags().IntVar(&ttl, "time-to-live", 0, "stop the dyno after this many seconds (at most 86400)")
	cmd.Flags().StringArrayVarP(&envPairs, "env", "e", nil, "extra environment, 'KEY=VALUE;KEY2=VALUE2' (repeatable)")
	app := e.appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		req, err := runRequest(args, size, ttl, envPairs, false)
		if err != nil {
			return err
		}
		var d *api.Dyno
		err = action(cmd.ErrOrStderr(), fmt.Sprintf("Running `%s` on %s", req.Command, appLabel(name)), func() (string, error) {
			var err error
			d, err = c.RunDyno(cmd.Context(), name, req)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("%s (%s)", d.Name, d.Size), nil
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Run slipway logs -a %s --dyno %s to view the output.\n", name, d.Name)
		return nil
	}
	return cmd
}

// runRequest builds the one-off dyno request from the command line.
func runRequest(args []string, size string, ttl int, envPairs []string, attach bool) (api.DynoCreateRequest, error) {
	req := api.DynoCreateRequest{Command: strings.Join(args, " "), Attach: &attach}
	if size != "" {
		req.Size = &size
	}
	if ttl != 0 {
		req.TimeToLive = &ttl
	}
	for _, group := range envPairs {
		for _, kv := range strings.Split(group, ";") {
			if strings.TrimSpace(kv) == "" {
				continue
			}
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return req, fmt.Errorf("%q is not KEY=VALUE", kv)
			}
			if req.Env == nil {
				req.Env = map[string]string{}
			}
			req.Env[strings.TrimSpace(k)] = v
		}
	}
	return req, nil
}
