package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/api"
	"github.com/slipwayhq/slipway/client"
)

func (e *clientEnv) slugsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "slugs",
		Short: "List an app's slugs",
		Long: `List an app's newest slugs, newest first: id, size (or "not uploaded"),
commit, process types and when each was created (GET /apps/{app}/slugs, a
Slipway extension: Heroku has no slug list). Create a slug with
POST /apps/{app}/slugs, PUT its tarball to the blob URL it returns, and
release it with POST /apps/{app}/releases {"slug": ID}.`,
		Example: `  slipway slugs -a demo
  slipway slugs -a demo -n 50 --json`,
		Args: cobra.NoArgs,
	}
	app := e.appFlag(cmd)
	asJSON := jsonFlag(cmd)
	num := numFlag(cmd, "slugs")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := num.check(); err != nil {
			return err
		}
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		opts := client.ListOptions{Field: "created_at", Max: num.n, Order: "desc"}
		if *asJSON {
			return printList(cmd, c, client.Path("apps", name, "slugs"), opts)
		}
		slugs, err := c.Slugs(cmd.Context(), name, opts)
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		if len(slugs) == 0 {
			fmt.Fprintf(w, "%s has no slugs.\n", appLabel(name))
			return nil
		}
		header(w, appLabel(name)+" Slugs")
		rows := make([][]string, 0, len(slugs))
		for _, s := range slugs {
			rows = append(rows, []string{s.ID, slugSize(s), slugCommit(s.Commit), strings.Join(slugProcessTypes(s.ProcessTypes), ", "), e.formatTime(s.CreatedAt)})
		}
		return printTable(w, []string{"ID", "SIZE", "COMMIT", "PROCESS TYPES", "CREATED"}, rows)
	}
	return cmd
}

func (e *clientEnv) slugsInfoCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "slugs:info ID",
		Short: "Show one slug",
		Long: `Show a slug (GET /apps/{app}/slugs/{id}): its checksum, commit, size, stack,
process types and the signed blob URL to upload its tarball to (method put,
before it is uploaded) or to download it from (method get), which needs no
Authorization header:

  curl -X PUT --data-binary @slug.tgz "URL"`,
		Example: `  slipway slugs:info 5c6c1f2e-0c4b-4a56-9d0e-2d1f0b1e7a11 -a demo`,
		Args:    cobra.ExactArgs(1),
	}
	app := e.appFlag(cmd)
	asJSON := jsonFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		if *asJSON {
			return printGet(cmd, c, client.Path("apps", name, "slugs", args[0]))
		}
		s, err := c.Slug(cmd.Context(), name, args[0])
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		header(w, "Slug "+s.ID)
		var pts []string
		for _, t := range slugProcessTypes(s.ProcessTypes) {
			pts = append(pts, t+": "+s.ProcessTypes[t])
		}
		printFields(w, []field{
			{"Blob", strings.ToUpper(s.Blob.Method) + " " + s.Blob.URL},
			{"Buildpack", slugText(s.BuildpackProvidedDescription)},
			{"Checksum", slugText(s.Checksum)},
			{"Commit", slugText(s.Commit)},
			{"Commit Description", slugText(s.CommitDescription)},
			{"Created", e.formatTime(s.CreatedAt)},
			{"Process Types", strings.Join(pts, "\n")},
			{"Size", slugSize(*s)},
			{"Stack", s.Stack.Name},
		})
		return nil
	}
	return cmd
}

func slugText(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func slugCommit(c *string) string {
	s := slugText(c)
	if len(s) > 7 {
		return s[:7]
	}
	return s
}

func slugProcessTypes(pt map[string]string) []string {
	out := make([]string, 0, len(pt))
	for t := range pt {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// slugSize prints a size the way the heroku CLI does (e.g. "12.3 MB").
func slugSize(s api.Slug) string {
	if s.Size == nil {
		return "not uploaded"
	}
	n := float64(*s.Size)
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", n/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KB", n/(1<<10))
	}
	return fmt.Sprintf("%d B", *s.Size)
}
