package main

import (
	"fmt"
	"sort"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/client"
)

func (e *clientEnv) featuresCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "features",
		Aliases: []string{"labs"},
		Short:   "List an app's features and whether each is enabled",
		Long: `List the features an app can turn on or off (GET /apps/{app}/features),
marking enabled ones with [+] and disabled ones with [ ].`,
		Example: `  slipway features -a demo
  slipway labs -a demo --json`,
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
			return printList(cmd, c, client.Path("apps", name, "features"), client.ListOptions{All: true})
		}
		features, err := c.Features(cmd.Context(), name)
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		if len(features) == 0 {
			fmt.Fprintf(w, "%s has no features.\n", appLabel(name))
			return nil
		}
		sort.Slice(features, func(i, j int) bool { return features[i].Name < features[j].Name })
		header(w, fmt.Sprintf("App Features (%s)", appLabel(name)))
		rows := make([][]string, 0, len(features))
		for _, f := range features {
			mark := "[ ]"
			if f.Enabled {
				mark = "[+]"
			}
			rows = append(rows, []string{mark + " " + f.Name, f.Description})
		}
		return printTable(w, nil, rows)
	}
	return cmd
}

func (e *clientEnv) featuresSetCommand(enable bool) *cobra.Command {
	use, alias, verb, short := "features:disable", "labs:disable", "Disabling", "Disable a feature on an app"
	if enable {
		use, alias, verb, short = "features:enable", "labs:enable", "Enabling", "Enable a feature on an app"
	}
	cmd := &cobra.Command{
		Use:     use + " FEATURE",
		Aliases: []string{alias},
		Short:   short,
		Long: short + ` (PATCH /apps/{app}/features/{feature} {"enabled": ...}).
'slipway features' lists the app's features.`,
		Example: "  slipway " + use + " runtime-dyno-metadata -a demo",
		Args:    cobra.ExactArgs(1),
	}
	app := e.appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		return action(cmd.ErrOrStderr(), fmt.Sprintf("%s %s for %s", verb, args[0], appLabel(name)), func() (string, error) {
			_, err := c.SetFeature(cmd.Context(), name, args[0], enable)
			return "", err
		})
	}
	return cmd
}
