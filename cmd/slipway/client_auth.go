package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/client"
)

func (e *clientEnv) loginCommand() *cobra.Command {
	var apiURL, token string
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Save the API URL and token that the other commands use",
		Long: `Login asks for a cluster's API URL and an API token (unless they are given
as flags), checks them with GET /account, and saves them in the credentials
file with mode 0600: $SLIPWAY_CREDENTIALS_FILE if set, else
$XDG_CONFIG_HOME/slipway/credentials.json, else
~/.config/slipway/credentials.json.

The token prompt echoes what you type. A --token flag is visible in shell
history and to other local users, so prefer the prompt.

SLIPWAY_API_URL and SLIPWAY_API_TOKEN, when set, take precedence over the
saved credentials.`,
		Example: `  slipway login
  slipway login --api-url http://10.0.0.1:5000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			stderr := cmd.ErrOrStderr()
			in := bufio.NewReader(cmd.InOrStdin())
			path, err := client.CredentialsPath(e.getenv)
			if err != nil {
				return err
			}
			if apiURL == "" {
				def := e.getenv(client.EnvAPIURL)
				if def == "" {
					if saved, err := client.LoadCredentials(path); err == nil {
						def = saved.URL
					}
				}
				if apiURL, err = prompt(stderr, in, "API URL", def); err != nil {
					return err
				}
			}
			apiURL = strings.TrimRight(apiURL, "/")
			if err := checkAPIURL(apiURL); err != nil {
				return err
			}
			if token == "" {
				if token, err = prompt(stderr, in, "API token", ""); err != nil {
					return err
				}
			}
			acct, err := e.clientFor(apiURL, token).Account(cmd.Context())
			if err != nil {
				return fmt.Errorf("checking the token with %s: %w", apiURL, err)
			}
			if err := client.SaveCredentials(path, apiURL, token); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Logged in as %s\n", acct.Email)
			fmt.Fprintf(stderr, "Credentials saved to %s\n", path)
			if v := e.getenv(client.EnvAPIURL); v != "" && strings.TrimRight(v, "/") != apiURL {
				warn(stderr, "%s is set to %s and takes precedence over the saved URL.", client.EnvAPIURL, v)
			}
			if e.getenv(client.EnvAPIToken) != "" {
				warn(stderr, "%s is set and takes precedence over the saved token.", client.EnvAPIToken)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&apiURL, "api-url", "", "the cluster's API URL, e.g. http://10.0.0.1:5000 (prompted for when omitted)")
	cmd.Flags().StringVar(&token, "token", "", "API token (prompted for when omitted)")
	return cmd
}

// prompt asks for one line on w and reads it from in; an empty answer
// gives def.
func prompt(w io.Writer, in *bufio.Reader, label, def string) (string, error) {
	if def != "" {
		fmt.Fprintf(w, "%s [%s]: ", label, def)
	} else {
		fmt.Fprintf(w, "%s: ", label)
	}
	line, err := in.ReadString('\n')
	if errors.Is(err, io.EOF) {
		fmt.Fprintln(w) // the user's Enter key did not end the line
	} else if err != nil {
		return "", fmt.Errorf("reading the %s: %w", label, err)
	}
	if line = strings.TrimSpace(line); line != "" {
		return line, nil
	}
	if def == "" {
		return "", fmt.Errorf("no %s given", label)
	}
	return def, nil
}

// checkAPIURL accepts http and https URLs with a host.
func checkAPIURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("invalid API URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("invalid API URL %q: want http://HOST:PORT or https://HOST:PORT", s)
	}
	return nil
}

func (e *clientEnv) whoamiCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "auth:whoami",
		Aliases: []string{"whoami"},
		Short:   "Print the email of the account you are logged in as",
		Long: `Print the email of the account the API token belongs to (GET /account).
It fails when the token is missing, invalid or revoked.`,
		Example: `  slipway auth:whoami
  slipway auth:whoami --json`,
		Args: cobra.NoArgs,
	}
	asJSON := jsonFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := e.newAPIClient()
		if err != nil {
			return err
		}
		if *asJSON {
			return printGet(cmd, c, "/account")
		}
		acct, err := c.Account(cmd.Context())
		if err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), acct.Email)
		return nil
	}
	return cmd
}
