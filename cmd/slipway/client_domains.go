package main

import (
	"fmt"
	"sort"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/api"
	"github.com/slipwayhq/slipway/client"
)

func (e *clientEnv) domainsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "domains",
		Short: "List an app's domains",
		Long: `List an app's domains (GET /apps/{app}/domains): its default domain, then
the custom domains added with domains:add, with the DNS target to point each
one at and its status.`,
		Example: `  slipway domains -a demo`,
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
			return printList(cmd, c, client.Path("apps", name, "domains"), client.ListOptions{All: true})
		}
		domains, err := c.Domains(cmd.Context(), name)
		if err != nil {
			return err
		}
		sort.Slice(domains, func(i, j int) bool { return domains[i].Hostname < domains[j].Hostname })
		var defaults []string
		var custom [][]string
		for _, d := range domains {
			if d.Kind != "custom" {
				defaults = append(defaults, d.Hostname)
				continue
			}
			target := ""
			if d.CName != nil {
				target = *d.CName
			}
			custom = append(custom, []string{d.Hostname, target, d.Status})
		}
		w := cmd.OutOrStdout()
		if len(defaults) > 0 {
			header(w, appLabel(name)+" Default Domain")
			for _, h := range defaults {
				fmt.Fprintln(w, h)
			}
		}
		if len(custom) > 0 {
			if len(defaults) > 0 {
				fmt.Fprintln(w)
			}
			header(w, appLabel(name)+" Custom Domains")
			return printTable(w, []string{"DOMAIN NAME", "DNS TARGET", "STATUS"}, custom)
		}
		if len(defaults) == 0 {
			fmt.Fprintf(w, "%s has no domains.\n", appLabel(name))
		}
		return nil
	}
	return cmd
}

func (e *clientEnv) domainsAddCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "domains:add HOSTNAME",
		Short: "Add a custom domain to an app",
		Long: `Add a custom domain to an app (POST /apps/{app}/domains) and print the DNS
target to point it at with a CNAME (or ALIAS) record.`,
		Example: `  slipway domains:add www.example.com -a demo`,
		Args:    cobra.ExactArgs(1),
	}
	app := e.appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		var d *api.Domain
		err = action(cmd.ErrOrStderr(), fmt.Sprintf("Adding %s to %s", args[0], appLabel(name)), func() (string, error) {
			var err error
			d, err = c.AddDomain(cmd.Context(), name, args[0])
			return "", err
		})
		if err != nil {
			return err
		}
		if d.CName != nil && *d.CName != "" {
			fmt.Fprintf(cmd.OutOrStdout(), "Configure your app's DNS provider to point to the DNS Target %s\n", *d.CName)
		}
		return nil
	}
	return cmd
}

func (e *clientEnv) domainsRemoveCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "domains:remove HOSTNAME",
		Short:   "Remove a custom domain from an app",
		Long:    `Remove a domain from an app (DELETE /apps/{app}/domains/{hostname}).`,
		Example: `  slipway domains:remove www.example.com -a demo`,
		Args:    cobra.ExactArgs(1),
	}
	app := e.appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		return action(cmd.ErrOrStderr(), fmt.Sprintf("Removing %s from %s", args[0], appLabel(name)), func() (string, error) {
			_, err := c.RemoveDomain(cmd.Context(), name, args[0])
			return "", err
		})
	}
	return cmd
}
