package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// webappSlug builds testdata/webapp into a Heroku-format slug (a tar.gz
// holding ./app/bin/web) and returns its bytes and "SHA256:<hex>" checksum.
func webappSlug(t *testing.T) ([]byte, string) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "web")
	build := exec.Command("go", "build", "-o", bin, "./testdata/webapp")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the test app: %v\n%s", err, out)
	}
	exe, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, d := range []string{"./app/", "./app/bin/"} {
		if err := tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: "./app/bin/web", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(exe))}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(exe); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	return buf.Bytes(), "SHA256:" + hex.EncodeToString(sum[:])
}
