package main

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/api"
	"github.com/slipwayhq/slipway/client"
)

// certsCommands are the TLS certificate commands (heroku certs).
func (e *clientEnv) certsCommands() []*cobra.Command {
	return []*cobra.Command{e.certsCommand(), e.certsAddCommand(), e.certsRemoveCommand()}
}

func (e *clientEnv) certsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "List an app's TLS certificates",
		Long: `List the TLS certificates the routers serve for an app's domains
(GET /apps/{app}/sni-endpoints), with the domains each covers and when it
expires.`,
		Example: `  slipway certs -a demo`,
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
			return printList(cmd, c, client.Path("apps", name, "sni-endpoints"), client.ListOptions{All: true})
		}
		eps, err := c.SNIEndpoints(cmd.Context(), name)
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		if len(eps) == 0 {
			fmt.Fprintf(w, "%s has no SSL certificates.\nUse slipway certs:add CRT KEY to add one.\n", appLabel(name))
			return nil
		}
		sort.Slice(eps, func(i, j int) bool { return eps[i].Name < eps[j].Name })
		rows := make([][]string, 0, len(eps))
		for _, ep := range eps {
			rows = append(rows, []string{ep.Name, strings.Join(ep.SSLCert.CertDomains, ", "),
				e.formatTime(ep.SSLCert.ExpiresAt), certTrust(ep), fmt.Sprint(len(ep.Domains))})
		}
		return printTable(w, []string{"Name", "Common Name(s)", "Expires", "Trusted", "Domains"}, rows)
	}
	return cmd
}

func certTrust(ep api.SNIEndpoint) string {
	switch {
	case ep.SSLCert.CASigned:
		return "True"
	case ep.SSLCert.SelfSigned:
		return "False (self-signed)"
	}
	return "False"
}

func (e *clientEnv) certsAddCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs:add CRT KEY",
		Short: "Add a TLS certificate to an app",
		Long: `Upload a certificate chain and its private key, both PEM files
(POST /apps/{app}/sni-endpoints). The routers serve it, chosen by SNI, for
every hostname it names; the key must match the certificate and the
certificate must not have expired.`,
		Example: `  slipway certs:add server.crt server.key -a demo`,
		Args:    cobra.ExactArgs(2),
	}
	app := e.appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		chain, err := os.ReadFile(args[0])
		if err != nil {
			return fmt.Errorf("reading the certificate: %w", err)
		}
		key, err := os.ReadFile(args[1])
		if err != nil {
			return fmt.Errorf("reading the private key: %w", err)
		}
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		var ep *api.SNIEndpoint
		err = action(cmd.ErrOrStderr(), fmt.Sprintf("Adding SSL certificate to %s", appLabel(name)), func() (string, error) {
			var err error
			ep, err = c.AddSNIEndpoint(cmd.Context(), name, string(chain), string(key))
			return "", err
		})
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		fmt.Fprintf(w, "Certificate details:\n")
		printFields(w, []field{{"Name", ep.Name}, {"Common Name(s)", strings.Join(ep.SSLCert.CertDomains, ", ")},
			{"Expires At", e.formatTime(ep.SSLCert.ExpiresAt)}, {"Issuer", ep.SSLCert.Issuer},
			{"Starts At", e.formatTime(ep.SSLCert.StartsAt)}, {"Subject", ep.SSLCert.Subject}, {"Trusted", certTrust(*ep)}})
		return nil
	}
	return cmd
}

func (e *clientEnv) certsRemoveCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs:remove [NAME]",
		Short: "Remove a TLS certificate from an app",
		Long: `Remove a certificate from an app (DELETE /apps/{app}/sni-endpoints/{name}).
The name can be left out when the app has only one certificate.`,
		Example: `  slipway certs:remove tokyo-1050 -a demo`,
		Args:    cobra.MaximumNArgs(1),
	}
	app := e.appFlag(cmd)
	nameFlag := cmd.Flags().String("name", "", "name of the certificate to remove")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		cert := *nameFlag
		if len(args) == 1 {
			cert = args[0]
		}
		if cert == "" {
			eps, err := c.SNIEndpoints(cmd.Context(), name)
			if err != nil {
				return err
			}
			switch len(eps) {
			case 0:
				return fmt.Errorf("%s has no SSL certificates", appLabel(name))
			case 1:
				cert = eps[0].Name
			default:
				return fmt.Errorf("%s has %d SSL certificates: name the one to remove", appLabel(name), len(eps))
			}
		}
		return action(cmd.ErrOrStderr(), fmt.Sprintf("Removing SSL certificate %s from %s", cert, appLabel(name)), func() (string, error) {
			_, err := c.RemoveSNIEndpoint(cmd.Context(), name, cert)
			return "", err
		})
	}
	return cmd
}
