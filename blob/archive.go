package blob

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// ArchiveError says why a tarball is not safe to unpack.
type ArchiveError struct {
	Entry  string // the offending entry's name, if any
	Reason string
}

func (e *ArchiveError) Error() string {
	if e.Entry == "" {
		return e.Reason
	}
	return fmt.Sprintf("entry %q: %s", e.Entry, e.Reason)
}

// ArchiveLimits bound what CheckArchive accepts. Zero values are unlimited
// except MaxLinks, which defaults to 100,000.
type ArchiveLimits struct {
	MaxEntries int
	MaxLinks   int
	// MaxUncompressed bounds the sum of the entries' sizes.
	MaxUncompressed int64
}

// AppRoot is where a slug is unpacked in a dyno. Absolute symbolic links
// into it stay inside the slug, so they are accepted.
const AppRoot = "/app"

// CheckArchive reads a gzip-compressed tar stream to its end and returns an
// *ArchiveError if it is not safe to unpack into an empty directory:
// absolute entry names, ".." components, symbolic or hard links that lead
// outside the tree (following the archive's other symbolic links), device
// files, FIFOs and other special entries, a corrupt stream or trailing
// garbage. Absolute symbolic links are accepted only into AppRoot (which is
// mapped to the archive's ./app directory when every entry is under it, as
// in Heroku's slug layout, else to the archive's root).
func CheckArchive(r io.Reader, lim ArchiveLimits) error {
	if lim.MaxLinks <= 0 {
		lim.MaxLinks = 100_000
	}
	zr, err := gzip.NewReader(r)
	if err != nil {
		return &ArchiveError{Reason: fmt.Sprintf("not a gzip-compressed tarball: %v", err)}
	}
	tr := tar.NewReader(zr)
	c := checker{symlinks: map[string]string{}, appRooted: true}
	var total int64
	for n := 1; ; n++ {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return &ArchiveError{Reason: fmt.Sprintf("not a valid tar archive: %v", err)}
		}
		if lim.MaxEntries > 0 && n > lim.MaxEntries {
			return &ArchiveError{Reason: fmt.Sprintf("more than %d entries", lim.MaxEntries)}
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		name, err := cleanName(h.Name)
		if err != nil {
			return &ArchiveError{Entry: h.Name, Reason: err.Error()}
		}
		if name != "" && name != "app" && !strings.HasPrefix(name, "app/") {
			c.appRooted = false
		}
		switch h.Typeflag {
		case tar.TypeReg, '\x00', tar.TypeDir, tar.TypeGNUSparse: // '\x00' is the old TypeRegA
			total += h.Size
			if lim.MaxUncompressed > 0 && total > lim.MaxUncompressed {
				return &ArchiveError{Reason: fmt.Sprintf("unpacks to more than %d bytes", lim.MaxUncompressed)}
			}
		case tar.TypeSymlink:
			if h.Linkname == "" {
				return &ArchiveError{Entry: h.Name, Reason: "symbolic link with an empty target"}
			}
			if name == "" {
				return &ArchiveError{Entry: h.Name, Reason: "the archive's root is a symbolic link"}
			}
			c.symlinks[name] = h.Linkname
			c.order = append(c.order, link{name: name, target: h.Linkname, sym: true})
		case tar.TypeLink:
			target, err := cleanName(h.Linkname)
			if err != nil {
				return &ArchiveError{Entry: h.Name, Reason: "hard link to " + h.Linkname + ": " + err.Error()}
			}
			if target == "" {
				return &ArchiveError{Entry: h.Name, Reason: "hard link to the archive's root"}
			}
			c.order = append(c.order, link{name: name, target: target})
		case tar.TypeChar, tar.TypeBlock:
			return &ArchiveError{Entry: h.Name, Reason: "device files are not allowed"}
		case tar.TypeFifo:
			return &ArchiveError{Entry: h.Name, Reason: "named pipes (FIFOs) are not allowed"}
		default:
			return &ArchiveError{Entry: h.Name, Reason: fmt.Sprintf("unsupported entry type %q", h.Typeflag)}
		}
		if len(c.order) > lim.MaxLinks {
			return &ArchiveError{Reason: fmt.Sprintf("more than %d links", lim.MaxLinks)}
		}
	}
	// The rest of the gzip stream (tar padding) must be intact too.
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return &ArchiveError{Reason: fmt.Sprintf("corrupt gzip stream after the tar archive: %v", err)}
	}
	for _, l := range c.order {
		if err := c.checkLink(l); err != nil {
			return err
		}
	}
	return nil
}

// cleanName turns an entry name into slash-separated components relative
// to the archive's root ("" is the root), refusing absolute names and ".."
// components.
func cleanName(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty name")
	}
	if strings.HasPrefix(name, "/") {
		return "", errors.New("absolute path")
	}
	if strings.ContainsRune(name, 0) {
		return "", errors.New("NUL byte in the name")
	}
	var parts []string
	for _, p := range strings.Split(name, "/") {
		switch p {
		case "", ".":
		case "..":
			return "", errors.New(`".." path component`)
		default:
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "/"), nil
}

type link struct {
	name, target string
	sym          bool
}

type checker struct {
	symlinks  map[string]string // entry name -> target, as written
	order     []link
	appRooted bool
}

// maxHops bounds symbolic link resolution (Linux's limit is 40).
const maxHops = 40

var errEscape = errors.New("escapes")

func (c *checker) checkLink(l link) error {
	var err error
	if l.sym {
		// The link's directory may itself be reached through links.
		var dir []string
		if dir, err = c.resolve(nil, strings.Join(dirOf(l.name), "/"), 0); err == nil {
			_, err = c.resolve(dir, l.target, 0)
		}
	} else {
		_, err = c.resolve(nil, l.target, 0)
	}
	if err == nil {
		return nil
	}
	kind := "hard link"
	if l.sym {
		kind = "symbolic link"
	}
	if errors.Is(err, errEscape) {
		return &ArchiveError{Entry: l.name, Reason: fmt.Sprintf("%s to %q points outside the archive", kind, l.target)}
	}
	return &ArchiveError{Entry: l.name, Reason: fmt.Sprintf("%s to %q: %v", kind, l.target, err)}
}

func dirOf(name string) []string {
	parts := strings.Split(name, "/")
	return parts[:len(parts)-1]
}

// resolve walks target from the directory cur (components from the root),
// following the archive's symbolic links, and returns where it ends; it
// fails with errEscape if the walk ever leaves the root.
func (c *checker) resolve(cur []string, target string, hops int) ([]string, error) {
	if hops > maxHops {
		return nil, errors.New("too many levels of symbolic links")
	}
	if strings.HasPrefix(target, "/") {
		clean := path.Clean(target)
		if clean != AppRoot && !strings.HasPrefix(clean, AppRoot+"/") {
			return nil, errEscape
		}
		cur = nil
		if c.appRooted {
			cur = []string{"app"}
		}
		target = strings.TrimPrefix(strings.TrimPrefix(clean, AppRoot), "/")
	}
	cur = append([]string(nil), cur...)
	for _, p := range strings.Split(target, "/") {
		switch p {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return nil, errEscape
			}
			cur = cur[:len(cur)-1]
			continue
		}
		cur = append(cur, p)
		if t, ok := c.symlinks[strings.Join(cur, "/")]; ok {
			next, err := c.resolve(cur[:len(cur)-1], t, hops+1)
			if err != nil {
				return nil, err
			}
			cur = next
		}
	}
	return cur, nil
}

// CheckedReader passes a tarball through while CheckArchive reads a copy of
// it: it fails (with the *ArchiveError) as soon as the check does, and at the
// end returns the check's verdict instead of io.EOF. So a consumer such as
// Store.Put never accepts an archive that is not safe, without the archive
// being read twice or held in memory.
type CheckedReader struct {
	src  io.Reader
	pw   *io.PipeWriter
	done chan error
	err  error
}

// errAborted ends the checker when the consumer stops early.
var errAborted = errors.New("archive check aborted")

// NewCheckedReader starts checking what is read from r. Close it when done
// (it stops the checker if the stream was not read to the end).
func NewCheckedReader(r io.Reader, lim ArchiveLimits) *CheckedReader {
	pr, pw := io.Pipe()
	c := &CheckedReader{src: r, pw: pw, done: make(chan error, 1)}
	go func() {
		err := CheckArchive(pr, lim)
		if err == nil {
			// Let the writer finish: anything after the gzip stream was
			// already refused by CheckArchive, so this only drains.
			_, err = io.Copy(io.Discard, pr)
		}
		pr.CloseWithError(err)
		c.done <- err
	}()
	return c
}

// Read implements io.Reader.
func (c *CheckedReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.src.Read(p)
	if n > 0 {
		if _, werr := c.pw.Write(p[:n]); werr != nil {
			// The checker stopped: it found a problem.
			c.err = c.verdict()
			return 0, c.err
		}
	}
	switch {
	case err == io.EOF:
		c.pw.Close()
		if verr := c.verdict(); verr != nil {
			c.err = verr
			return n, verr
		}
		c.err = io.EOF
	case err != nil:
		c.pw.CloseWithError(err)
		c.verdict()
		c.err = err
	}
	return n, err
}

func (c *CheckedReader) verdict() error {
	err, ok := <-c.done
	if !ok {
		return c.err
	}
	close(c.done)
	var ae *ArchiveError
	if errors.As(err, &ae) {
		return ae
	}
	if err != nil {
		return &ArchiveError{Reason: err.Error()}
	}
	return nil
}

// Close stops the checker.
func (c *CheckedReader) Close() error {
	c.pw.CloseWithError(errAborted)
	if c.err == nil {
		c.err = errAborted
		c.verdict()
	}
	return nil
}
