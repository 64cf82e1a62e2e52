package main

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/api"
	"github.com/slipwayhq/slipway/client"
	"github.com/slipwayhq/slipway/deploy"
)

// buildsCommands are the deploy commands: builds, builds:info,
// builds:output, builds:cache:purge, deploy, buildpacks, buildpacks:set,
// and the hidden commands build dynos and static sites run.
func (e *clientEnv) buildsCommands() []*cobra.Command {
	return []*cobra.Command{
		e.buildsCommand(), e.buildsInfoCommand(), e.buildsOutputCommand(), e.buildsCachePurgeCommand(),
		e.deployCommand(), e.buildpacksCommand(), e.buildpacksSetCommand(),
		slugCompileCommand(), serveStaticCommand(),
	}
}

func shortVersion(v *string) string {
	if v == nil {
		return ""
	}
	if len(*v) == 40 {
		return (*v)[:7]
	}
	return *v
}

func (e *clientEnv) buildsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "builds",
		Short: "List an app's builds",
		Long:  `List an app's newest builds, newest first: id, status, who started it, the source version and when.`,
		Example: `  slipway builds -a demo
  slipway builds -a demo --json`,
		Args: cobra.NoArgs,
	}
	app := e.appFlag(cmd)
	asJSON := jsonFlag(cmd)
	num := numFlag(cmd, "builds")
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
			return printList(cmd, c, client.Path("apps", name, "builds"), opts)
		}
		bs, err := c.Builds(cmd.Context(), name, opts)
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		if len(bs) == 0 {
			fmt.Fprintf(w, "%s has no builds.\n", appLabel(name))
			return nil
		}
		header(w, appLabel(name)+" Builds")
		rows := make([][]string, 0, len(bs))
		for _, b := range bs {
			rows = append(rows, []string{b.ID, b.Status, b.User.Email, shortVersion(b.SourceBlob.Version), e.formatTime(b.CreatedAt)})
		}
		return printTable(w, []string{"ID", "STATUS", "USER", "VERSION", "CREATED"}, rows)
	}
	return cmd
}

// latestBuild returns the newest build, or the one named.
func latestBuild(ctx context.Context, c *client.Client, app string, args []string) (*api.Build, error) {
	if len(args) > 0 {
		return c.Build(ctx, app, args[0])
	}
	bs, err := c.Builds(ctx, app, client.ListOptions{Field: "created_at", Max: 1, Order: "desc"})
	if err != nil {
		return nil, err
	}
	if len(bs) == 0 {
		return nil, fmt.Errorf("%s has no builds", app)
	}
	return &bs[0], nil
}

func (e *clientEnv) buildsInfoCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "builds:info [ID]",
		Short: "Show a build (the newest by default)",
		Long:  `Show a build: status, who started it, its source version and URL, the release it made, why it failed, and its output_stream_url.`,
		Example: `  slipway builds:info -a demo
  slipway builds:info 01234567-89ab-cdef-0123-456789abcdef -a demo --json`,
		Args: cobra.MaximumNArgs(1),
	}
	app := e.appFlag(cmd)
	asJSON := jsonFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		b, err := latestBuild(cmd.Context(), c, name, args)
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		if *asJSON {
			return printValueJSON(w, b)
		}
		header(w, appLabel(name)+" Build "+b.ID)
		f := []field{{"Status", b.Status}, {"User", b.User.Email}, {"Created", e.formatTime(b.CreatedAt)}, {"Stack", b.Stack}}
		if b.SourceBlob.Version != nil {
			f = append(f, field{"Version", *b.SourceBlob.Version})
		}
		if b.SourceBlob.URL != "" {
			f = append(f, field{"Source", b.SourceBlob.URL})
		}
		if b.Release != nil {
			f = append(f, field{"Release", b.Release.ID})
		}
		if m := b.Extra["message"]; m != "" {
			f = append(f, field{"Message", m})
		}
		f = append(f, field{"Output", b.OutputStreamURL})
		printFields(w, f)
		return nil
	}
	return cmd
}

func printValueJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (e *clientEnv) buildsOutputCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "builds:output [ID]",
		Short:   "Show a build's output (following it while it runs)",
		Long:    `Print a build's output (the newest build by default) from its output_stream_url: live while the build runs, then what was stored.`,
		Example: `  slipway builds:output -a demo`,
		Args:    cobra.MaximumNArgs(1),
	}
	app := e.appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		b, err := latestBuild(cmd.Context(), c, name, args)
		if err != nil {
			return err
		}
		return c.StreamOutput(cmd.Context(), b.OutputStreamURL, cmd.OutOrStdout())
	}
	return cmd
}

func (e *clientEnv) buildsCachePurgeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "builds:cache:purge",
		Short:   "Delete an app's build cache",
		Long:    `Delete an app's build cache (DELETE /apps/{app}/build-cache): the next build starts from scratch.`,
		Example: `  slipway builds:cache:purge -a demo`,
		Args:    cobra.NoArgs,
	}
	app := e.appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		return action(cmd.ErrOrStderr(), "Purging the build cache of "+appLabel(name), func() (string, error) {
			return "", c.PurgeBuildCache(cmd.Context(), name)
		})
	}
	return cmd
}

func (e *clientEnv) deployCommand() *cobra.Command {
	var version string
	var bps []string
	cmd := &cobra.Command{
		Use:   "deploy [DIR]",
		Short: "Build and release a directory (no git needed)",
		Long: `Upload a directory (default: the current one) as a source tarball, build it
with the Builds API and follow the build's output. Files that .gitignore
files ignore, and .git, are left out. The build's version is the git HEAD
of DIR when it is a git working copy, else --version.`,
		Example: `  slipway deploy -a demo
  slipway deploy ./site -a demo --buildpack static`,
		Args: cobra.MaximumNArgs(1),
	}
	app := e.appFlag(cmd)
	cmd.Flags().StringVar(&version, "version", "", "the source version to record (default: git HEAD)")
	cmd.Flags().StringSliceVarP(&bps, "buildpack", "b", nil, "buildpack to use (repeatable; default: the app's, else detect)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		dir := "."
		if len(args) > 0 {
			dir = args[0]
		}
		st, err := os.Stat(dir)
		if err != nil || !st.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		if version == "" {
			if out, err := exec.Command("git", "-C", dir, "rev-parse", "HEAD").Output(); err == nil {
				version = strings.TrimSpace(string(out))
			}
		}
		tmp, err := os.CreateTemp("", "slipway-deploy-*.tgz")
		if err != nil {
			return err
		}
		defer os.Remove(tmp.Name())
		defer tmp.Close()
		abs, _ := filepath.Abs(dir)
		if err := deploy.WriteTarGz(tmp, abs, "", gzip.DefaultCompression, deploy.GitignoreSkipper(abs)); err != nil {
			return err
		}
		size, _ := tmp.Seek(0, 1)
		if _, err := tmp.Seek(0, 0); err != nil {
			return err
		}
		errw := cmd.ErrOrStderr()
		var src *api.SourceCreated
		if err := action(errw, fmt.Sprintf("Uploading %s (%s)", dir, humanBytes(size)), func() (string, error) {
			var err error
			if src, err = c.CreateSource(ctx); err != nil {
				return "", err
			}
			return "", c.UploadSource(ctx, src.SourceBlob.PutURL, tmp, size)
		}); err != nil {
			return err
		}
		b, err := c.CreateBuild(ctx, name, src.SourceBlob.GetURL, version, bps)
		if err != nil {
			return err
		}
		if err := c.StreamOutput(ctx, b.OutputStreamURL, cmd.OutOrStdout()); err != nil {
			return err
		}
		for i := 0; i < 60; i++ {
			if b, err = c.Build(ctx, name, b.ID); err != nil {
				return err
			}
			if b.Status != "pending" {
				break
			}
			time.Sleep(time.Second)
		}
		if b.Status != "succeeded" {
			msg := b.Extra["message"]
			if msg == "" {
				msg = "see the output above"
			}
			return fmt.Errorf("build %s %s: %s", b.ID, b.Status, msg)
		}
		return nil
	}
	return cmd
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func (e *clientEnv) buildpacksCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "buildpacks",
		Short:   "List an app's buildpacks",
		Long:    `List the buildpacks an app's builds run, in order. With none, builds detect one of the shipped buildpacks (go, static, procfile).`,
		Example: `  slipway buildpacks -a demo`,
		Args:    cobra.NoArgs,
	}
	app := e.appFlag(cmd)
	asJSON := jsonFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		bps, err := c.Buildpacks(cmd.Context(), name)
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		if *asJSON {
			return printValueJSON(w, bps)
		}
		if len(bps) == 0 {
			fmt.Fprintf(w, "%s has no Buildpacks: builds detect one (go, static, procfile).\n", appLabel(name))
			return nil
		}
		header(w, appLabel(name)+" Buildpack URL"+plural(len(bps)))
		if len(bps) == 1 {
			fmt.Fprintln(w, bps[0].Buildpack.URL)
			return nil
		}
		for i, b := range bps {
			fmt.Fprintf(w, "%d. %s\n", i+1, b.Buildpack.URL)
		}
		return nil
	}
	return cmd
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func (e *clientEnv) buildpacksSetCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "buildpacks:set BUILDPACK...",
		Short: "Set an app's buildpacks, in order (none: detect)",
		Long: `Set the buildpacks an app's builds run, in order: names of buildpacks shipped
with Slipway (go, static, procfile; heroku/go works too) or URLs of git
repositories (https://..., optionally #ref) or tarballs (.tgz). With
--clear, builds detect a buildpack again.`,
		Example: `  slipway buildpacks:set go -a demo
  slipway buildpacks:set https://github.com/heroku/heroku-buildpack-go -a demo
  slipway buildpacks:set --clear -a demo`,
	}
	app := e.appFlag(cmd)
	clear := cmd.Flags().Bool("clear", false, "remove every buildpack (detect again)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 && !*clear {
			return errors.New("give one or more buildpacks, or --clear")
		}
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		if *clear {
			args = nil
		}
		bps, err := c.SetBuildpacks(cmd.Context(), name, args)
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		if len(bps) == 0 {
			fmt.Fprintf(w, "Buildpacks cleared. Next release on %s will detect buildpacks normally.\n", appLabel(name))
			return nil
		}
		fmt.Fprintf(w, "Buildpack%s set. Next release on %s will use:\n", plural(len(bps)), appLabel(name))
		for i, b := range bps {
			fmt.Fprintf(w, "  %d. %s\n", i+1, b.Buildpack.URL)
		}
		fmt.Fprintln(w, "Run git push heroku main to create a new release using these buildpacks.")
		return nil
	}
	return cmd
}

// slugCompileCommand is the build dyno's command.
func slugCompileCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "slug-compile",
		Short:   "Compile a slug (the command of a build dyno)",
		Long:    `Run a build in a build dyno: reads SLIPWAY_BUILD_URLS, SLIPWAY_BUILD_ID and SLIPWAY_BUILD_TOKEN, fetches the source and cache from the node, runs the buildpacks and reports the slug.`,
		Example: `  bin/slipway slug-compile`,
		Hidden:  true,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return deploy.RunCompiler(cmd.Context(), os.Getenv)
		},
	}
}

// serveStaticCommand is the web process of the static buildpack.
func serveStaticCommand() *cobra.Command {
	var root string
	cmd := &cobra.Command{
		Use:     "serve-static",
		Short:   "Serve a directory over HTTP on $PORT (the static buildpack's web process)",
		Long:    `Serve the files of a directory over HTTP on $PORT until SIGTERM: the web process the static buildpack declares.`,
		Example: `  .heroku/static/slipway serve-static --root public`,
		Hidden:  true,
		Args:    cobra.NoArgs,
	}
	cmd.Flags().StringVar(&root, "root", ".", "directory to serve")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		port := os.Getenv("PORT")
		if port == "" {
			port = "5000"
		}
		ln, err := net.Listen("tcp", ":"+port)
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: http.FileServer(http.Dir(root)), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			<-cmd.Context().Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
		}()
		fmt.Fprintf(cmd.OutOrStdout(), "serving %s on port %s\n", root, port)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
	return cmd
}
