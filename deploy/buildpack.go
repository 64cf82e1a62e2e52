package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/slipwayhq/slipway/buildpacks"
)

// Buildpack is a buildpack on disk.
type Buildpack struct {
	// Name is how it was asked for (a shipped name or a URL).
	Name string
	// Dir holds bin/detect, bin/compile and bin/release.
	Dir string
	// Shipped is true for the buildpacks in package buildpacks.
	Shipped bool
}

// ReleaseInfo is what bin/release prints.
type ReleaseInfo struct {
	DefaultProcessTypes map[string]string `yaml:"default_process_types"`
	Addons              []string          `yaml:"addons"`
	ConfigVars          map[string]string `yaml:"config_vars"`
}

// BuildpackError is a buildpack that could not be fetched or run.
type BuildpackError struct {
	Buildpack string
	Err       error
}

func (e *BuildpackError) Error() string { return e.Err.Error() }
func (e *BuildpackError) Unwrap() error { return e.Err }

// Runner runs buildpacks: it resolves names and URLs to directories and runs
// their programs with Heroku's arguments and environment.
type Runner struct {
	// Dir is where buildpacks are materialized and fetched.
	Dir string
	// Env is the environment of the buildpacks' programs (PATH, HOME,
	// STACK, SOURCE_VERSION, GOPROXY, ...). Config vars are not in it: they
	// are files in ENV_DIR, as on Heroku.
	Env []string
	// HTTP fetches tarball buildpacks (default: a client with a 2-minute
	// timeout).
	HTTP *http.Client
	// Git is the git program (default "git").
	Git string

	shipped bool
	fetched int
}

// Resolve returns the buildpack a name or URL designates, fetching it if it
// is a URL: a git repository (optionally "#ref") or a tarball (.tgz,
// .tar.gz).
func (r *Runner) Resolve(ctx context.Context, name string) (*Buildpack, error) {
	if shipped, ok := buildpacks.Lookup(name); ok {
		if !r.shipped {
			if err := buildpacks.Materialize(filepath.Join(r.Dir, "shipped")); err != nil {
				return nil, &BuildpackError{name, fmt.Errorf("preparing the shipped buildpacks: %w", err)}
			}
			r.shipped = true
		}
		return &Buildpack{Name: name, Dir: filepath.Join(r.Dir, "shipped", shipped), Shipped: true}, nil
	}
	u, err := url.Parse(name)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "git" && u.Scheme != "file") || (u.Host == "" && u.Scheme != "file") {
		return nil, &BuildpackError{name, fmt.Errorf("Buildpack %s is not one shipped with Slipway (%s) and is not a URL; give the URL of its git repository or tarball.", name, strings.Join(buildpacks.Names(), ", "))}
	}
	r.fetched++
	dir := filepath.Join(r.Dir, fmt.Sprintf("custom-%d", r.fetched))
	fctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	p := strings.ToLower(u.Path)
	if (u.Scheme == "http" || u.Scheme == "https") && (strings.HasSuffix(p, ".tgz") || strings.HasSuffix(p, ".tar.gz")) {
		err = r.fetchTarball(fctx, name, dir)
	} else {
		err = r.fetchGit(fctx, u, dir)
	}
	if err != nil {
		return nil, &BuildpackError{name, fmt.Errorf("Failed to fetch buildpack %s: %w", name, err)}
	}
	if _, err := os.Stat(filepath.Join(dir, "bin", "compile")); err != nil {
		return nil, &BuildpackError{name, fmt.Errorf("Buildpack %s has no bin/compile.", name)}
	}
	return &Buildpack{Name: name, Dir: dir}, nil
}

func (r *Runner) fetchTarball(ctx context.Context, u, dir string) error {
	hc := r.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 2 * time.Minute}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET answered %s", resp.Status)
	}
	return ExtractTarGz(io.LimitReader(resp.Body, 1<<30), dir, ExtractOptions{MaxBytes: 1 << 30, StripTopDir: true})
}

func (r *Runner) fetchGit(ctx context.Context, u *url.URL, dir string) error {
	ref := u.Fragment
	cu := *u
	cu.Fragment = ""
	args := []string{"clone", "--quiet", "--depth", "1"}
	if ref != "" {
		args = append(args, "--branch", ref)
	}
	args = append(args, "--", cu.String(), dir)
	git := r.Git
	if git == "" {
		git = "git"
	}
	cmd := exec.CommandContext(ctx, git, args...)
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_ASKPASS=/bin/false")
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if msg == "" {
			msg = err.Error()
		}
		return errors.New(lastLines(msg, 3))
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}

// exports returns the commands that source the export files left by
// earlier buildpacks, for the next one's shell.
func exportsPrelude(exports []string) string {
	var b strings.Builder
	b.WriteString("set -a\n")
	for _, e := range exports {
		fmt.Fprintf(&b, ". %s\n", shellQuote(e))
	}
	b.WriteString("set +a\n")
	return b.String()
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// run runs one of a buildpack's programs with the earlier buildpacks'
// exports sourced. It stays in the build dyno's process group, so whatever
// it leaves behind dies with the dyno (and counts in its memory); when ctx
// ends, the program and its descendants are killed.
func (r *Runner) run(ctx context.Context, bp *Buildpack, prog string, args []string, exports []string, stdout, stderr io.Writer) error {
	path := filepath.Join(bp.Dir, "bin", prog)
	if _, err := os.Stat(path); err != nil {
		return err
	}
	_ = os.Chmod(path, 0o755)
	script := exportsPrelude(exports) + `exec "$0" "$@"`
	cmd := exec.Command("bash", append([]string{"-c", script, path}, args...)...)
	cmd.Env = r.Env
	cmd.Dir = bp.Dir
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = 5 * time.Second // a straggler holding the output does not hold the build
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		killTree(cmd.Process.Pid)
		<-done
		return ctx.Err()
	}
}

// killTree kills a process and its descendants (found through /proc).
func killTree(pid int) {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 {
			if f := strings.Fields(s[i+1:]); len(f) > 1 {
				if pp, err := strconv.Atoi(f[1]); err == nil {
					children[pp] = append(children[pp], p)
				}
			}
		}
	}
	var kill func(int)
	kill = func(p int) {
		_ = syscall.Kill(p, syscall.SIGSTOP)
		for _, c := range children[p] {
			kill(c)
		}
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	kill(pid)
}

// Detect runs bin/detect BUILD_DIR: it accepts the app when it exits 0,
// and its first line of output names the framework.
func (r *Runner) Detect(ctx context.Context, bp *Buildpack, buildDir string) (string, bool, error) {
	var out bytes.Buffer
	err := r.run(ctx, bp, "detect", []string{buildDir}, nil, &out, io.Discard)
	if ctx.Err() != nil {
		return "", false, ctx.Err()
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	name, _, _ := strings.Cut(strings.TrimSpace(out.String()), "\n")
	return strings.TrimSpace(name), true, nil
}

// Compile runs bin/compile BUILD_DIR CACHE_DIR ENV_DIR, streaming its output.
func (r *Runner) Compile(ctx context.Context, bp *Buildpack, buildDir, cacheDir, envDir string, exports []string, out io.Writer) error {
	return r.run(ctx, bp, "compile", []string{buildDir, cacheDir, envDir}, exports, out, out)
}

// Release runs bin/release BUILD_DIR (if the buildpack has one) and parses
// its YAML.
func (r *Runner) Release(ctx context.Context, bp *Buildpack, buildDir string, exports []string, stderr io.Writer) (*ReleaseInfo, error) {
	if _, err := os.Stat(filepath.Join(bp.Dir, "bin", "release")); err != nil {
		return &ReleaseInfo{}, nil
	}
	var out bytes.Buffer
	if err := r.run(ctx, bp, "release", []string{buildDir}, exports, &out, stderr); err != nil {
		return nil, fmt.Errorf("bin/release failed: %w", err)
	}
	var ri ReleaseInfo
	if err := yaml.Unmarshal(out.Bytes(), &ri); err != nil {
		return nil, fmt.Errorf("bin/release printed invalid YAML: %w", err)
	}
	return &ri, nil
}
