package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/fsm"
)

// rpcOutputPrefix serves the live output of builds whose compiler streams
// to this node: GET /internal/v1/deploy/output/{build}?offset=N.
const rpcOutputPrefix = "/internal/v1/deploy/output/"

// trailerComplete is set on an RPC output stream that reached the output's
// end.
const trailerComplete = "X-Slipway-Output-Complete"

func (s *Service) handleRPCOutput(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(r.URL.Path, rpcOutputPrefix)
	buf := s.hub.get(id, false)
	if buf == nil {
		http.Error(w, "no such output here", http.StatusNotFound)
		return
	}
	offset, _ := strconv.Atoi(r.URL.Query().Get("offset"))
	w.Header().Set("Trailer", trailerComplete)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	flush := func() {
		if fl != nil {
			fl.Flush()
		}
	}
	flush()
	if _, err := buf.follow(r.Context(), offset, w, flush); err == nil {
		w.Header().Set(trailerComplete, "1")
	}
}

// Follow writes a build's output to w as it is produced, from wherever it
// is (this node, the node the compiler streams to, or the blob store once
// the build ended), until it ends or ctx does. flush, when not nil, is
// called after each write. While the build waits for a dyno it says why.
func (s *Service) Follow(ctx context.Context, buildID string, w io.Writer, flush func()) error {
	offset := 0
	saidPending := ""
	for {
		snap := s.cfg.Snap()
		ws := snap.Watch("builds", "dynos")
		b, ok := snap.Build(buildID)
		if !ok {
			return fsm.Errorf(fsm.CodeNotFound, "Couldn't find that build.")
		}
		// Output kept here: this node made the build, or its compiler
		// streams here.
		if buf := s.hub.get(buildID, false); buf != nil && (b.OutputNode == "" || b.OutputNode == s.cfg.Node) {
			n, err := buf.followUntil(ctx, offset, w, flush, func() bool {
				return s.buildGone(buildID) || s.pendingReason(buildID) != saidPending
			})
			offset = n
			if err != nil {
				return err
			}
			if _, closed := buf.Bytes(); closed {
				return nil
			}
		} else if b.OutputNode != "" && b.OutputNode != s.cfg.Node && b.Status == fsm.BuildPending {
			n, complete, err := s.followRemote(ctx, b, offset, w, flush)
			offset = n
			if complete {
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				s.log.Debug("following build output on another node", "build", buildID, "node", b.OutputNode, "err", err)
			}
		}
		if b.Status != fsm.BuildPending {
			if b.OutputDigest == "" && b.OutputNode != "" && b.OutputNode != s.cfg.Node {
				// The output may still be live on its node.
				if n, complete, _ := s.followRemote(ctx, b, offset, w, flush); complete {
					return nil
				} else {
					offset = n
				}
			}
			if b.OutputDigest == "" && time.Since(*orTime(b.FinishedAt)) < 10*time.Second {
				// Its output is being stored: wait a moment for it.
				wctx, cancel := context.WithTimeout(ctx, time.Second)
				_ = ws.WatchCtx(wctx)
				cancel()
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if nb, ok := s.cfg.Snap().Build(buildID); ok && nb.OutputDigest == "" {
					return nil
				}
				continue
			}
			if b.OutputDigest != "" {
				return s.copyStored(ctx, b.OutputDigest, offset, w, flush)
			}
			return nil
		}
		if r := s.pendingReason(buildID); r != saidPending {
			saidPending = r
			if r != "" {
				fmt.Fprintf(w, "       Waiting for a node to build on: %s\n", r)
				if flush != nil {
					flush()
				}
			}
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_ = ws.WatchCtx(wctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

func orTime(t *time.Time) *time.Time {
	if t == nil {
		z := time.Now()
		return &z
	}
	return t
}

// pendingReason is why a build's dyno waits for a node ("" if it does not).
func (s *Service) pendingReason(id string) string {
	snap := s.cfg.Snap()
	b, ok := snap.Build(id)
	if !ok || b.OutputNode != "" || b.DynoID == "" {
		return ""
	}
	if d, ok := snap.DynoByID(b.DynoID); ok && d.Node == "" {
		return d.PendingReason
	}
	return ""
}

// buildGone reports whether a build ended more than a grace period ago (so a
// follower of an output that will never be closed stops).
func (s *Service) buildGone(id string) bool {
	b, ok := s.cfg.Snap().Build(id)
	if !ok {
		return true
	}
	return b.Status != fsm.BuildPending && b.FinishedAt != nil && s.cfg.Now().Sub(*b.FinishedAt) > 15*time.Second
}

// followUntil is follow, ending early (nil error, output not closed) once
// stop says so; stop is polled every second.
func (b *outputBuf) followUntil(ctx context.Context, offset int, w io.Writer, flush func(), stop func() bool) (int, error) {
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-fctx.Done():
				return
			case <-t.C:
				if stop() {
					cancel()
					return
				}
			}
		}
	}()
	n, err := b.follow(fctx, offset, w, flush)
	if err != nil && ctx.Err() == nil && fctx.Err() != nil {
		return n, nil
	}
	return n, err
}

// followRemote streams the output kept by another node.
func (s *Service) followRemote(ctx context.Context, b *fsm.Build, offset int, w io.Writer, flush func()) (int, bool, error) {
	if s.cfg.Cluster == nil {
		return offset, false, errors.New("no cluster")
	}
	addr, ok := s.cfg.Cluster.RPCAddr(b.OutputNode)
	if !ok {
		return offset, false, fmt.Errorf("node %s is not known", b.OutputNode)
	}
	resp, err := s.cfg.Cluster.RPCRequest(ctx, http.MethodGet, addr, rpcOutputPrefix+b.ID+"?offset="+strconv.Itoa(offset), nil)
	if err != nil {
		return offset, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return offset, false, fmt.Errorf("node %s answered %s", b.OutputNode, resp.Status)
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return offset, false, werr
			}
			offset += n
			if flush != nil {
				flush()
			}
		}
		if err == io.EOF {
			return offset, resp.Trailer.Get(trailerComplete) == "1", nil
		}
		if err != nil {
			return offset, false, err
		}
	}
}

// copyStored writes a stored output from offset.
func (s *Service) copyStored(ctx context.Context, digest string, offset int, w io.Writer, flush func()) error {
	rc, _, err := s.cfg.Blobs.Open(ctx, digest)
	if err != nil {
		return fmt.Errorf("opening the build output: %w", err)
	}
	defer rc.Close()
	if offset > 0 {
		if _, err := io.CopyN(io.Discard, rc, int64(offset)); err != nil {
			return nil
		}
	}
	_, err = io.Copy(w, rc)
	if flush != nil {
		flush()
	}
	return err
}
