package deploy

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/buildpacks"
)

// Limits of a build, as Heroku's.
const (
	// DefaultBuildTimeout is how long a build may take.
	DefaultBuildTimeout = 15 * time.Minute
	// DefaultMaxSlugBytes is the largest compressed slug.
	DefaultMaxSlugBytes = 500 << 20
	// SlugWarnBytes is the compressed slug size from which a build warns.
	SlugWarnBytes = 300 << 20
	// DefaultMaxSourceBytes bounds an unpacked source tree.
	DefaultMaxSourceBytes = 2 << 30
)

// Job is what a build dyno's compiler is told about its build.
type Job struct {
	BuildID       string            `json:"build_id"`
	AppID         string            `json:"app_id"`
	AppName       string            `json:"app_name"`
	Stack         string            `json:"stack"`
	Buildpacks    []string          `json:"buildpacks"` // empty: detect
	Config        map[string]string `json:"config"`
	SourceVersion string            `json:"source_version,omitempty"`
	HasCache      bool              `json:"has_cache"`
	// Deadline ends the build (15 minutes after it started).
	Deadline     time.Time     `json:"deadline"`
	TimeLimit    time.Duration `json:"time_limit"`
	MaxSlugBytes int64         `json:"max_slug_bytes"`
	WebURL       string        `json:"web_url"`
}

// Stored is a blob the node stored for the compiler.
type Stored struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// Result is what the compiler reports when it is done.
type Result struct {
	Status       string            `json:"status"` // succeeded or failed
	Message      string            `json:"message,omitempty"`
	ProcessTypes map[string]string `json:"process_types,omitempty"`
	Slug         *Stored           `json:"slug,omitempty"`
	Cache        *Stored           `json:"cache,omitempty"`
	Buildpack    string            `json:"buildpack_provided_description,omitempty"`
}

// Released is the node's answer to a result: the release it made (the
// node adds "-----> Launching... Released vN" to the output).
type Released struct {
	Version      int    `json:"version"`
	WebURL       string `json:"web_url"`
	ReleasePhase bool   `json:"release_phase"`
}

// Host is the compiler's view of the cluster (the node it talks to over
// the API port; an in-memory one in tests).
type Host interface {
	Job(ctx context.Context) (*Job, error)
	// Source returns the source tarball.
	Source(ctx context.Context) (io.ReadCloser, error)
	// Cache returns the build cache tarball, or nil when there is none.
	Cache(ctx context.Context) (io.ReadCloser, error)
	PutSlug(ctx context.Context, r io.Reader, size int64) (*Stored, error)
	PutCache(ctx context.Context, r io.Reader, size int64) (*Stored, error)
	Finish(ctx context.Context, res *Result) (*Released, error)
}

// CompileOptions are the compiler's local settings.
type CompileOptions struct {
	// WorkDir holds the build, cache, env and buildpack directories.
	WorkDir string
	// Env is the buildpacks' base environment (PATH, HOME, GOPROXY, ...).
	Env []string
	// SlipwayBin is the slipway binary (the static buildpack copies it).
	SlipwayBin string
	// Now is the clock (tests).
	Now func() time.Time
}

// failure is a build failure with the message to show.
type failure struct{ msg string }

func (f *failure) Error() string { return f.msg }

func failf(format string, args ...any) error { return &failure{fmt.Sprintf(format, args...)} }

// Compile runs one build: source and cache in, buildpacks, slug and cache
// out, result reported. Its output (Heroku's "-----> " steps) goes to out.
// It returns an error only when the result could not be reported.
func Compile(ctx context.Context, h Host, out io.Writer, opt CompileOptions) error {
	job, err := h.Job(ctx)
	if err != nil {
		return fmt.Errorf("fetching the build's description: %w", err)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	bctx := ctx
	if !job.Deadline.IsZero() {
		var cancel context.CancelFunc
		bctx, cancel = context.WithDeadline(ctx, job.Deadline)
		defer cancel()
	}
	res, cerr := compile(bctx, h, job, out, opt)
	if cerr != nil {
		var f *failure
		msg := cerr.Error()
		switch {
		case errors.As(cerr, &f):
		case bctx.Err() == context.DeadlineExceeded:
			msg = fmt.Sprintf("Build exceeded the %d minute limit and was stopped.", int(orDuration(job.TimeLimit, DefaultBuildTimeout).Minutes()))
		default:
			msg = "Build failed: " + msg
		}
		fmt.Fprintf(out, " !     %s\n", msg)
		fmt.Fprintf(out, " !     Push rejected, failed to compile %s app.\n", orDefault(frameworkOf(res), "the"))
		fmt.Fprintln(out)
		fmt.Fprintln(out, " !     Push failed")
		res = &Result{Status: "failed", Message: msg}
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if _, err := h.Finish(fctx, res); err != nil {
		fmt.Fprintf(out, " !     Recording the build failed: %v\n", err)
		return fmt.Errorf("reporting the build's result: %w", err)
	}
	return nil
}

func frameworkOf(r *Result) string {
	if r == nil {
		return ""
	}
	return r.Buildpack
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func compile(ctx context.Context, h Host, job *Job, out io.Writer, opt CompileOptions) (*Result, error) {
	res := &Result{Status: "succeeded"}
	fmt.Fprintf(out, "-----> Building on the %s stack\n", job.Stack)
	work := opt.WorkDir
	buildDir := filepath.Join(work, "build_"+shortID(job.BuildID))
	cacheDir := filepath.Join(work, "cache")
	envDir := filepath.Join(work, "env")
	for _, d := range []string{buildDir, cacheDir, envDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return res, err
		}
	}
	// Source.
	src, err := h.Source(ctx)
	if err != nil {
		return res, failf("Unable to fetch the source: %v", err)
	}
	err = ExtractTarGz(src, buildDir, ExtractOptions{MaxBytes: DefaultMaxSourceBytes, StripTopDir: true})
	src.Close()
	if err != nil {
		return res, failf("The source tarball was refused: %v", err)
	}
	// Cache.
	if job.HasCache {
		if c, err := h.Cache(ctx); err != nil {
			fmt.Fprintf(out, " !     The build cache could not be restored (%v); building without it.\n", err)
		} else if c != nil {
			err = ExtractTarGz(c, cacheDir, ExtractOptions{MaxBytes: DefaultMaxSourceBytes})
			c.Close()
			if err != nil {
				fmt.Fprintf(out, " !     The build cache could not be restored (%v); building without it.\n", err)
				_ = os.RemoveAll(cacheDir)
				_ = os.MkdirAll(cacheDir, 0o755)
			}
		}
	}
	// ENV_DIR: one file per config var.
	keys := make([]string, 0, len(job.Config))
	for k := range job.Config {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := os.WriteFile(filepath.Join(envDir, k), []byte(job.Config[k]), 0o600); err != nil {
			return res, err
		}
	}
	// .slugignore
	if n, err := RemoveSlugignored(buildDir); err != nil {
		return res, failf("%v", err)
	} else if n > 0 {
		fmt.Fprintf(out, "-----> Deleting %d files matching .slugignore patterns.\n", n)
	}

	// Buildpacks.
	runner := &Runner{Dir: filepath.Join(work, "buildpacks"), Env: append(append([]string(nil), opt.Env...),
		"STACK="+job.Stack, "SOURCE_VERSION="+job.SourceVersion, "SLIPWAY_BIN="+opt.SlipwayBin)}
	var bps []*Buildpack
	var frameworks []string
	if len(job.Buildpacks) == 0 {
		fmt.Fprintln(out, "-----> Determining which buildpack to use for this app")
		for _, name := range buildpacks.Names() {
			bp, err := runner.Resolve(ctx, name)
			if err != nil {
				return res, failf("%v", err)
			}
			fw, ok, err := runner.Detect(ctx, bp, buildDir)
			if err != nil {
				return res, err
			}
			if ok {
				bps, frameworks = append(bps, bp), append(frameworks, fw)
				break
			}
		}
		if len(bps) == 0 {
			return res, failf("No default language could be detected for this app.\n\t\t\tHINT: This occurs when Slipway cannot detect the buildpack to use for this application automatically.\n\t\t\tSet one with `heroku buildpacks:set`, or add a Procfile.")
		}
	} else {
		if len(job.Buildpacks) > 1 {
			fmt.Fprintln(out, "-----> Using buildpacks:")
			for i, n := range job.Buildpacks {
				fmt.Fprintf(out, "       %d. %s\n", i+1, n)
			}
		} else {
			fmt.Fprintf(out, "-----> Using buildpack: %s\n", job.Buildpacks[0])
		}
		for _, name := range job.Buildpacks {
			bp, err := runner.Resolve(ctx, name)
			if err != nil {
				return res, failf("%v", err)
			}
			fw, ok, err := runner.Detect(ctx, bp, buildDir)
			if err != nil {
				return res, err
			}
			if !ok {
				return res, failf("App not compatible with buildpack: %s", name)
			}
			bps, frameworks = append(bps, bp), append(frameworks, fw)
		}
	}
	var exports []string
	var last *ReleaseInfo
	for i, bp := range bps {
		fw := orDefault(frameworks[i], filepath.Base(bp.Name))
		res.Buildpack = fw
		fmt.Fprintf(out, "-----> %s app detected\n", fw)
		if err := runner.Compile(ctx, bp, buildDir, cacheDir, envDir, exports, out); err != nil {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			return res, failf("Failed to compile %s app: bin/compile %v", fw, err)
		}
		ri, err := runner.Release(ctx, bp, buildDir, exports, out)
		if err != nil {
			return res, failf("%v", err)
		}
		last = ri
		if exp := filepath.Join(bp.Dir, "export"); fileExists(exp) {
			exports = append(exports, exp)
		}
	}
	res.Buildpack = strings.Join(frameworks, ", ")

	// Process types: the last buildpack's defaults, overridden by the Procfile.
	fmt.Fprintln(out, "-----> Discovering process types")
	types := map[string]string{}
	if last != nil {
		for k, v := range last.DefaultProcessTypes {
			types[k] = v
		}
	}
	var procfile map[string]string
	if b, err := os.ReadFile(filepath.Join(buildDir, "Procfile")); err == nil {
		if procfile, err = ParseProcfile(b); err != nil {
			return res, failf("%v", err)
		}
	}
	for k, v := range procfile {
		types[k] = v
	}
	if len(procfile) > 0 {
		fmt.Fprintf(out, "       Procfile declares types     -> %s\n", strings.Join(processTypeNames(procfile), ", "))
	}
	var defaults []string
	if last != nil {
		for _, k := range processTypeNames(last.DefaultProcessTypes) {
			if _, over := procfile[k]; !over {
				defaults = append(defaults, k)
			}
		}
	}
	if len(defaults) > 0 {
		fmt.Fprintf(out, "       Default types for buildpack -> %s\n", strings.Join(defaults, ", "))
	}
	if len(types) == 0 {
		fmt.Fprintln(out, "       (no process types: add a Procfile)")
	}
	res.ProcessTypes = types
	fmt.Fprintln(out)

	// Slug.
	fmt.Fprintln(out, "-----> Compressing...")
	slugPath := filepath.Join(work, "slug.tgz")
	if err := writeArchive(slugPath, buildDir, "./app/", gzip.DefaultCompression); err != nil {
		return res, err
	}
	st, err := os.Stat(slugPath)
	if err != nil {
		return res, err
	}
	max := job.MaxSlugBytes
	if max <= 0 {
		max = DefaultMaxSlugBytes
	}
	if st.Size() > max {
		return res, failf("Compiled slug size: %s is too large (max is %s).", sizeM(st.Size()), sizeM(max))
	}
	fmt.Fprintf(out, "       Done: %s\n", humanSize(st.Size()))
	if st.Size() >= SlugWarnBytes {
		fmt.Fprintf(out, " !     Warning: Your slug size (%s) exceeds our soft limit (%s) which may affect boot time.\n", sizeM(st.Size()), sizeM(SlugWarnBytes))
	}
	f, err := os.Open(slugPath)
	if err != nil {
		return res, err
	}
	slug, err := h.PutSlug(ctx, f, st.Size())
	f.Close()
	if err != nil {
		return res, failf("Storing the slug failed: %v", err)
	}
	res.Slug = slug

	// Cache: kept for the next build (a failure only loses the cache).
	cachePath := filepath.Join(work, "cache.tgz")
	if err := writeArchive(cachePath, cacheDir, "", gzip.BestSpeed); err == nil {
		if cs, err := os.Stat(cachePath); err == nil {
			if f, err := os.Open(cachePath); err == nil {
				if c, err := h.PutCache(ctx, f, cs.Size()); err == nil {
					res.Cache = c
				} else {
					fmt.Fprintf(out, " !     The build cache could not be saved: %v\n", err)
				}
				f.Close()
			}
		}
	}
	return res, nil
}

func orDuration(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func writeArchive(dst, dir, prefix string, level int) error {
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	if err := WriteTarGz(f, dir, prefix, level, nil); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// sizeM prints a size in whole megabytes ("512M"), as Heroku's limits do.
func sizeM(n int64) string { return fmt.Sprintf("%dM", (n+(1<<20)-1)>>20) }

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
