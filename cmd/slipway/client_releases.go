package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/api"
	"github.com/slipwayhq/slipway/client"
)

// rollbackWindow is how many of the newest releases rollback and
// releases:info look through, as the heroku CLI does.
const rollbackWindow = 10

func (e *clientEnv) releasesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "releases",
		Short: "List an app's newest releases",
		Long: `List an app's newest releases, newest first: version, description, the user
who made it and when (GET /apps/{app}/releases with
"Range: version ..; max=N, order=desc"). A release that is not done says so
after its description.`,
		Example: `  slipway releases -a demo
  slipway releases -a demo -n 50 --json`,
		Args: cobra.NoArgs,
	}
	app := e.appFlag(cmd)
	asJSON := jsonFlag(cmd)
	num := numFlag(cmd, "releases")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := num.check(); err != nil {
			return err
		}
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		opts := client.ListOptions{Max: num.n, Order: "desc"}
		if *asJSON {
			opts.Field = "version"
			return printList(cmd, c, client.Path("apps", name, "releases"), opts)
		}
		rels, err := c.Releases(cmd.Context(), name, opts)
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		if len(rels) == 0 {
			fmt.Fprintf(w, "%s has no releases.\n", appLabel(name))
			return nil
		}
		title := appLabel(name) + " Releases"
		if cur := currentRelease(rels, false); cur != nil {
			title += fmt.Sprintf(" - Current: v%d", cur.Version)
		}
		header(w, title)
		rows := make([][]string, 0, len(rels))
		for _, r := range rels {
			desc := r.Description
			if note := statusNote(r.Status); note != "" {
				desc += " " + note
			}
			rows = append(rows, []string{fmt.Sprintf("v%d", r.Version), desc, r.User.Email, e.formatTime(r.CreatedAt)})
		}
		return printTable(w, nil, rows)
	}
	return cmd
}

// statusNote describes a release that is not simply done, as the heroku
// CLI does.
func statusNote(status string) string {
	switch status {
	case "pending":
		return "release command executing"
	case "failed":
		return "release command failed"
	case "expired":
		return "release expired"
	}
	return ""
}

// currentRelease returns the release marked current, else (when fallback)
// the first one, else nil.
func currentRelease(rels []api.Release, fallback bool) *api.Release {
	for i := range rels {
		if rels[i].Current {
			return &rels[i]
		}
	}
	if fallback && len(rels) > 0 {
		return &rels[0]
	}
	return nil
}

func (e *clientEnv) releasesInfoCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "releases:info [VERSION]",
		Short: "Show one release and its config vars",
		Long: `Show a release (GET /apps/{app}/releases/{version}) and the config vars it
ran with (GET /apps/{app}/releases/{version}/config-vars). VERSION is "v5",
"5" or a release id; without it, the current release. With --json, print only
the release resource.`,
		Example: `  slipway releases:info -a demo
  slipway releases:info v3 -a demo`,
		Args: cobra.MaximumNArgs(1),
	}
	app := e.appFlag(cmd)
	asJSON := jsonFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		var rel *api.Release
		if len(args) == 1 {
			ref := releaseRef(args[0])
			if *asJSON {
				return printGet(cmd, c, client.Path("apps", name, "releases", ref))
			}
			if rel, err = c.Release(cmd.Context(), name, ref); err != nil {
				return err
			}
		} else {
			rels, err := c.Releases(cmd.Context(), name, client.ListOptions{Max: rollbackWindow, Order: "desc"})
			if err != nil {
				return err
			}
			if rel = currentRelease(rels, true); rel == nil {
				return fmt.Errorf("%s has no releases", appLabel(name))
			}
			if *asJSON {
				return printGet(cmd, c, client.Path("apps", name, "releases", rel.ID))
			}
		}
		vars, err := c.ReleaseConfigVars(cmd.Context(), name, rel.ID)
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		header(w, fmt.Sprintf("Release v%d", rel.Version))
		status := rel.Status
		if note := statusNote(rel.Status); note != "" {
			status += " (" + note + ")"
		}
		printFields(w, []field{
			{"By", rel.User.Email},
			{"Change", rel.Description},
			{"Current", yesNo(rel.Current)},
			{"Status", status},
			{"When", e.formatTime(rel.CreatedAt)},
		})
		fmt.Fprintln(w)
		header(w, fmt.Sprintf("v%d Config vars", rel.Version))
		printFields(w, sortedVars(vars, nil))
		return nil
	}
	return cmd
}

func (e *clientEnv) rollbackCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollback [VERSION]",
		Short: "Roll an app back to an earlier release",
		Long: `Roll an app back to an earlier release (POST /apps/{app}/releases
{"release": ID}). The server makes a new release with the code and config vars
of the one rolled back to; the releases in between are kept.

VERSION is "v5", "5" or a release id. Without it, the target is the release
before the current one: the second newest release eligible for rollback among
the newest ` + fmt.Sprint(rollbackWindow) + `, as with heroku rollback.`,
		Example: `  slipway rollback -a demo
  slipway rollback v3 -a demo`,
		Args: cobra.MaximumNArgs(1),
	}
	app := e.appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		var target *api.Release
		if len(args) == 1 {
			target, err = c.Release(cmd.Context(), name, releaseRef(args[0]))
		} else {
			target, err = rollbackTarget(cmd.Context(), c, name)
		}
		if err != nil {
			return err
		}
		stderr := cmd.ErrOrStderr()
		var rel *api.Release
		err = action(stderr, fmt.Sprintf("Rolling back %s to v%d", appLabel(name), target.Version), func() (string, error) {
			var err error
			if rel, err = c.Rollback(cmd.Context(), name, target.ID); err != nil {
				return "", err
			}
			return fmt.Sprintf("v%d", rel.Version), nil
		})
		if err != nil {
			return err
		}
		warn(stderr, "Rollback affects code and config vars.")
		warn(stderr, "To undo, run: slipway rollback v%d -a %s", rel.Version-1, name)
		return nil
	}
	return cmd
}

// rollbackTarget picks the default rollback target the way the heroku CLI
// does: the second release eligible for rollback among the newest ones.
func rollbackTarget(ctx context.Context, c *client.Client, app string) (*api.Release, error) {
	rels, err := c.Releases(ctx, app, client.ListOptions{Max: rollbackWindow, Order: "desc"})
	if err != nil {
		return nil, err
	}
	var eligible []api.Release
	for _, r := range rels {
		if r.EligibleForRollback {
			eligible = append(eligible, r)
		}
	}
	if len(eligible) < 2 {
		return nil, fmt.Errorf("no release to roll back to: %s has fewer than two releases eligible for rollback among its newest %d; name one with 'slipway rollback VERSION'", appLabel(app), rollbackWindow)
	}
	return &eligible[1], nil
}

// listNum is the -n/--num flag of the list commands: how many of the
// newest items to show.
type listNum struct{ n int }

// numFlag adds -n/--num (1 to 1000, default 15) to a list command.
func numFlag(cmd *cobra.Command, what string) *listNum {
	l := &listNum{}
	cmd.Flags().IntVarP(&l.n, "num", "n", 15, "how many "+what+" to list (1 to 1000)")
	return l
}

func (l *listNum) check() error {
	if l.n < 1 || l.n > 1000 {
		return fmt.Errorf("--num %d is out of range: use 1 to 1000", l.n)
	}
	return nil
}
