package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/client"
)

func (e *clientEnv) configCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show an app's config vars",
		Long: `Show an app's config vars, sorted by name (GET /apps/{app}/config-vars).
The values are secrets: they are printed in full.`,
		Example: `  slipway config -a demo
  slipway config -a demo --json`,
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
			return printGet(cmd, c, client.Path("apps", name, "config-vars"))
		}
		vars, err := c.ConfigVars(cmd.Context(), name)
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		header(w, appLabel(name)+" Config Vars")
		printFields(w, sortedVars(vars, nil))
		return nil
	}
	return cmd
}

// sortedVars returns vars as fields sorted by key, only those in keys when
// keys is not nil.
func sortedVars(vars map[string]string, keys []string) []field {
	if keys == nil {
		for k := range vars {
			keys = append(keys, k)
		}
	}
	keys = append([]string(nil), keys...)
	sort.Strings(keys)
	var fields []field
	for _, k := range keys {
		if v, ok := vars[k]; ok {
			fields = append(fields, field{k, v})
		}
	}
	return fields
}

func (e *clientEnv) configGetCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config:get KEY",
		Short: "Print one config var's value",
		Long: `Print the value of one of an app's config vars, as is, or an empty line when
it is not set. With --json the value is printed as a JSON string, or null when
it is not set.`,
		Example: `  slipway config:get DATABASE_URL -a demo`,
		Args:    cobra.ExactArgs(1),
	}
	app := e.appFlag(cmd)
	asJSON := jsonFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		vars, err := c.ConfigVars(cmd.Context(), name)
		if err != nil {
			return err
		}
		v, ok := vars[args[0]]
		if *asJSON {
			var out any
			if ok {
				out = v
			}
			data, err := json.Marshal(out)
			if err != nil {
				return err
			}
			return printRawJSON(cmd.OutOrStdout(), data)
		}
		fmt.Fprintln(cmd.OutOrStdout(), v)
		return nil
	}
	return cmd
}

func (e *clientEnv) configSetCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config:set KEY=VALUE...",
		Short: "Set config vars and restart the app",
		Long: `Set one or more config vars in one change (PATCH /apps/{app}/config-vars).
Each change makes a new release, which restarts the app's dynos.

Everything after the first '=' is the value, so values may contain '='.
Quote values that contain spaces or shell characters.`,
		Example: `  slipway config:set RAILS_ENV=production -a demo
  slipway config:set A=1 B='two words' QUERY='a=1&b=2' -a demo`,
		Args: cobra.MinimumNArgs(1),
	}
	app := e.appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		vars := map[string]*string{}
		var keys []string
		for _, arg := range args {
			k, v, ok := strings.Cut(arg, "=")
			if !ok || k == "" {
				return fmt.Errorf("%q is invalid: use the form KEY=VALUE", arg)
			}
			if _, dup := vars[k]; !dup {
				keys = append(keys, k)
			}
			vars[k] = &v
		}
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		msg := fmt.Sprintf("Setting %s and restarting %s", strings.Join(keys, ", "), appLabel(name))
		after, err := changeConfig(cmd, c, name, msg, vars)
		if err != nil {
			return err
		}
		printFields(cmd.OutOrStdout(), sortedVars(after, keys))
		return nil
	}
	return cmd
}

func (e *clientEnv) configUnsetCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config:unset KEY...",
		Short: "Unset config vars and restart the app",
		Long: `Remove one or more config vars in one change (PATCH /apps/{app}/config-vars
with null values). Each change makes a new release, which restarts the app's
dynos.`,
		Example: `  slipway config:unset DEBUG -a demo
  slipway config:unset A B -a demo`,
		Args: cobra.MinimumNArgs(1),
	}
	app := e.appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		vars := map[string]*string{}
		var keys []string
		for _, k := range args {
			if _, dup := vars[k]; !dup {
				keys = append(keys, k)
			}
			vars[k] = nil
		}
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		msg := fmt.Sprintf("Unsetting %s and restarting %s", strings.Join(keys, ", "), appLabel(name))
		_, err = changeConfig(cmd, c, name, msg, vars)
		return err
	}
	return cmd
}

// latestVersion returns "vN" for the app's newest release, or "" when it
// has none.
func latestVersion(ctx context.Context, c *client.Client, app string) (string, error) {
	rels, err := c.Releases(ctx, app, client.ListOptions{Max: 1, Order: "desc"})
	if err != nil {
		return "", err
	}
	if len(rels) == 0 {
		return "", nil
	}
	return fmt.Sprintf("v%d", rels[0].Version), nil
}

// changeConfig patches an app's config vars as an action and completes the
// action line with the new release's version. The change has succeeded once
// the PATCH has, so a failure to read the release afterwards is only warned
// about. It returns the config vars after the change.
func changeConfig(cmd *cobra.Command, c *client.Client, app, msg string, vars map[string]*string) (map[string]string, error) {
	var after map[string]string
	var relErr error
	err := action(cmd.ErrOrStderr(), msg, func() (string, error) {
		var err error
		if after, err = c.UpdateConfigVars(cmd.Context(), app, vars); err != nil {
			return "", err
		}
		v, err := latestVersion(cmd.Context(), c, app)
		relErr = err
		return v, nil
	})
	if err != nil {
		return nil, err
	}
	if relErr != nil {
		warn(cmd.ErrOrStderr(), "could not read the new release: %v", relErr)
	}
	return after, nil
}
