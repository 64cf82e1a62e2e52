package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/client"
)

// envApp names the environment variable that gives the default --app.
const envApp = "SLIPWAY_APP"

// clientEnv is what the client commands take from the outside world, so
// that tests can run them against a fake API with a fake environment.
// Standard input and output come from the cobra command (SetIn, SetOut,
// SetErr).
type clientEnv struct {
	// getenv looks up environment variables (os.Getenv).
	getenv func(string) string
	// httpClient, when not nil, sends the API requests.
	httpClient *http.Client
	// loc is the time zone times are printed in.
	loc *time.Location
}

// addClientCommands adds the commands that talk to a cluster's API.
func addClientCommands(root *cobra.Command) {
	addClientCommandsWith(root, &clientEnv{getenv: os.Getenv, loc: time.Local})
}

// addClientCommandsWith adds the client commands, all bound to env.
func addClientCommandsWith(root *cobra.Command, env *clientEnv) {
	root.AddCommand(
		env.loginCommand(),
		env.whoamiCommand(),

		env.appsCommand(),
		env.appsCreateCommand(),
		env.appsInfoCommand(),
		env.appsDestroyCommand(),
		env.appsRenameCommand(),
		env.maintenanceCommand(),
		env.maintenanceSetCommand(true),
		env.maintenanceSetCommand(false),

		env.configCommand(),
		env.configGetCommand(),
		env.configSetCommand(),
		env.configUnsetCommand(),

		env.releasesCommand(),
		env.releasesInfoCommand(),
		env.rollbackCommand(),
		env.slugsCommand(), env.slugsInfoCommand(),

		env.scaleCommand(),
		env.psCommand(),
		env.psRestartCommand(),
		env.psStopCommand(),
		env.runDetachedCommand(),
		env.runCommand(),

		env.domainsCommand(),
		env.domainsAddCommand(),
		env.domainsRemoveCommand(),

		env.featuresCommand(),
		env.featuresSetCommand(true),
		env.featuresSetCommand(false),

		env.regionsCommand(),
		env.stacksCommand(),

		env.nodesCommand(),
		env.nodesDrainCommand(true),
		env.nodesDrainCommand(false),
		env.raftCommand(),
	)
	root.AddCommand(env.logsCommands()...)
	root.AddCommand(env.certsCommands()...)
	root.AddCommand(env.buildsCommands()...)
}

// newAPIClient returns a client with the credentials from the environment
// or the credentials file.
func (e *clientEnv) newAPIClient() (*client.Client, error) {
	baseURL, token, err := client.FromGetenv(e.getenv)
	if err != nil {
		if errors.Is(err, client.ErrNoCredentials) {
			return nil, fmt.Errorf("%w; run 'slipway login', or set %s and %s", err, client.EnvAPIURL, client.EnvAPIToken)
		}
		return nil, err
	}
	return e.clientFor(baseURL, token), nil
}

// clientFor returns a client for the given URL and token.
func (e *clientEnv) clientFor(baseURL, token string) *client.Client {
	return client.New(baseURL, token, client.WithHTTPClient(e.httpClient), client.WithUserAgent("slipway-cli/"+version))
}

// appFlag registers -a/--app on cmd. Resolve the app with resolve.
func (e *clientEnv) appFlag(cmd *cobra.Command) *appFlag {
	f := &appFlag{env: e}
	cmd.Flags().StringVarP(&f.name, "app", "a", "", "app to run the command against (default $"+envApp+")")
	return f
}

// appFlag is the value of an -a/--app flag.
type appFlag struct {
	env  *clientEnv
	name string
}

// resolve returns the app named by the flag, else by $SLIPWAY_APP.
func (f *appFlag) resolve() (string, error) {
	if f.name != "" {
		return f.name, nil
	}
	if a := f.env.getenv(envApp); a != "" {
		return a, nil
	}
	return "", fmt.Errorf("no app specified: use -a APP, or set %s", envApp)
}

// withClient resolves the app and builds an API client: what almost every
// app command starts with.
func (f *appFlag) withClient() (string, *client.Client, error) {
	name, err := f.resolve()
	if err != nil {
		return "", nil, err
	}
	c, err := f.env.newAPIClient()
	if err != nil {
		return "", nil, err
	}
	return name, c, nil
}

// fromEnv reports whether the app came from $SLIPWAY_APP.
func (f *appFlag) fromEnv() bool { return f.name == "" }

// jsonFlag registers --json on cmd.
func jsonFlag(cmd *cobra.Command) *bool {
	return cmd.Flags().Bool("json", false, "print the API's JSON response instead of a summary")
}

// appLabel is how the heroku CLI prints an app name: ⬢name.
func appLabel(name string) string { return "⬢" + name }

// action prints "msg... " to w, runs fn and completes the line with "done"
// (plus ", " and fn's result when it is not empty), or with "!" when fn
// fails, whose error is then returned.
func action(w io.Writer, msg string, fn func() (string, error)) error {
	fmt.Fprintf(w, "%s... ", msg)
	detail, err := fn()
	if err != nil {
		fmt.Fprintln(w, "!")
		return err
	}
	if detail != "" {
		fmt.Fprintf(w, "done, %s\n", detail)
	} else {
		fmt.Fprintln(w, "done")
	}
	return nil
}

// warn prints a warning line the way the heroku CLI does.
func warn(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, " ▸    "+format+"\n", args...)
}

// header prints a section header followed by a blank line.
func header(w io.Writer, title string) {
	fmt.Fprintf(w, "=== %s\n\n", title)
}

// field is one line of a styled object.
type field struct{ key, value string }

// printFields prints "Key: value" lines with the values aligned; lines of
// multi-line values after the first are indented to the same column.
func printFields(w io.Writer, fields []field) {
	width := 0
	for _, f := range fields {
		width = max(width, len(f.key)+1)
	}
	pad := strings.Repeat(" ", width+1)
	for _, f := range fields {
		value := strings.ReplaceAll(f.value, "\n", "\n"+pad)
		fmt.Fprintf(w, "%-*s %s\n", width, f.key+":", value)
	}
}

// printTable prints rows with aligned columns, under head unless it is nil.
func printTable(w io.Writer, head []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if head != nil {
		fmt.Fprintln(tw, strings.Join(head, "\t"))
	}
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// printRawJSON prints raw JSON indented by two spaces.
func printRawJSON(w io.Writer, raw []byte) error {
	if len(raw) == 0 {
		raw = []byte("null")
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return fmt.Errorf("print JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// printJSONList prints list items as one indented JSON array.
func printJSONList(w io.Writer, items []json.RawMessage) error {
	if items == nil {
		items = []json.RawMessage{}
	}
	data, err := json.Marshal(items)
	if err != nil {
		return fmt.Errorf("print JSON: %w", err)
	}
	return printRawJSON(w, data)
}

// yesNo prints a boolean for a table.
func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// onOff prints a boolean the way heroku's maintenance command does.
func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// formatTime prints a time the way the heroku CLI does in lists.
func (e *clientEnv) formatTime(t time.Time) string {
	loc := e.loc
	if loc == nil {
		loc = time.Local
	}
	return t.In(loc).Format("2006/01/02 15:04:05 -0700")
}

// versionRE matches a release version as typed: "v12" or "12".
var versionRE = regexp.MustCompile(`^[vV]?(\d+)$`)

// releaseRef turns "v12" into "12", the version the API accepts; anything
// else (a release id) is passed through.
func releaseRef(s string) string {
	if m := versionRE.FindStringSubmatch(s); m != nil {
		return m[1]
	}
	return s
}

// urls prints an app's web and git URLs the way heroku apps:create does.
func urls(webURL, gitURL string) string {
	return webURL + " | " + gitURL
}

// printGet GETs path and prints the response's raw JSON, indented.
func printGet(cmd *cobra.Command, c *client.Client, path string) error {
	var raw json.RawMessage
	if _, err := c.Do(cmd.Context(), http.MethodGet, path, nil, &raw, nil); err != nil {
		return err
	}
	return printRawJSON(cmd.OutOrStdout(), raw)
}

// printList GETs a list endpoint (every page when opts.All) and prints its
// items' raw JSON as one indented array.
func printList(cmd *cobra.Command, c *client.Client, path string, opts client.ListOptions) error {
	items, err := client.List[json.RawMessage](cmd.Context(), c, path, opts)
	if err != nil {
		return err
	}
	return printJSONList(cmd.OutOrStdout(), items)
}
