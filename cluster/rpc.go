package cluster

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
)

// RPC paths served on every node's internal port.
const (
	rpcPrefix    = "/internal/v1/"
	rpcApply     = rpcPrefix + "apply"
	rpcStatus    = rpcPrefix + "status"
	rpcStats     = rpcPrefix + "stats"
	rpcReadIndex = rpcPrefix + "read-index"
	rpcAuthHdr   = "X-Slipway-Cluster-Token"
)

func (n *Node) startRPC() error {
	c := n.cfg
	ln, err := c.Network.Listen(c.bind(c.RPCPort))
	if err != nil {
		return fmt.Errorf("internal RPC listener on %s: %w", c.bind(c.RPCPort), err)
	}
	n.rpcLn = ln
	n.rpcMux.HandleFunc("POST "+rpcApply, n.handleApply)
	n.rpcMux.HandleFunc("GET "+rpcStatus, n.handleStatus)
	n.rpcMux.HandleFunc("GET "+rpcStats, n.handleStats)
	n.rpcMux.HandleFunc("GET "+rpcReadIndex, n.handleReadIndex)
	n.rpcServer = &http.Server{Handler: n.authenticate(n.rpcMux), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	n.rpcClient = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			// A dark address must fail fast; peers answer in milliseconds.
			ctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			return c.Network.Dial(ctx, addr)
		},
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.rpcServer.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("internal RPC server stopped", "err", err)
		}
	}()
	return nil
}

func (n *Node) authenticate(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.rpcToken != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get(rpcAuthHdr)), []byte(n.rpcToken)) != 1 {
			http.Error(w, "bad cluster token", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// HandleRPC mounts an internal RPC handler (for other packages: blobs, log
// fan-out, ...). Patterns are net/http ServeMux patterns under /internal/.
func (n *Node) HandleRPC(pattern string, h http.Handler) { n.rpcMux.Handle(pattern, h) }

// RPCRequest sends an authenticated internal request to another node's RPC
// address (host:port).
func (n *Node) RPCRequest(ctx context.Context, method, addr, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, body)
	if err != nil {
		return nil, fmt.Errorf("internal request: %w", err)
	}
	if n.rpcToken != "" {
		req.Header.Set(rpcAuthHdr, n.rpcToken)
	}
	resp, err := n.rpcClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("internal request to %s: %w", addr, err)
	}
	return resp, nil
}

// RPCAddr returns a region member's internal RPC address.
func (n *Node) RPCAddr(name string) (string, bool) {
	if name == n.cfg.NodeName {
		return n.cfg.addr(n.cfg.RPCPort), true
	}
	for _, m := range n.lan.members() {
		if m.Name == name && m.State != StateDead && m.State != StateLeft {
			return m.Meta.RPC, m.Meta.RPC != ""
		}
	}
	return "", false
}

func (n *Node) rpcJSON(ctx context.Context, addr, path string, out any) error {
	resp, err := n.RPCRequest(ctx, http.MethodGet, addr, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s on %s: %s: %s", path, addr, resp.Status, bytes.TrimSpace(b))
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s on %s: decoding: %w", path, addr, err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// applyResponse is the body of a forwarded apply.
type applyResponse struct {
	Index    uint64          `json:"index"`
	Response json.RawMessage `json:"response,omitempty"`
	Error    string          `json:"error,omitempty"`
	Leader   string          `json:"leader,omitempty"`
}

const errNotLeader = "not_leader"

func (n *Node) handleApply(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxCommand+1))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, applyResponse{Error: err.Error()})
		return
	}
	if len(body) > maxCommand {
		writeJSON(w, http.StatusRequestEntityTooLarge, applyResponse{Error: "command too large"})
		return
	}
	if !n.IsLeader() {
		writeJSON(w, http.StatusServiceUnavailable, applyResponse{Error: errNotLeader, Leader: n.Leader()})
		return
	}
	idx, resp, err := n.applyLocal(body)
	switch {
	case isRetryable(err):
		writeJSON(w, http.StatusServiceUnavailable, applyResponse{Error: errNotLeader, Leader: n.Leader()})
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, applyResponse{Error: err.Error()})
	default:
		writeJSON(w, http.StatusOK, applyResponse{Index: idx, Response: resp})
	}
}

// nodeStatus is what a node reports about itself to peers.
type nodeStatus struct {
	Name         string `json:"name"`
	Region       string `json:"region"`
	HasState     bool   `json:"has_state"`
	State        string `json:"state"`
	Leader       string `json:"leader"`
	Term         uint64 `json:"term"`
	LastIndex    uint64 `json:"last_index"`
	AppliedIndex uint64 `json:"applied_index"`
}

func (n *Node) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, nodeStatus{Name: n.cfg.NodeName, Region: n.cfg.Region, HasState: n.hasRaftState(),
		State: n.raft.State().String(), Leader: n.Leader(), Term: n.raft.CurrentTerm(),
		LastIndex: n.raft.LastIndex(), AppliedIndex: n.raft.AppliedIndex()})
}

// serverStats is what autopilot needs from each server.
type serverStats struct {
	LastContactNanos int64  `json:"last_contact_ns"` // -1: never
	LastTerm         uint64 `json:"last_term"`
	LastIndex        uint64 `json:"last_index"`
}

func (n *Node) localStats() serverStats {
	st := n.raft.Stats()
	s := serverStats{LastIndex: n.raft.LastIndex()}
	s.LastTerm, _ = strconv.ParseUint(st["last_log_term"], 10, 64)
	switch lc := st["last_contact"]; lc {
	case "never":
		s.LastContactNanos = -1
	case "0":
	default:
		if d, err := time.ParseDuration(lc); err == nil {
			s.LastContactNanos = int64(d)
		}
	}
	if n.raft.State() == raft.Leader {
		s.LastContactNanos = 0
	}
	return s
}

func (n *Node) handleStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.localStats())
}

func (n *Node) handleReadIndex(w http.ResponseWriter, r *http.Request) {
	if !n.IsLeader() {
		writeJSON(w, http.StatusServiceUnavailable, applyResponse{Error: errNotLeader, Leader: n.Leader()})
		return
	}
	idx, err := n.localReadIndex()
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, applyResponse{Error: errNotLeader})
		return
	}
	writeJSON(w, http.StatusOK, applyResponse{Index: idx})
}
