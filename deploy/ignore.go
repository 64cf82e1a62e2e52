package deploy

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
)

// parseIgnore reads gitignore-style patterns; domain is the directory (as
// path components from the root) the patterns apply below.
func parseIgnore(b []byte, domain []string) []gitignore.Pattern {
	var ps []gitignore.Pattern
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
			continue
		}
		ps = append(ps, gitignore.ParsePattern(line, domain))
	}
	return ps
}

// RemoveSlugignored deletes from dir the files and directories that match
// the patterns of its .slugignore (gitignore syntax, as on Heroku), and the
// .slugignore itself stays. It returns how many entries it removed.
func RemoveSlugignored(dir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, ".slugignore"))
	if os.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading .slugignore: %w", err)
	}
	m := gitignore.NewMatcher(parseIgnore(b, nil))
	var doomed []string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." || rel == ".slugignore" {
			return nil
		}
		if m.Match(strings.Split(filepath.ToSlash(rel), "/"), d.IsDir()) {
			doomed = append(doomed, p)
			if d.IsDir() {
				return filepath.SkipDir
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("applying .slugignore: %w", err)
	}
	for _, p := range doomed {
		if err := os.RemoveAll(p); err != nil {
			return 0, fmt.Errorf("applying .slugignore: %w", err)
		}
	}
	return len(doomed), nil
}

// GitignoreSkipper returns a skip function for WriteTarGz that leaves out
// .git and whatever the .gitignore files of dir (at every level) ignore.
// It must be used with a top-down walk of dir, which it relies on to read
// each directory's .gitignore before its entries are asked about.
func GitignoreSkipper(dir string) func(rel string, d fs.DirEntry) bool {
	patterns := parseIgnore(readFileOrNil(filepath.Join(dir, ".gitignore")), nil)
	loaded := map[string]bool{".": true}
	return func(rel string, d fs.DirEntry) bool {
		parts := strings.Split(rel, "/")
		if parts[len(parts)-1] == ".git" {
			return true
		}
		if gitignore.NewMatcher(patterns).Match(parts, d.IsDir()) {
			return true
		}
		if d.IsDir() && !loaded[rel] {
			loaded[rel] = true
			patterns = append(patterns, parseIgnore(readFileOrNil(filepath.Join(dir, filepath.FromSlash(rel), ".gitignore")), parts)...)
		}
		return false
	}
}

func readFileOrNil(p string) []byte {
	b, _ := os.ReadFile(p)
	return b
}
