package deploy

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

func tarOf(t *testing.T, hdrs ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, h := range hdrs {
		body := ""
		if h.Typeflag == tar.TypeReg {
			body = "data:" + h.Name
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func TestExtractRefusesEscapes(t *testing.T) {
	reg := func(n string) *tar.Header { return &tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644} }
	for _, tc := range []struct {
		name string
		hdrs []*tar.Header
		want string
	}{
		{"dotdot", []*tar.Header{reg("a/../../x")}, `path traversal`},
		{"absolute", []*tar.Header{reg("/etc/x")}, "absolute path"},
		{"absolute link", []*tar.Header{{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/etc"}}, "absolute path /etc"},
		{"escaping link", []*tar.Header{{Name: "d/l", Typeflag: tar.TypeSymlink, Linkname: "../../x"}}, "outside the archive"},
		{"hard link out", []*tar.Header{{Name: "h", Typeflag: tar.TypeLink, Linkname: "../x"}}, "outside the archive"},
		{"device", []*tar.Header{{Name: "dev", Typeflag: tar.TypeChar}}, "device files"},
		{"fifo", []*tar.Header{{Name: "p", Typeflag: tar.TypeFifo}}, "named pipes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			err := ExtractTarGz(bytes.NewReader(tarOf(t, tc.hdrs...)), filepath.Join(dir, "out"), ExtractOptions{})
			var xe *ExtractError
			if !errors.As(err, &xe) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
				t.Fatal("a file was written outside")
			}
		})
	}
	// A link inside the tree is fine, but writing through it cannot escape
	// (os.Root refuses it).
	dir := t.TempDir()
	err := ExtractTarGz(bytes.NewReader(tarOf(t,
		&tar.Header{Name: "sub/", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "in", Typeflag: tar.TypeSymlink, Linkname: "sub"},
		reg("in/file"))), filepath.Join(dir, "out"), ExtractOptions{})
	if err != nil {
		t.Fatalf("link inside the tree: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "out", "sub", "file")); string(b) != "data:in/file" {
		t.Fatalf("file through an inner link: %q", b)
	}
	// Limits.
	err = ExtractTarGz(bytes.NewReader(tarOf(t, reg("a"), reg("b"))), t.TempDir(), ExtractOptions{MaxBytes: 8})
	if err == nil || !strings.Contains(err.Error(), "unpacks to more than") {
		t.Fatalf("size limit: %v", err)
	}
	err = ExtractTarGz(strings.NewReader("not gzip"), t.TempDir(), ExtractOptions{})
	if err == nil || !strings.Contains(err.Error(), "not a gzip") {
		t.Fatalf("garbage: %v", err)
	}
}

func TestExtractStripsTopDirAndRoundTrips(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "bin"), 0o755)
	os.WriteFile(filepath.Join(src, "bin", "web"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(src, "README"), []byte("hi"), 0o644)
	os.Symlink("bin/web", filepath.Join(src, "run"))
	var buf bytes.Buffer
	if err := WriteTarGz(&buf, src, "repo-abc/", gzip.BestSpeed, nil); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if err := ExtractTarGz(bytes.NewReader(buf.Bytes()), dst, ExtractOptions{StripTopDir: true}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dst, "bin", "web"))
	if err != nil || st.Mode().Perm()&0o100 == 0 {
		t.Fatalf("bin/web: %v %v", st, err)
	}
	if l, _ := os.Readlink(filepath.Join(dst, "run")); l != "bin/web" {
		t.Fatalf("link %q", l)
	}
}

func TestIgnores(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"a.psd", "keep.txt", "docs/x.psd", "docs/keep.md", "tmp/cache/x", "vendor/lib.go"} {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(f)), 0o755)
		os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644)
	}
	os.WriteFile(filepath.Join(dir, ".slugignore"), []byte("# art\n*.psd\n/tmp\n!docs/x.psd\n"), 0o644)
	n, err := RemoveSlugignored(dir)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			left = append(left, rel)
		}
		return nil
	})
	sort.Strings(left)
	if n != 2 || strings.Join(left, ",") != ".slugignore,docs/keep.md,docs/x.psd,keep.txt,vendor/lib.go" {
		t.Fatalf("removed %d, left %v", n, left)
	}

	// .gitignore at every level, and .git, for slipway deploy.
	os.MkdirAll(filepath.Join(dir, ".git"), 0o755)
	os.WriteFile(filepath.Join(dir, ".git", "HEAD"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, ".gitignore"), []byte("*.txt\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "docs", ".gitignore"), []byte("*.md\n"), 0o644)
	var buf bytes.Buffer
	if err := WriteTarGz(&buf, dir, "", gzip.BestSpeed, GitignoreSkipper(dir)); err != nil {
		t.Fatal(err)
	}
	zr, _ := gzip.NewReader(&buf)
	tr := tar.NewReader(bufio.NewReader(zr))
	var names []string
	for h, err := tr.Next(); err == nil; h, err = tr.Next() {
		names = append(names, h.Name)
	}
	got := strings.Join(names, ",")
	if strings.Contains(got, ".git/") || strings.Contains(got, "keep.txt") || strings.Contains(got, "keep.md") || !strings.Contains(got, "vendor/lib.go") || !strings.Contains(got, "docs/x.psd") {
		t.Fatalf("archived %v", names)
	}
}

// FuzzReadCommands: the push command parser never panics and what it
// accepts is well formed.
func FuzzReadCommands(f *testing.F) {
	f.Add([]byte(pkt(zeroID+" "+strings.Repeat("a", 40)+" refs/heads/main\x00report-status side-band-64k\n") + "0000PACK"))
	f.Add([]byte("0000"))
	f.Add([]byte("0008abcd"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cmds, _, raw, err := readCommands(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			return
		}
		if !bytes.HasPrefix(b, raw) {
			t.Fatalf("raw %q is not a prefix of the input", raw)
		}
		for _, c := range cmds {
			if len(c.Old) != 40 || len(c.New) != 40 || !strings.HasPrefix(c.Ref, "refs/") {
				t.Fatalf("accepted %+v", c)
			}
		}
	})
}
