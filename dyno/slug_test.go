package dyno

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type tarEntry struct {
	name, body, link string
	dir, symlink     bool
	hard             bool
	typ              byte
	mode             int64
}

func tarBytes(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Typeflag: tar.TypeReg, Size: int64(len(e.body))}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		switch {
		case e.dir:
			h.Typeflag, h.Size, h.Mode = tar.TypeDir, 0, 0o755
		case e.symlink:
			h.Typeflag, h.Size, h.Linkname = tar.TypeSymlink, 0, e.link
		case e.hard:
			h.Typeflag, h.Size, h.Linkname = tar.TypeLink, 0, e.link
		case e.typ != 0:
			h.Typeflag, h.Size = e.typ, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func tarGz(t testing.TB, entries ...tarEntry) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(tarBytes(t, entries...))
	_ = zw.Close()
	return buf.Bytes()
}

func TestUnpackGoodSlug(t *testing.T) {
	root := t.TempDir()
	dest := filepath.Join(root, "app")
	err := Unpack(bytes.NewReader(tarGz(t,
		tarEntry{name: "./app/", dir: true},
		tarEntry{name: "./app/bin/web", body: "#!/bin/sh\n", mode: 0o4755},
		tarEntry{name: "./app/lib/deep/x.txt", body: "x"},
		tarEntry{name: "./app/lib/link", symlink: true, link: "deep/x.txt"},
		tarEntry{name: "./app/vendor-link", symlink: true, link: "/app/lib"},
		tarEntry{name: "./app/hard", hard: true, link: "./app/lib/deep/x.txt"},
		tarEntry{name: "app/plain", body: "no ./ prefix"},
		tarEntry{name: "./app/lib/deep/x.txt", body: "replaced"},
	)), dest, UnpackOptions{UID: -1, GID: -1})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dest, "bin/web"))
	if err != nil || fi.Mode().Perm() != 0o755 || fi.Mode()&os.ModeSetuid != 0 {
		t.Fatalf("bin/web: %v %v (setuid must be dropped)", fi.Mode(), err)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "lib/link")); string(b) != "replaced" {
		t.Fatalf("lib/link reads %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "hard")); string(b) != "x" {
		t.Fatalf("hard link reads %q", b)
	}
	if l, _ := os.Readlink(filepath.Join(dest, "vendor-link")); l != "/app/lib" {
		t.Fatalf("vendor-link -> %q", l)
	}
	// A plain (not gzipped) tar works too.
	if err := Unpack(bytes.NewReader(tarBytes(t, tarEntry{name: "app/a", body: "a"})), filepath.Join(root, "plain"), UnpackOptions{UID: -1, GID: -1}); err != nil {
		t.Fatal(err)
	}
}

func TestUnpackRefusesBadEntries(t *testing.T) {
	cases := map[string][]tarEntry{
		"absolute path":        {{name: "/etc/passwd", body: "x"}},
		"path traversal":       {{name: "./app/../../x", body: "x"}},
		"dotdot in middle":     {{name: "app/a/../../b", body: "x"}},
		"outside ./app":        {{name: "./other/x", body: "x"}},
		"symlink out":          {{name: "./app/l", symlink: true, link: "../../etc"}},
		"absolute symlink out": {{name: "./app/l", symlink: true, link: "/etc/passwd"}},
		"hard link out":        {{name: "./app/h", hard: true, link: "/etc/passwd"}},
		"hard link to link": {
			{name: "./app/l", symlink: true, link: "x"},
			{name: "./app/h", hard: true, link: "./app/l"},
		},
		"write through symlink": {
			{name: "./app/d", symlink: true, link: "/app"},
			{name: "./app/d/x", body: "x"},
		},
		"char device": {{name: "./app/dev", typ: tar.TypeChar}},
		"fifo":        {{name: "./app/fifo", typ: tar.TypeFifo}},
		"app is a file": {
			{name: "./app", body: "x"},
		},
	}
	for name, entries := range cases {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			err := Unpack(bytes.NewReader(tarGz(t, entries...)), filepath.Join(root, "app"), UnpackOptions{UID: -1, GID: -1})
			var ue *UnpackError
			if !errors.As(err, &ue) {
				t.Fatalf("got %v, want an UnpackError", err)
			}
			assertOnlyApp(t, root)
		})
	}
}

func TestUnpackBoundsSize(t *testing.T) {
	root := t.TempDir()
	err := Unpack(bytes.NewReader(tarGz(t, tarEntry{name: "app/a", body: strings.Repeat("x", 100)}, tarEntry{name: "app/b", body: strings.Repeat("x", 100)})),
		filepath.Join(root, "app"), UnpackOptions{MaxBytes: 150, UID: -1, GID: -1})
	var ue *UnpackError
	if !errors.As(err, &ue) || !strings.Contains(ue.Reason, "more than 150 bytes") {
		t.Fatalf("got %v", err)
	}
}

// assertOnlyApp checks that nothing was written beside root/app.
func assertOnlyApp(t testing.TB, root string) {
	t.Helper()
	ents, _ := os.ReadDir(root)
	for _, e := range ents {
		if e.Name() != "app" {
			t.Fatalf("unpack wrote %s outside the slug", e.Name())
		}
	}
	_ = filepath.Walk(filepath.Join(root, "app"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode()&os.ModeSymlink != 0 {
			l, _ := os.Readlink(p)
			rel, _ := filepath.Rel(filepath.Join(root, "app"), p)
			j := filepath.Join(filepath.Dir(rel), l)
			if !strings.HasPrefix(l, "/app") && (j == ".." || strings.HasPrefix(j, "../")) {
				t.Fatalf("symlink %s -> %s leaves the slug", p, l)
			}
		}
		if err == nil && fi.Mode()&(os.ModeDevice|os.ModeNamedPipe|os.ModeSetuid|os.ModeSetgid) != 0 {
			t.Fatalf("special file %s (%v)", p, fi.Mode())
		}
		return nil
	})
}

func FuzzUnpack(f *testing.F) {
	f.Add(tarBytes(f, tarEntry{name: "./app/", dir: true}, tarEntry{name: "./app/a", body: "a"}))
	f.Add(tarBytes(f, tarEntry{name: "./app/l", symlink: true, link: "../x"}, tarEntry{name: "./app/l/y", body: "y"}))
	f.Add(tarBytes(f, tarEntry{name: "./app/a", body: "a"}, tarEntry{name: "./app/h", hard: true, link: "app/a"}))
	f.Add(tarGz(f, tarEntry{name: "app/d/", dir: true}, tarEntry{name: "app/d", body: "x"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		root, err := os.MkdirTemp("", "fuzz-unpack-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(root)
		_ = Unpack(bytes.NewReader(data), filepath.Join(root, "app"), UnpackOptions{MaxBytes: 1 << 20, UID: -1, GID: -1})
		assertOnlyApp(t, root)
	})
}

func TestSlugCacheVerifiesAndShares(t *testing.T) {
	src := &memSlugs{}
	good := src.put([]byte("slug bytes"))
	bad := src.put([]byte("other bytes"))
	src.corrupt = map[string]bool{bad: true}
	c, err := NewSlugCache(t.TempDir(), src)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p, err := c.Get(ctx, good)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "slug bytes" {
		t.Fatalf("cached %q", b)
	}
	if _, err := c.Get(ctx, good); err != nil || src.opens != 1 {
		t.Fatalf("second get: %v, %d opens", err, src.opens)
	}
	var ce *ChecksumError
	if _, err := c.Get(ctx, bad); !errors.As(err, &ce) {
		t.Fatalf("corrupt slug: %v", err)
	}
	if _, err := c.Get(ctx, "md5:abc"); err == nil {
		t.Fatal("bad digest accepted")
	}
	if removed := c.Prune(map[string]bool{}, time.Hour); len(removed) != 0 {
		t.Fatalf("pruned a fresh slug: %v", removed)
	}
	if removed := c.Prune(map[string]bool{good: true}, 0); len(removed) != 0 {
		t.Fatalf("pruned a kept slug: %v", removed)
	}
	if removed := c.Prune(map[string]bool{}, 0); len(removed) != 1 {
		t.Fatalf("pruned %v", removed)
	}
}

func TestPumpLinesSplitsLongLines(t *testing.T) {
	long := strings.Repeat("a", maxLine+5)
	var got []string
	pumpLines(strings.NewReader("one\r\ntwo\n\n"+long+"\nlast"), func(s string) { got = append(got, s) })
	want := []string{"one", "two", "", strings.Repeat("a", maxLine), "aaaaa", "last"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("lines %q", got)
	}
}
