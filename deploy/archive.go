package deploy

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// ExtractError says why an archive was refused.
type ExtractError struct {
	Entry  string
	Reason string
}

func (e *ExtractError) Error() string {
	if e.Entry == "" {
		return e.Reason
	}
	return fmt.Sprintf("entry %q: %s", e.Entry, e.Reason)
}

// ExtractOptions bound what ExtractTarGz accepts.
type ExtractOptions struct {
	// MaxBytes bounds the sum of the files' sizes (0: unlimited).
	MaxBytes int64
	// MaxEntries bounds the number of entries (0: unlimited).
	MaxEntries int
	// StripTopDir: when everything is inside one top-level directory (as in
	// GitHub's tarballs), its contents become the root.
	StripTopDir bool
}

// ExtractTarGz unpacks a gzip-compressed tarball into dest (created if
// needed), refusing anything that could write outside it: absolute names,
// ".." components, symbolic links that are absolute or lead out of the
// tree, hard links to anything but earlier files, device files and FIFOs.
// Every write goes through an os.Root, so even a link planted by an
// earlier entry cannot be followed out of dest.
func ExtractTarGz(r io.Reader, dest string, opt ExtractOptions) error {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return &ExtractError{Reason: fmt.Sprintf("not a gzip-compressed tarball: %v", err)}
	}
	defer zr.Close()
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return fmt.Errorf("extracting: %w", err)
	}
	root, err := os.OpenRoot(dest)
	if err != nil {
		return fmt.Errorf("extracting: %w", err)
	}
	defer root.Close()
	tr := tar.NewReader(zr)
	var total int64
	type dirTime struct {
		name string
		t    time.Time
	}
	var dirs []dirTime
	for n := 1; ; n++ {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return &ExtractError{Reason: fmt.Sprintf("not a valid tar archive: %v", err)}
		}
		if opt.MaxEntries > 0 && n > opt.MaxEntries {
			return &ExtractError{Reason: fmt.Sprintf("more than %d entries", opt.MaxEntries)}
		}
		if h.Typeflag == tar.TypeXGlobalHeader || h.Typeflag == tar.TypeXHeader {
			continue
		}
		name, err := entryName(h.Name)
		if err != nil {
			return &ExtractError{Entry: h.Name, Reason: err.Error()}
		}
		if name == "." {
			continue
		}
		if dir := path.Dir(name); dir != "." {
			if err := root.MkdirAll(dir, 0o755); err != nil {
				return &ExtractError{Entry: h.Name, Reason: fmt.Sprintf("cannot create its directory: %v", rootErr(err))}
			}
		}
		mode := fs.FileMode(h.Mode).Perm() | 0o200 // keep files writable by the owner (buildpacks rewrite them)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, mode|0o700); err != nil {
				return &ExtractError{Entry: h.Name, Reason: rootErr(err).Error()}
			}
			_ = root.Chmod(name, mode|0o700)
			dirs = append(dirs, dirTime{name, h.ModTime})
		case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
			total += h.Size
			if opt.MaxBytes > 0 && total > opt.MaxBytes {
				return &ExtractError{Reason: fmt.Sprintf("unpacks to more than %s", humanSize(opt.MaxBytes))}
			}
			_ = root.Remove(name)
			f, err := root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
			if err != nil {
				return &ExtractError{Entry: h.Name, Reason: rootErr(err).Error()}
			}
			_, err = io.Copy(f, tr)
			cerr := f.Close()
			if err != nil {
				return &ExtractError{Entry: h.Name, Reason: fmt.Sprintf("reading: %v", err)}
			}
			if cerr != nil {
				return fmt.Errorf("extracting %s: %w", h.Name, cerr)
			}
			_ = root.Chtimes(name, h.ModTime, h.ModTime)
		case tar.TypeSymlink:
			if err := checkLinkTarget(name, h.Linkname); err != nil {
				return &ExtractError{Entry: h.Name, Reason: err.Error()}
			}
			_ = root.Remove(name)
			if err := root.Symlink(h.Linkname, name); err != nil {
				return &ExtractError{Entry: h.Name, Reason: rootErr(err).Error()}
			}
		case tar.TypeLink:
			target, err := entryName(h.Linkname)
			if err != nil || target == "." {
				return &ExtractError{Entry: h.Name, Reason: "hard link to " + h.Linkname + " outside the archive"}
			}
			st, err := root.Lstat(target)
			if err != nil || !st.Mode().IsRegular() {
				return &ExtractError{Entry: h.Name, Reason: "hard link to " + h.Linkname + ", which is not a file earlier in the archive"}
			}
			_ = root.Remove(name)
			if err := root.Link(target, name); err != nil {
				return &ExtractError{Entry: h.Name, Reason: rootErr(err).Error()}
			}
		case tar.TypeChar, tar.TypeBlock:
			return &ExtractError{Entry: h.Name, Reason: "device files are not allowed"}
		case tar.TypeFifo:
			return &ExtractError{Entry: h.Name, Reason: "named pipes are not allowed"}
		default:
			return &ExtractError{Entry: h.Name, Reason: fmt.Sprintf("unsupported entry type %q", h.Typeflag)}
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = root.Chtimes(dirs[i].name, dirs[i].t, dirs[i].t)
	}
	if opt.StripTopDir {
		return stripTopDir(dest)
	}
	return nil
}

// rootErr shortens os.Root's errors ("path escapes from parent").
func rootErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// entryName cleans an archive entry name into a relative slash path.
func entryName(n string) (string, error) {
	if strings.ContainsRune(n, 0) {
		return "", errors.New("name contains a NUL byte")
	}
	if strings.HasPrefix(n, "/") {
		return "", errors.New("absolute path")
	}
	for _, part := range strings.Split(n, "/") {
		if part == ".." {
			return "", errors.New(`path traversal ("..")`)
		}
	}
	return path.Clean(n), nil
}

// checkLinkTarget refuses symbolic links that are absolute or lead out of
// the tree.
func checkLinkTarget(name, target string) error {
	if target == "" {
		return errors.New("symbolic link with an empty target")
	}
	if strings.HasPrefix(target, "/") {
		return fmt.Errorf("symbolic link to the absolute path %s", target)
	}
	p := path.Join(path.Dir(name), target)
	if p == ".." || strings.HasPrefix(p, "../") {
		return fmt.Errorf("symbolic link to %s, outside the archive", target)
	}
	return nil
}

// stripTopDir moves the contents of dest's only entry up, when that entry
// is a directory.
func stripTopDir(dest string) error {
	ents, err := os.ReadDir(dest)
	if err != nil {
		return fmt.Errorf("extracting: %w", err)
	}
	if len(ents) != 1 || !ents[0].IsDir() {
		return nil
	}
	top := filepath.Join(dest, ents[0].Name())
	tmp := filepath.Join(dest, ".slipway-strip-"+ents[0].Name())
	if err := os.Rename(top, tmp); err != nil {
		return fmt.Errorf("extracting: %w", err)
	}
	inner, err := os.ReadDir(tmp)
	if err != nil {
		return fmt.Errorf("extracting: %w", err)
	}
	for _, e := range inner {
		if err := os.Rename(filepath.Join(tmp, e.Name()), filepath.Join(dest, e.Name())); err != nil {
			return fmt.Errorf("extracting: %w", err)
		}
	}
	return os.Remove(tmp)
}

// WriteTarGz writes dir as a gzip-compressed tarball whose entries are
// named prefix + the path relative to dir ("./app/" for a slug, "" for a
// repository or a cache). Regular files, directories and symbolic links
// are kept with their modes; other kinds of files are skipped. skip, when
// not nil, leaves out the entries it returns true for (and a directory's
// contents).
func WriteTarGz(w io.Writer, dir, prefix string, level int, skip func(rel string, d fs.DirEntry) bool) error {
	zw, err := gzip.NewWriterLevel(w, level)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel != "." && skip != nil && skip(rel, d) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		name := prefix + rel
		if rel == "." {
			name = prefix
			if name == "" {
				return nil
			}
		}
		var link string
		switch {
		case info.Mode().IsRegular(), info.IsDir():
		case info.Mode()&fs.ModeSymlink != 0:
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		default:
			return nil
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name = name
		if info.IsDir() && !strings.HasSuffix(h.Name, "/") {
			h.Name += "/"
		}
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("archiving %s: %w", dir, err)
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

// humanSize prints a size the way Heroku's build output does (5.1M).
func humanSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fG", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fM", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fK", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}
