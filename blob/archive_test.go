package blob

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

// entry is one tar entry for tests.
type entry struct {
	name string
	typ  byte
	link string
	body string
}

func tgz(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o644, Size: int64(len(e.body))}
		if e.typ == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if h.Typeflag == tar.TypeDir {
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// goodSlug is a Heroku-layout slug: everything under ./app.
func goodSlug(t testing.TB) []byte {
	return tgz(t,
		entry{name: "./app/", typ: tar.TypeDir},
		entry{name: "./app/Procfile", body: "web: ./server\n"},
		entry{name: "./app/bin/", typ: tar.TypeDir},
		entry{name: "./app/bin/server", body: "#!/bin/sh\nexec nc -l $PORT\n"},
		entry{name: "./app/server", typ: tar.TypeSymlink, link: "bin/server"},
		entry{name: "./app/vendor/", typ: tar.TypeDir},
		entry{name: "./app/vendor/python", typ: tar.TypeSymlink, link: "/app/bin/server"},
		entry{name: "./app/vendor/up", typ: tar.TypeSymlink, link: "../bin"},
		entry{name: "./app/vendor/up2", typ: tar.TypeSymlink, link: "up/../../app"},
		entry{name: "./app/hard", typ: tar.TypeLink, link: "./app/bin/server"},
		entry{name: "./app/dangling", typ: tar.TypeSymlink, link: "does/not/exist"},
	)
}

func TestCheckArchive(t *testing.T) {
	if err := CheckArchive(bytes.NewReader(goodSlug(t)), ArchiveLimits{}); err != nil {
		t.Fatalf("good slug refused: %v", err)
	}
	// A slug laid out at the root (no ./app) is fine too, and /app links
	// map to its root.
	flat := tgz(t, entry{name: "Procfile", body: "web: x"}, entry{name: "bin", typ: tar.TypeSymlink, link: "/app/lib"})
	if err := CheckArchive(bytes.NewReader(flat), ArchiveLimits{}); err != nil {
		t.Fatalf("flat slug refused: %v", err)
	}
	bad := []struct {
		name, want string
		data       []byte
	}{
		{"absolute path", "absolute path", tgz(t, entry{name: "/etc/passwd", body: "x"})},
		{"dot-dot", `".." path component`, tgz(t, entry{name: "app/../../etc/cron.d/x", body: "x"})},
		{"dot-dot dir", `".."`, tgz(t, entry{name: "../", typ: tar.TypeDir})},
		{"symlink up", "points outside", tgz(t, entry{name: "app/l", typ: tar.TypeSymlink, link: "../../etc"})},
		{"absolute symlink", "points outside", tgz(t, entry{name: "app/l", typ: tar.TypeSymlink, link: "/etc/passwd"})},
		{"absolute symlink climbing out of /app", "points outside", tgz(t, entry{name: "app/l", typ: tar.TypeSymlink, link: "/app/../etc"})},
		{"symlink chain", "points outside", tgz(t,
			entry{name: "app/x/", typ: tar.TypeDir},
			entry{name: "app/x/l1", typ: tar.TypeSymlink, link: "../.."}, // the root: fine alone
			entry{name: "app/x/l2", typ: tar.TypeSymlink, link: "l1/.."}, // lexically app/x, really above the root
		)},
		{"link through a linked directory", "points outside", tgz(t,
			entry{name: "app/d", typ: tar.TypeSymlink, link: ".."}, // app/d -> .. (the root)
			entry{name: "app/e", typ: tar.TypeSymlink, link: "d/.."},
		)},
		{"symlink loop", "too many levels", tgz(t, entry{name: "app/a", typ: tar.TypeSymlink, link: "b"}, entry{name: "app/b", typ: tar.TypeSymlink, link: "a"})},
		{"hard link out", `".." path component`, tgz(t, entry{name: "app/h", typ: tar.TypeLink, link: "../../etc/shadow"})},
		{"hard link absolute", "absolute path", tgz(t, entry{name: "app/h", typ: tar.TypeLink, link: "/etc/shadow"})},
		{"hard link through escaping symlink", "points outside", tgz(t,
			entry{name: "app/s", typ: tar.TypeSymlink, link: "/app"}, // fine: the app root
			entry{name: "app/t", typ: tar.TypeSymlink, link: "s/../.."},
			entry{name: "app/h", typ: tar.TypeLink, link: "app/t/etc/shadow"},
		)},
		{"char device", "device files", tgz(t, entry{name: "app/null", typ: tar.TypeChar})},
		{"block device", "device files", tgz(t, entry{name: "app/sda", typ: tar.TypeBlock})},
		{"fifo", "FIFOs", tgz(t, entry{name: "app/pipe", typ: tar.TypeFifo})},
		{"not gzip", "not a gzip", []byte("just text, not a tarball")},
		{"gzip of junk", "not a valid tar", gz(t, bytes.Repeat([]byte("junk"), 300))},
		{"trailing garbage", "corrupt gzip", append(goodSlug(t), []byte("trailing garbage")...)},
		{"truncated", "", goodSlug(t)[:200]},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			err := CheckArchive(bytes.NewReader(c.data), ArchiveLimits{})
			var ae *ArchiveError
			if !errors.As(err, &ae) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want an ArchiveError containing %q", err, c.want)
			}
		})
	}
}

func gz(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func TestArchiveLimits(t *testing.T) {
	data := tgz(t, entry{name: "a", body: "12345"}, entry{name: "b", body: "67890"})
	if err := CheckArchive(bytes.NewReader(data), ArchiveLimits{MaxEntries: 1}); err == nil || !strings.Contains(err.Error(), "more than 1 entries") {
		t.Fatalf("entries: %v", err)
	}
	if err := CheckArchive(bytes.NewReader(data), ArchiveLimits{MaxUncompressed: 9}); err == nil {
		t.Fatal("uncompressed limit not enforced")
	}
	if err := CheckArchive(bytes.NewReader(data), ArchiveLimits{MaxEntries: 2, MaxUncompressed: 10}); err != nil {
		t.Fatal(err)
	}
}

func TestCheckedReader(t *testing.T) {
	good := goodSlug(t)
	cr := NewCheckedReader(bytes.NewReader(good), ArchiveLimits{})
	got, err := io.ReadAll(cr)
	cr.Close()
	if err != nil || !bytes.Equal(got, good) {
		t.Fatalf("good archive: %v (%d of %d bytes)", err, len(got), len(good))
	}
	// A bad archive fails at the end instead of EOF...
	bad := tgz(t, entry{name: "app/x", body: "x"}, entry{name: "app/l", typ: tar.TypeSymlink, link: "../../etc"})
	cr = NewCheckedReader(bytes.NewReader(bad), ArchiveLimits{})
	_, err = io.ReadAll(cr)
	cr.Close()
	var ae *ArchiveError
	if !errors.As(err, &ae) {
		t.Fatalf("bad archive: %v", err)
	}
	// ...or as soon as the checker sees the problem, without reading the
	// rest of the stream.
	dev := tgz(t, entry{name: "app/null", typ: tar.TypeChar})
	src := &countingReader{r: io.MultiReader(bytes.NewReader(dev), newPRNG(9, 100<<20))}
	cr = NewCheckedReader(src, ArchiveLimits{})
	_, err = io.Copy(io.Discard, cr)
	cr.Close()
	if !errors.As(err, &ae) || src.n > 1<<20 {
		t.Fatalf("early failure: %v after %d bytes", err, src.n)
	}
	// A reader closed early stops the checker (no goroutine left blocked).
	cr = NewCheckedReader(bytes.NewReader(good), ArchiveLimits{})
	buf := make([]byte, 10)
	cr.Read(buf)
	cr.Close()
	if _, err := cr.Read(buf); err == nil {
		t.Fatal("read after close succeeded")
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// FuzzCheckArchive: the checker never panics, and what it accepts really
// is safe: no entry name is absolute or has "..", no device or FIFO.
func FuzzCheckArchive(f *testing.F) {
	f.Add(goodSlug(f))
	f.Add(tgz(f, entry{name: "app/l", typ: tar.TypeSymlink, link: "../x"}))
	f.Add(tgz(f, entry{name: "a/b/c", typ: tar.TypeLink, link: "a/b"}))
	f.Add(tgz(f, entry{name: "app/x/l1", typ: tar.TypeSymlink, link: "../.."}, entry{name: "app/x/l2", typ: tar.TypeSymlink, link: "l1/.."}))
	f.Add([]byte{0x1f, 0x8b})
	f.Fuzz(func(t *testing.T, data []byte) {
		err := CheckArchive(bytes.NewReader(data), ArchiveLimits{MaxEntries: 1000})
		if err != nil {
			var ae *ArchiveError
			if !errors.As(err, &ae) {
				t.Fatalf("error is not an ArchiveError: %v", err)
			}
			return
		}
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("accepted, but not gzip: %v", err)
		}
		tr := tar.NewReader(zr)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("accepted, but the tar is bad: %v", err)
			}
			if h.Typeflag == tar.TypeXGlobalHeader {
				continue
			}
			if strings.HasPrefix(h.Name, "/") || slices.Contains(strings.Split(h.Name, "/"), "..") {
				t.Fatalf("accepted entry %q", h.Name)
			}
			switch h.Typeflag {
			case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
				t.Fatalf("accepted special file %q", h.Name)
			case tar.TypeSymlink:
				if strings.HasPrefix(h.Linkname, "/") && h.Linkname != "/app" && !strings.HasPrefix(h.Linkname, "/app/") {
					t.Fatalf("accepted absolute link %q -> %q", h.Name, h.Linkname)
				}
			}
		}
	})
}
