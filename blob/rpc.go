package blob

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/slipwayhq/slipway/cluster"
	"github.com/slipwayhq/slipway/fsm"
)

// Internal RPC endpoints (on every node's RPC port):
//
//	PUT  /internal/v1/blobs/{digest}?size=N   store the streamed body (verified)
//	GET  /internal/v1/blobs/{digest}          stream the local copy
//	POST /internal/v1/blobs/{digest}/fetch?from=node,...
//	                                          copy it from one of those nodes
const rpcBlobs = "/internal/v1/blobs/"

func (s *Store) mount() {
	s.c.HandleRPC("PUT "+rpcBlobs+"{digest}", http.HandlerFunc(s.handlePut))
	s.c.HandleRPC("GET "+rpcBlobs+"{digest}", http.HandlerFunc(s.handleGet))
	s.c.HandleRPC("POST "+rpcBlobs+"{digest}/fetch", http.HandlerFunc(s.handleFetch))
}

type rpcResult struct {
	Digest string `json:"digest,omitempty"`
	Size   int64  `json:"size,omitempty"`
	Error  string `json:"error,omitempty"`
}

func writeRPC(w http.ResponseWriter, status int, v rpcResult) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func errStatus(err error) int {
	switch {
	case errors.Is(err, ErrNoSpace):
		return http.StatusInsufficientStorage
	case errors.Is(err, ErrCorrupt):
		return http.StatusUnprocessableEntity
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	}
	return http.StatusInternalServerError
}

func (s *Store) handlePut(w http.ResponseWriter, r *http.Request) {
	digest := r.PathValue("digest")
	if e := fsm.ValidDigest(digest); e != nil {
		writeRPC(w, http.StatusBadRequest, rpcResult{Error: e.Message})
		return
	}
	size := int64(-1)
	if v := r.URL.Query().Get("size"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			writeRPC(w, http.StatusBadRequest, rpcResult{Error: "bad size"})
			return
		}
		size = n
	}
	if err := s.receive(r.Body, digest, size); err != nil {
		s.log.Warn("blob: refusing a copy", "digest", digest, "err", err)
		writeRPC(w, errStatus(err), rpcResult{Error: err.Error()})
		return
	}
	writeRPC(w, http.StatusOK, rpcResult{Digest: digest, Size: size})
}

func (s *Store) handleGet(w http.ResponseWriter, r *http.Request) {
	digest := r.PathValue("digest")
	if e := fsm.ValidDigest(digest); e != nil {
		writeRPC(w, http.StatusBadRequest, rpcResult{Error: e.Message})
		return
	}
	f, err := os.Open(s.path(digest))
	if err != nil {
		writeRPC(w, http.StatusNotFound, rpcResult{Error: "no local copy of " + digest})
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		writeRPC(w, http.StatusInternalServerError, rpcResult{Error: err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(st.Size(), 10))
	w.WriteHeader(http.StatusOK)
	_, _ = io.CopyBuffer(w, f, make([]byte, copyBufSize))
}

func (s *Store) handleFetch(w http.ResponseWriter, r *http.Request) {
	digest := r.PathValue("digest")
	if e := fsm.ValidDigest(digest); e != nil {
		writeRPC(w, http.StatusBadRequest, rpcResult{Error: e.Message})
		return
	}
	from := strings.Split(r.URL.Query().Get("from"), ",")
	alive := s.aliveMembers()
	var errs []error
	for _, name := range from {
		m, ok := alive[name]
		if !ok || name == s.c.Name() {
			continue
		}
		body, size, err := s.get(r.Context(), m, digest)
		if err == nil {
			err = s.receive(body, digest, size)
			body.Close()
		}
		if err == nil {
			writeRPC(w, http.StatusOK, rpcResult{Digest: digest, Size: size})
			return
		}
		errs = append(errs, fmt.Errorf("from %s: %w", name, err))
	}
	err := errors.Join(errs...)
	if err == nil {
		err = fmt.Errorf("%w: none of %q is alive", ErrNotFound, from)
	}
	s.log.Warn("blob: fetch for repair failed", "digest", digest, "err", err)
	writeRPC(w, errStatus(err), rpcResult{Error: err.Error()})
}

// rpcError reads an error response.
func rpcError(resp *http.Response) error {
	var res rpcResult
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if json.Unmarshal(b, &res) != nil || res.Error == "" {
		res.Error = strings.TrimSpace(string(b))
	}
	err := fmt.Errorf("%s: %s", resp.Status, res.Error)
	switch resp.StatusCode {
	case http.StatusInsufficientStorage:
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	case http.StatusNotFound:
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case http.StatusUnprocessableEntity:
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return err
}

// push streams the local copy of a blob to another node.
func (s *Store) push(ctx context.Context, m cluster.Member, digest string, size int64, kind string) error {
	f, err := os.Open(s.path(digest))
	if err != nil {
		return fmt.Errorf("reading local copy: %w", err)
	}
	defer f.Close()
	q := url.Values{"size": {strconv.FormatInt(size, 10)}}
	if kind != "" {
		q.Set("kind", kind)
	}
	resp, err := s.c.RPCRequest(ctx, http.MethodPut, m.Meta.RPC, rpcBlobs+digest+"?"+q.Encode(), bufferedFile{f})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return rpcError(resp)
	}
	return nil
}

// bufferedFile hides *os.File's ReaderFrom/WriterTo so the HTTP client
// copies it with a large buffer instead of its small default.
type bufferedFile struct{ f *os.File }

func (b bufferedFile) Read(p []byte) (int, error) { return b.f.Read(p) }

// get opens a stream of a blob from another node.
func (s *Store) get(ctx context.Context, m cluster.Member, digest string) (io.ReadCloser, int64, error) {
	resp, err := s.c.RPCRequest(ctx, http.MethodGet, m.Meta.RPC, rpcBlobs+digest, nil)
	if err != nil {
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, 0, rpcError(resp)
	}
	return resp.Body, resp.ContentLength, nil
}

// fetchTo asks node m to copy a blob from one of the nodes in from.
func (s *Store) fetchTo(ctx context.Context, m cluster.Member, digest string, from []string) error {
	q := url.Values{"from": {strings.Join(from, ",")}}
	resp, err := s.c.RPCRequest(ctx, http.MethodPost, m.Meta.RPC, rpcBlobs+digest+"/fetch?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return rpcError(resp)
	}
	return nil
}
