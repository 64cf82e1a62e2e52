package dyno

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Slugs fetches slug archives by digest ("sha256:<hex>"); the blob store
// implements it.
type Slugs interface {
	Open(ctx context.Context, digest string) (io.ReadCloser, int64, error)
}

// ChecksumError says a fetched slug does not match its digest (Heroku's R17).
type ChecksumError struct{ Want, Got string }

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("slug checksum mismatch: want %s, got %s", e.Want, e.Got)
}

// SlugCache keeps one verified copy of each slug archive a node runs.
type SlugCache struct {
	dir string
	src Slugs

	mu       sync.Mutex
	inflight map[string]*slugFetch
}

type slugFetch struct {
	done chan struct{}
	err  error
}

// NewSlugCache returns a cache in dir, filled from src.
func NewSlugCache(dir string, src Slugs) (*SlugCache, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("slug cache: %w", err)
	}
	return &SlugCache{dir: dir, src: src, inflight: map[string]*slugFetch{}}, nil
}

// parseDigest returns the hex part of "sha256:<64 hex>".
func parseDigest(d string) (string, error) {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(h) != 64 {
		return "", fmt.Errorf("slug digest %q is not sha256:<64 hex digits>", d)
	}
	if _, err := hex.DecodeString(h); err != nil || strings.ToLower(h) != h {
		return "", fmt.Errorf("slug digest %q is not sha256:<64 lowercase hex digits>", d)
	}
	return h, nil
}

func (c *SlugCache) path(hexDigest string) string {
	return filepath.Join(c.dir, hexDigest+".tgz")
}

// Get returns the path of a verified local copy of the slug, fetching it
// first if needed. Concurrent calls for one digest share one fetch.
func (c *SlugCache) Get(ctx context.Context, digest string) (string, error) {
	h, err := parseDigest(digest)
	if err != nil {
		return "", err
	}
	p := c.path(h)
	for {
		if _, err := os.Stat(p); err == nil {
			now := time.Now()
			_ = os.Chtimes(p, now, now) // last use, for Prune
			return p, nil
		}
		c.mu.Lock()
		f, ok := c.inflight[h]
		if !ok {
			f = &slugFetch{done: make(chan struct{})}
			c.inflight[h] = f
			c.mu.Unlock()
			f.err = c.fetch(ctx, digest, h, p)
			c.mu.Lock()
			delete(c.inflight, h)
			c.mu.Unlock()
			close(f.done)
			if f.err != nil {
				return "", f.err
			}
			return p, nil
		}
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-f.done:
			if f.err != nil {
				return "", f.err
			}
		}
	}
}

func (c *SlugCache) fetch(ctx context.Context, digest, h, dst string) error {
	rc, size, err := c.src.Open(ctx, digest)
	if err != nil {
		return fmt.Errorf("fetching slug %s: %w", digest, err)
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(c.dir, ".fetch-*")
	if err != nil {
		return fmt.Errorf("fetching slug %s: %w", digest, err)
	}
	defer os.Remove(tmp.Name())
	sum := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, sum), rc)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fetching slug %s: %w", digest, err)
	}
	if size >= 0 && n != size {
		return fmt.Errorf("fetching slug %s: got %d bytes, want %d", digest, n, size)
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != h {
		return &ChecksumError{Want: digest, Got: "sha256:" + got}
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("fetching slug %s: %w", digest, err)
	}
	return nil
}

// Prune removes cached slugs not in keep (digests) that were not used for
// olderThan.
func (c *SlugCache) Prune(keep map[string]bool, olderThan time.Duration) []string {
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return nil
	}
	var removed []string
	for _, e := range ents {
		h, ok := strings.CutSuffix(e.Name(), ".tgz")
		if !ok || keep["sha256:"+h] {
			continue
		}
		c.mu.Lock()
		_, busy := c.inflight[h]
		c.mu.Unlock()
		info, err := e.Info()
		if busy || err != nil || time.Since(info.ModTime()) < olderThan {
			continue
		}
		if os.Remove(filepath.Join(c.dir, e.Name())) == nil {
			removed = append(removed, "sha256:"+h)
		}
	}
	return removed
}

// UnpackOptions bound and own an unpacked slug.
type UnpackOptions struct {
	// MaxBytes bounds the total size of the files (0: no bound).
	MaxBytes int64
	// UID and GID own every entry (-1: the agent's user).
	UID, GID int
}

// UnpackError says a slug archive holds something it must not.
type UnpackError struct{ Entry, Reason string }

func (e *UnpackError) Error() string {
	return fmt.Sprintf("slug entry %q: %s", e.Entry, e.Reason)
}

// Unpack extracts a Heroku slug (a tar.gz, or a plain tar, of ./app) into
// dest, which must not exist yet: ./app/x becomes dest/x. It refuses, with an
// *UnpackError, entries outside ./app, absolute paths, "..", links that
// leave the tree (absolute symlinks may only point into /app, where the
// slug is inside a dyno), hard links to anything but an earlier regular
// file, device files and FIFOs; it never writes through a symlink, drops
// setuid/setgid bits and stops at opt.MaxBytes.
func Unpack(r io.Reader, dest string, opt UnpackOptions) error {
	br := bufio.NewReader(r)
	var src io.Reader = br
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("slug: %w", err)
		}
		defer zr.Close()
		src = zr
	}
	if err := os.Mkdir(dest, 0o700); err != nil {
		return fmt.Errorf("slug: %w", err)
	}
	u := &unpacker{dest: dest, opt: opt, dirs: map[string]bool{".": true}, files: map[string]bool{}, modes: map[string]os.FileMode{".": 0o755}}
	tr := tar.NewReader(src)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("slug: reading archive: %w", err)
		}
		if err := u.entry(hdr, tr); err != nil {
			return err
		}
	}
	return u.finish()
}

type unpacker struct {
	dest    string
	opt     UnpackOptions
	written int64
	dirs    map[string]bool // real directories (relative, cleaned)
	files   map[string]bool // regular files, for hard links
	modes   map[string]os.FileMode
}

// slugPath maps an archive name to a path relative to ./app ("." for ./app
// itself), or refuses it.
func slugPath(name string) (string, error) {
	if name == "" || strings.ContainsRune(name, 0) {
		return "", &UnpackError{name, "empty or invalid name"}
	}
	if strings.HasPrefix(name, "/") {
		return "", &UnpackError{name, "absolute path"}
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", &UnpackError{name, "path traversal (..)"}
		}
	}
	clean := path.Clean(name)
	switch {
	case clean == ".":
		return "", nil // the archive's root: nothing to do
	case clean == "app":
		return ".", nil
	case strings.HasPrefix(clean, "app/"):
		return clean[len("app/"):], nil
	}
	return "", &UnpackError{name, "outside ./app (a slug is a tarball of ./app)"}
}

func (u *unpacker) abs(rel string) string { return filepath.Join(u.dest, filepath.FromSlash(rel)) }

// parent makes sure rel's parent directories exist as real directories
// (never symlinks), creating missing ones.
func (u *unpacker) parent(name, rel string) error {
	dir := path.Dir(rel)
	if u.dirs[dir] {
		return nil
	}
	var missing []string
	for d := dir; !u.dirs[d]; d = path.Dir(d) {
		missing = append(missing, d)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		d := missing[i]
		fi, err := os.Lstat(u.abs(d))
		switch {
		case err == nil && fi.Mode()&os.ModeSymlink != 0:
			return &UnpackError{name, "path goes through a symlink"}
		case err == nil && !fi.IsDir():
			return &UnpackError{name, "parent is not a directory"}
		case err == nil:
		case errors.Is(err, os.ErrNotExist):
			if err := u.mkdir(d, 0o755); err != nil {
				return err
			}
		default:
			return fmt.Errorf("slug: %w", err)
		}
		u.dirs[d] = true
	}
	return nil
}

func (u *unpacker) mkdir(rel string, mode os.FileMode) error {
	if err := os.Mkdir(u.abs(rel), 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("slug: %w", err)
	}
	u.modes[rel] = mode
	return u.chown(rel)
}

func (u *unpacker) chown(rel string) error {
	if u.opt.UID < 0 && u.opt.GID < 0 {
		return nil
	}
	if err := os.Lchown(u.abs(rel), u.opt.UID, u.opt.GID); err != nil {
		return fmt.Errorf("slug: %w", err)
	}
	return nil
}

// clear removes an earlier entry at rel (tar lets a later entry replace an
// earlier one); directories stay.
func (u *unpacker) clear(name, rel string) error {
	fi, err := os.Lstat(u.abs(rel))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("slug: %w", err)
	}
	if fi.IsDir() {
		return &UnpackError{name, "replaces a directory"}
	}
	delete(u.files, rel)
	return os.Remove(u.abs(rel))
}

func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	name := hdr.Name
	rel, err := slugPath(name)
	if err != nil {
		return err
	}
	if rel == "" {
		return nil
	}
	perm := os.FileMode(hdr.Mode) & 0o777
	if rel == "." {
		if hdr.Typeflag != tar.TypeDir {
			return &UnpackError{name, "./app must be a directory"}
		}
		u.modes["."] = perm | 0o700
		return nil
	}
	if err := u.parent(name, rel); err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		fi, err := os.Lstat(u.abs(rel))
		if err == nil && !fi.IsDir() {
			return &UnpackError{name, "directory replaces a file or link"}
		}
		if err := u.mkdir(rel, perm|0o700); err != nil {
			return err
		}
		u.dirs[rel] = true
		return nil
	case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // old archives use TypeRegA
		if err := u.clear(name, rel); err != nil {
			return err
		}
		f, err := os.OpenFile(u.abs(rel), os.O_CREATE|os.O_EXCL|os.O_WRONLY|syscall.O_NOFOLLOW, perm)
		if err != nil {
			return fmt.Errorf("slug: %w", err)
		}
		var src io.Reader = r
		if u.opt.MaxBytes > 0 {
			src = io.LimitReader(r, u.opt.MaxBytes-u.written+1)
		}
		n, err := io.Copy(f, src)
		u.written += n
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("slug: writing %s: %w", name, err)
		}
		if u.opt.MaxBytes > 0 && u.written > u.opt.MaxBytes {
			return &UnpackError{name, fmt.Sprintf("the slug unpacks to more than %d bytes", u.opt.MaxBytes)}
		}
		if err := os.Chmod(u.abs(rel), perm); err != nil { // umask
			return fmt.Errorf("slug: %w", err)
		}
		u.files[rel] = true
		return u.chown(rel)
	case tar.TypeSymlink:
		t := hdr.Linkname
		switch {
		case t == "" || strings.ContainsRune(t, 0):
			return &UnpackError{name, "empty symlink target"}
		case strings.HasPrefix(t, "/"):
			if c := path.Clean(t); c != "/app" && !strings.HasPrefix(c, "/app/") {
				return &UnpackError{name, fmt.Sprintf("symlink to %s leaves the slug", t)}
			}
		default:
			if j := path.Join(path.Dir(rel), t); j == ".." || strings.HasPrefix(j, "../") {
				return &UnpackError{name, fmt.Sprintf("symlink to %s leaves the slug", t)}
			}
		}
		if err := u.clear(name, rel); err != nil {
			return err
		}
		if err := os.Symlink(t, u.abs(rel)); err != nil {
			return fmt.Errorf("slug: %w", err)
		}
		return u.chown(rel)
	case tar.TypeLink:
		target, err := slugPath(hdr.Linkname)
		if err != nil || target == "" || target == "." {
			return &UnpackError{name, fmt.Sprintf("hard link to %s leaves the slug", hdr.Linkname)}
		}
		if !u.files[target] {
			return &UnpackError{name, fmt.Sprintf("hard link to %s, which is not a regular file of the slug", hdr.Linkname)}
		}
		if target == rel {
			return nil
		}
		if err := u.clear(name, rel); err != nil {
			return err
		}
		if err := os.Link(u.abs(target), u.abs(rel)); err != nil {
			return fmt.Errorf("slug: %w", err)
		}
		u.files[rel] = true
		return nil
	case tar.TypeChar, tar.TypeBlock:
		return &UnpackError{name, "device file"}
	case tar.TypeFifo:
		return &UnpackError{name, "named pipe"}
	}
	return &UnpackError{name, fmt.Sprintf("unsupported entry type %q", hdr.Typeflag)}
}

// finish gives directories their modes, deepest first (they were created
// writable so their entries could be written).
func (u *unpacker) finish() error {
	dirs := make([]string, 0, len(u.modes))
	for d := range u.modes {
		dirs = append(dirs, d)
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		if err := os.Chmod(u.abs(d), u.modes[d]); err != nil {
			return fmt.Errorf("slug: %w", err)
		}
	}
	if err := u.chown("."); err != nil {
		return err
	}
	return nil
}
