package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/api"
	"github.com/slipwayhq/slipway/client"
)

func (e *clientEnv) appsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "apps",
		Aliases: []string{"apps:list"},
		Short:   "List apps",
		Long:    `List every app on the cluster, with its region (GET /apps).`,
		Example: `  slipway apps
  slipway apps --json`,
		Args: cobra.NoArgs,
	}
	asJSON := jsonFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := e.newAPIClient()
		if err != nil {
			return err
		}
		if *asJSON {
			return printList(cmd, c, "/apps", client.ListOptions{All: true})
		}
		apps, err := c.Apps(cmd.Context())
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		if len(apps) == 0 {
			fmt.Fprintln(w, "You have no apps.")
			return nil
		}
		sort.Slice(apps, func(i, j int) bool { return apps[i].Name < apps[j].Name })
		header(w, "Apps")
		for _, a := range apps {
			fmt.Fprintf(w, "%s (%s)\n", a.Name, a.Region.Name)
		}
		return nil
	}
	return cmd
}

func (e *clientEnv) appsCreateCommand() *cobra.Command {
	var region, stack string
	cmd := &cobra.Command{
		Use:     "apps:create [NAME]",
		Aliases: []string{"create"},
		Short:   "Create an app",
		Long: `Create an app (POST /apps) and print its web URL and git URL.

Without NAME the server picks a name. Names are 3 to 30 characters: lower-case
letters, digits and dashes, starting with a letter.`,
		Example: `  slipway apps:create
  slipway apps:create demo
  slipway create demo --region eu`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.newAPIClient()
			if err != nil {
				return err
			}
			var req api.AppCreateRequest
			msg := "Creating app"
			if len(args) == 1 {
				req.Name = &args[0]
				msg = "Creating " + appLabel(args[0])
			}
			if region != "" {
				req.Region = &region
			}
			if stack != "" {
				req.Stack = &stack
			}
			var app *api.App
			err = action(cmd.ErrOrStderr(), msg, func() (string, error) {
				var err error
				if app, err = c.CreateApp(cmd.Context(), req); err != nil {
					return "", err
				}
				if len(args) == 0 {
					return appLabel(app.Name), nil
				}
				return "", nil
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), urls(app.WebURL, app.GitURL))
			return nil
		},
	}
	cmd.Flags().StringVar(&region, "region", "", "region to create the app in (see 'slipway regions'; default: the server's)")
	cmd.Flags().StringVar(&stack, "stack", "", "stack to build the app on (see 'slipway stacks'; default: the server's)")
	return cmd
}

func (e *clientEnv) appsInfoCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "apps:info",
		Aliases: []string{"info"},
		Short:   "Show an app's details",
		Long: `Show an app's URLs, owner, region, stack, maintenance mode and formation
(GET /apps/{app} and GET /apps/{app}/formation). With --json, print only the
app resource.`,
		Example: `  slipway apps:info -a demo
  slipway info -a demo --json`,
		Args: cobra.NoArgs,
	}
	app := e.appFlag(cmd)
	asJSON := jsonFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		if *asJSON {
			return printGet(cmd, c, client.Path("apps", name))
		}
		a, err := c.App(cmd.Context(), name)
		if err != nil {
			return err
		}
		formation, err := c.Formation(cmd.Context(), name)
		if err != nil {
			return err
		}
		sort.Slice(formation, func(i, j int) bool { return formation[i].Type < formation[j].Type })
		var procs []string
		for _, f := range formation {
			procs = append(procs, fmt.Sprintf("%s: %d", f.Type, f.Quantity))
		}
		var fields []field
		if len(procs) > 0 {
			fields = append(fields, field{"Formation", strings.Join(procs, ", ")})
		}
		fields = append(fields, []field{
			{"Git URL", a.GitURL},
			{"Maintenance", onOff(a.Maintenance)},
			{"Owner", a.Owner.Email},
			{"Region", a.Region.Name},
			{"Stack", a.Stack.Name},
			{"Web URL", a.WebURL},
		}...)
		if a.BuildStack.Name != "" && a.BuildStack.Name != a.Stack.Name {
			fields = append(fields, field{"Build Stack", a.BuildStack.Name})
		}
		if a.ReleasedAt != nil {
			fields = append(fields, field{"Released At", e.formatTime(*a.ReleasedAt)})
		}
		w := cmd.OutOrStdout()
		header(w, appLabel(a.Name))
		printFields(w, fields)
		return nil
	}
	return cmd
}

func (e *clientEnv) appsDestroyCommand() *cobra.Command {
	var confirm string
	cmd := &cobra.Command{
		Use:     "apps:destroy [APP]",
		Aliases: []string{"destroy"},
		Short:   "Permanently destroy an app",
		Long: `Permanently destroy an app (DELETE /apps/{app}). This cannot be undone.

The app is given as an argument, with -a, or by $SLIPWAY_APP, and the command
refuses to run unless --confirm repeats the app's name.`,
		Example: `  slipway apps:destroy demo --confirm demo
  slipway destroy -a demo --confirm demo`,
		Args: cobra.MaximumNArgs(1),
	}
	app := e.appFlag(cmd)
	cmd.Flags().StringVar(&confirm, "confirm", "", "the app's name, to confirm that it is to be destroyed")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 1 {
			if app.name != "" && app.name != args[0] {
				return fmt.Errorf("the app is given twice: %s and -a %s", args[0], app.name)
			}
			app.name = args[0]
		}
		name, err := app.resolve()
		if err != nil {
			return err
		}
		switch confirm {
		case name:
		case "":
			return fmt.Errorf("this would permanently destroy %s, which cannot be undone; to proceed, re-run with --confirm %s", appLabel(name), name)
		default:
			return fmt.Errorf("confirmation %q did not match %s; aborted", confirm, appLabel(name))
		}
		c, err := e.newAPIClient()
		if err != nil {
			return err
		}
		return action(cmd.ErrOrStderr(), "Destroying "+appLabel(name), func() (string, error) {
			_, err := c.DeleteApp(cmd.Context(), name)
			return "", err
		})
	}
	return cmd
}

func (e *clientEnv) appsRenameCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "apps:rename NEWNAME",
		Short: "Rename an app",
		Long: `Rename an app (PATCH /apps/{app} {"name": NEWNAME}) and print its new web URL
and git URL. Update git remotes and $SLIPWAY_APP that use the old name.`,
		Example: `  slipway apps:rename -a demo demo-two`,
		Args:    cobra.ExactArgs(1),
	}
	app := e.appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		newName := args[0]
		var a *api.App
		err = action(cmd.ErrOrStderr(), fmt.Sprintf("Renaming %s to %s", appLabel(name), appLabel(newName)), func() (string, error) {
			var err error
			a, err = c.UpdateApp(cmd.Context(), name, api.AppUpdateRequest{Name: &newName})
			return "", err
		})
		if err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), urls(a.WebURL, a.GitURL))
		if app.fromEnv() {
			warn(cmd.ErrOrStderr(), "%s still names %s; set it to %s.", envApp, name, a.Name)
		}
		return nil
	}
	return cmd
}

func (e *clientEnv) maintenanceCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "maintenance",
		Short: "Show whether an app is in maintenance mode",
		Long: `Print "on" or "off": whether the app is in maintenance mode
(GET /apps/{app}). With --json, print the app resource.`,
		Example: `  slipway maintenance -a demo`,
		Args:    cobra.NoArgs,
	}
	app := e.appFlag(cmd)
	asJSON := jsonFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		if *asJSON {
			return printGet(cmd, c, client.Path("apps", name))
		}
		a, err := c.App(cmd.Context(), name)
		if err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), onOff(a.Maintenance))
		return nil
	}
	return cmd
}

func (e *clientEnv) maintenanceSetCommand(on bool) *cobra.Command {
	use, verb, short := "maintenance:off", "Disabling", "Take an app out of maintenance mode"
	if on {
		use, verb, short = "maintenance:on", "Enabling", "Put an app in maintenance mode"
	}
	cmd := &cobra.Command{
		Use:     use,
		Short:   short,
		Long:    short + ` (PATCH /apps/{app} {"maintenance": ...}).`,
		Example: "  slipway " + use + " -a demo",
		Args:    cobra.NoArgs,
	}
	app := e.appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		return action(cmd.ErrOrStderr(), verb+" maintenance mode for "+appLabel(name), func() (string, error) {
			_, err := c.UpdateApp(cmd.Context(), name, api.AppUpdateRequest{Maintenance: &on})
			return "", err
		})
	}
	return cmd
}
