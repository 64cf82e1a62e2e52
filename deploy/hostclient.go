package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// HTTPHost is the Host of a compiler in a build dyno: its node's internal
// build endpoints on the API port.
type HTTPHost struct {
	urls    []string
	base    string // the URL that answered
	buildID string
	token   string
	hc      *http.Client

	out     *io.PipeWriter
	outDone chan error
	job     *Job // the first answer (Job is asked once per build)
}

// NewHTTPHost returns a host that tries urls in order.
func NewHTTPHost(urls []string, buildID, token string) *HTTPHost {
	return &HTTPHost{urls: urls, buildID: buildID, token: token, hc: &http.Client{}}
}

func (h *HTTPHost) endpoint(base, op string) string {
	return strings.TrimSuffix(base, "/") + InternalPrefix + h.buildID + "/" + op
}

func (h *HTTPHost) do(ctx context.Context, method, op string, body io.Reader, size int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, h.endpoint(h.base, op), body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.ContentLength = size
	}
	req.Header.Set("Authorization", "Bearer "+h.token)
	resp, err := h.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var e struct {
			Message string `json:"message"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) == nil && e.Message != "" {
			return nil, errors.New(e.Message)
		}
		return nil, fmt.Errorf("%s %s: %s", method, op, resp.Status)
	}
	return resp, nil
}

// Job implements Host: the first node that answers is the one the build
// talks to from then on.
func (h *HTTPHost) Job(ctx context.Context) (*Job, error) {
	if h.job != nil {
		return h.job, nil
	}
	var errs []error
	for _, u := range h.urls {
		h.base = u
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp, err := h.do(cctx, http.MethodGet, "job", nil, 0)
		if err != nil {
			cancel()
			errs = append(errs, fmt.Errorf("%s: %w", u, err))
			continue
		}
		var j Job
		err = json.NewDecoder(resp.Body).Decode(&j)
		resp.Body.Close()
		cancel()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		h.job = &j
		return &j, nil
	}
	return nil, errors.Join(errs...)
}

// Output starts streaming the compiler's output to the node; the stream
// ends when Finish is called.
func (h *HTTPHost) Output(ctx context.Context) io.Writer {
	pr, pw := io.Pipe()
	h.out, h.outDone = pw, make(chan error, 1)
	go func() {
		resp, err := h.do(ctx, http.MethodPost, "output", pr, -1)
		if err == nil {
			resp.Body.Close()
		}
		pr.CloseWithError(err)
		h.outDone <- err
	}()
	return &failoverWriter{w: pw, fallback: os.Stdout}
}

// failoverWriter writes to w, and to fallback once w fails (the output
// then at least reaches the dyno's log).
type failoverWriter struct {
	w        io.Writer
	fallback io.Writer
	failed   bool
}

func (f *failoverWriter) Write(p []byte) (int, error) {
	if !f.failed {
		if _, err := f.w.Write(p); err == nil {
			return len(p), nil
		}
		f.failed = true
	}
	return f.fallback.Write(p)
}

func (h *HTTPHost) blob(ctx context.Context, op string) (io.ReadCloser, error) {
	resp, err := h.do(ctx, http.MethodGet, op, nil, 0)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Source implements Host.
func (h *HTTPHost) Source(ctx context.Context) (io.ReadCloser, error) { return h.blob(ctx, "source") }

// Cache implements Host.
func (h *HTTPHost) Cache(ctx context.Context) (io.ReadCloser, error) { return h.blob(ctx, "cache") }

func (h *HTTPHost) put(ctx context.Context, op string, r io.Reader, size int64) (*Stored, error) {
	resp, err := h.do(ctx, http.MethodPut, op, r, size)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st Stored
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, err
	}
	return &st, nil
}

// PutSlug implements Host.
func (h *HTTPHost) PutSlug(ctx context.Context, r io.Reader, size int64) (*Stored, error) {
	return h.put(ctx, "slug", r, size)
}

// PutCache implements Host.
func (h *HTTPHost) PutCache(ctx context.Context, r io.Reader, size int64) (*Stored, error) {
	return h.put(ctx, "cache", r, size)
}

// Finish implements Host: the output stream is ended (and received) first.
func (h *HTTPHost) Finish(ctx context.Context, res *Result) (*Released, error) {
	if h.out != nil {
		h.out.Close()
		select {
		case <-h.outDone:
		case <-time.After(30 * time.Second):
		}
		h.out = nil
	}
	b, err := json.Marshal(res)
	if err != nil {
		return nil, err
	}
	resp, err := h.do(ctx, http.MethodPost, "finish", bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var rel Released
	if err := json.NewDecoder(resp.Body).Decode(&rel); err != nil {
		return nil, err
	}
	return &rel, nil
}

// RunCompiler is `slipway slug-compile`, the build dyno's command: it reads
// SLIPWAY_BUILD_URLS, SLIPWAY_BUILD_ID and SLIPWAY_BUILD_TOKEN, builds in a
// temporary directory and reports to its node.
func RunCompiler(ctx context.Context, getenv func(string) string) error {
	urls := strings.Split(getenv("SLIPWAY_BUILD_URLS"), ",")
	id, token := getenv("SLIPWAY_BUILD_ID"), getenv("SLIPWAY_BUILD_TOKEN")
	if id == "" || token == "" || urls[0] == "" {
		return errors.New("slug-compile runs in a build dyno (SLIPWAY_BUILD_URLS, SLIPWAY_BUILD_ID and SLIPWAY_BUILD_TOKEN are not set)")
	}
	h := NewHTTPHost(urls, id, token)
	work, err := os.MkdirTemp("", "slipway-build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	exe, _ := os.Executable()
	if exe != "" {
		exe, _ = filepath.Abs(exe)
	}
	env := []string{"PATH=" + orDefault(getenv("PATH"), "/usr/local/bin:/usr/bin:/bin"), "HOME=" + orDefault(getenv("HOME"), work),
		"TMPDIR=" + work, "LANG=C.UTF-8"}
	for _, k := range []string{"GOPROXY", "GOSUMDB", "GONOSUMDB", "GOPRIVATE", "GOFLAGS", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"} {
		if v := getenv(k); v != "" {
			env = append(env, k+"="+v)
		}
	}
	if _, err := h.Job(ctx); err != nil {
		return fmt.Errorf("reaching the cluster: %w", err)
	}
	out := h.Output(ctx)
	return Compile(ctx, h, out, CompileOptions{WorkDir: work, Env: env, SlipwayBin: exe})
}
