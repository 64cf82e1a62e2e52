// Package buildpacks holds the buildpacks shipped with Slipway: they follow
// Heroku's buildpack API (bin/detect, bin/compile, bin/release), need no
// internet, and are tried in order when an app sets none:
//
//   - go: a Go module (go.mod). Uses the Go toolchain of the stack
//     (/usr/local/go, /usr/lib/go or go on $PATH, or $GOROOT), builds with
//     vendored modules or fetches them through $GOPROXY (the app's config
//     var, else the node's), and keeps the module and build caches in the
//     build cache.
//   - static: a static site (static.json, public/index.html or index.html),
//     served by `slipway serve-static` (the slipway binary is put in the
//     slug).
//   - procfile: anything with a Procfile (a prebuilt binary, scripts): runs
//     the Procfile's commands as they are.
//
// The compiler writes them to disk with Materialize and refers to them by
// name (go, heroku/go, slipway/go, ...: Lookup).
package buildpacks

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

//go:embed go static procfile
var files embed.FS

// Order is the detection order of the shipped buildpacks.
var order = [...]string{"go", "static", "procfile"}

// Names lists the shipped buildpacks in detection order.
func Names() []string { return append([]string(nil), order[:]...) }

// Lookup maps a buildpack name as users write it (go, heroku/go,
// slipway/go, heroku-community/static, urn:buildpack:heroku/go) to a shipped
// buildpack.
func Lookup(name string) (string, bool) {
	n := strings.TrimPrefix(name, "urn:buildpack:")
	if i := strings.LastIndex(n, "/"); i >= 0 {
		switch n[:i] {
		case "heroku", "slipway", "heroku-community":
			n = n[i+1:]
		default:
			return "", false
		}
	}
	for _, o := range order {
		if n == o {
			return o, true
		}
	}
	return "", false
}

// Materialize writes the shipped buildpacks under dir (dir/go, dir/static,
// ...), with their bin/ scripts executable.
func Materialize(dir string) error {
	return fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(p))
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if path.Base(path.Dir(p)) == "bin" {
			mode = 0o755
		}
		if err := os.WriteFile(dst, b, mode); err != nil {
			return fmt.Errorf("writing buildpack file %s: %w", p, err)
		}
		return nil
	})
}
