package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/hashicorp/raft"
)

// maxCommand bounds a command's encoded size.
const maxCommand = 2 << 20

// forwardAttemptTimeout bounds one forwarded apply or read index (the hold
// timeout bounds all of them).
const forwardAttemptTimeout = 3 * time.Second

// leaderPoll is how often a request waiting on the leader checks whether
// this node has learned of another one.
const leaderPoll = 50 * time.Millisecond

// attemptCtx bounds one request to the leader at addr: forwardAttemptTimeout,
// or until this node learns of a different leader (the one at addr is then
// gone or deposed, and waiting for its answer only delays the retry).
func (n *Node) attemptCtx(ctx context.Context, addr string) (context.Context, context.CancelFunc) {
	rctx, cancel := context.WithTimeout(ctx, forwardAttemptTimeout)
	_, leader := n.raft.LeaderWithID()
	go func() {
		t := time.NewTicker(leaderPoll)
		defer t.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-t.C:
				// Raft's own leader id: cheap to read, unlike the
				// gossip lookup of its address.
				if _, id := n.raft.LeaderWithID(); id != "" && id != leader {
					n.log.Debug("leader changed while a request to the old one was pending; retrying", "old", addr, "new", id)
					cancel()
					return
				}
			}
		}
	}()
	return rctx, cancel
}

// ErrNoLeader means no leader could be reached within the hold timeout: an
// election is in progress, or this node is cut off from a quorum. Nothing
// was applied by this attempt (a retry with the same command id is safe).
var ErrNoLeader = errors.New("no cluster leader is reachable (an election may be in progress, or this node is cut off from a quorum); retry shortly")

// Apply replicates cmd through Raft: on the leader directly, elsewhere by
// forwarding it to the leader over internal RPC. It retries through leader
// changes until the hold timeout, so the command may be submitted more than
// once; the FSM must treat commands idempotently (Slipway's does, by command
// id). It returns the log index and the FSM's response encoded as JSON.
func (n *Node) Apply(ctx context.Context, cmd []byte) (uint64, json.RawMessage, error) {
	if len(cmd) > maxCommand {
		return 0, nil, fmt.Errorf("command of %d bytes exceeds the limit of %d", len(cmd), maxCommand)
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.HoldTimeout)
	defer cancel()
	backoff := 25 * time.Millisecond
	var last error
	for {
		var idx uint64
		var resp json.RawMessage
		var err error
		if n.IsLeader() {
			idx, resp, err = n.applyLocal(cmd)
		} else {
			idx, resp, err = n.forward(ctx, cmd)
		}
		if err == nil {
			return idx, resp, nil
		}
		if !isRetryable(err) {
			return 0, nil, err
		}
		last = err
		select {
		case <-ctx.Done():
			n.log.Warn("write failed: no leader within hold timeout", "last_err", last)
			return 0, nil, fmt.Errorf("%w (last error: %v)", ErrNoLeader, last)
		case <-n.ctx.Done():
			return 0, nil, fmt.Errorf("%w: node is shutting down", ErrNoLeader)
		case <-time.After(backoff):
		}
		if backoff < 500*time.Millisecond {
			backoff *= 2
		}
	}
}

type retryableError struct{ err error }

func (e retryableError) Error() string { return e.err.Error() }
func (e retryableError) Unwrap() error { return e.err }

func isRetryable(err error) bool {
	if err == nil {
		return false
	}
	var r retryableError
	return errors.As(err, &r) || errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) ||
		errors.Is(err, raft.ErrLeadershipTransferInProgress) || errors.Is(err, raft.ErrEnqueueTimeout)
}

func (n *Node) applyLocal(cmd []byte) (uint64, json.RawMessage, error) {
	start := time.Now()
	f := n.raft.Apply(cmd, n.cfg.HoldTimeout)
	if err := f.Error(); err != nil {
		return 0, nil, fmt.Errorf("raft apply: %w", err)
	}
	measureApply(start)
	resp, err := json.Marshal(f.Response())
	if err != nil {
		return 0, nil, fmt.Errorf("encoding FSM response: %w", err)
	}
	return f.Index(), resp, nil
}

func (n *Node) leaderRPCAddr() (string, error) {
	_, id := n.raft.LeaderWithID()
	if id == "" {
		return "", retryableError{errors.New("no leader known")}
	}
	addr, ok := n.RPCAddr(string(id))
	if !ok {
		return "", retryableError{fmt.Errorf("leader %s is not in gossip", id)}
	}
	return addr, nil
}

func (n *Node) forward(ctx context.Context, cmd []byte) (uint64, json.RawMessage, error) {
	addr, err := n.leaderRPCAddr()
	if err != nil {
		return 0, nil, err
	}
	// Each attempt gets a short deadline, and ends as soon as this node
	// learns of another leader: a leader that vanished (its address went
	// dark) must not eat the whole hold timeout. A command that was
	// applied but answered late is deduplicated on retry (command ids).
	rctx, cancel := n.attemptCtx(ctx, addr)
	defer cancel()
	resp, err := n.RPCRequest(rctx, http.MethodPost, addr, rpcApply, bytes.NewReader(cmd))
	if err != nil {
		return 0, nil, retryableError{err}
	}
	defer resp.Body.Close()
	var ar applyResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&ar); err != nil {
		return 0, nil, retryableError{fmt.Errorf("reading forwarded apply response: %w", err)}
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		return ar.Index, ar.Response, nil
	case resp.StatusCode == http.StatusServiceUnavailable:
		return 0, nil, retryableError{fmt.Errorf("node %s is no longer leader", addr)}
	default:
		return 0, nil, fmt.Errorf("forwarded apply failed: %s: %s", resp.Status, ar.Error)
	}
}

// ReadIndex returns an index that, once applied locally, makes a read
// linearizable: the leader confirms it still leads and reports its commit
// index.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.HoldTimeout)
	defer cancel()
	for {
		var idx uint64
		var err error
		if n.IsLeader() {
			idx, err = n.localReadIndex()
		} else {
			var addr string
			if addr, err = n.leaderRPCAddr(); err == nil {
				var ar applyResponse
				actx, cancel := n.attemptCtx(ctx, addr)
				if err = n.rpcJSON(actx, addr, rpcReadIndex, &ar); err == nil {
					idx = ar.Index
				}
				cancel()
			}
		}
		if err == nil {
			return idx, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%w (last error: %v)", ErrNoLeader, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// localReadIndex is the leader's side of ReadIndex: confirm leadership with
// a quorum, and only once an entry of the current term has been committed
// (before that, a new leader's commit index can lag writes that a previous
// leader acknowledged).
func (n *Node) localReadIndex() (uint64, error) {
	if !n.readsReady.Load() {
		return 0, retryableError{errors.New("the new leader has not committed an entry of its term yet")}
	}
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return 0, retryableError{fmt.Errorf("verifying leadership: %w", err)}
	}
	if !n.readsReady.Load() {
		return 0, retryableError{errors.New("leadership changed during the read")}
	}
	return n.raft.CommitIndex(), nil
}

// WaitForLinearizable blocks until the local state includes every write
// committed before the call.
func (n *Node) WaitForLinearizable(ctx context.Context) error {
	idx, err := n.ReadIndex(ctx)
	if err != nil {
		return err
	}
	return n.waitFSM(ctx, idx)
}

// waitFSM waits until the local FSM reflects every command at or below idx.
// Raft's own applied index is not enough: it advances when entries are
// handed to the FSM goroutine, before the FSM has applied them; and the
// entries the FSM never sees (no-ops, configuration changes) must not be
// waited for.
func (n *Node) waitFSM(ctx context.Context, idx uint64) error {
	for {
		if n.raft.AppliedIndex() >= idx {
			fa := n.fsm.AppliedIndex()
			if fa >= idx || n.noCommandsBetween(fa+1, idx) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for index %d (FSM at %d): %w", idx, n.fsm.AppliedIndex(), ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// noCommandsBetween reports whether the log holds no command entries in
// [from, to]. Unreadable (compacted) entries count as commands: the caller
// keeps waiting, and the FSM catches up from the snapshot that covers them.
func (n *Node) noCommandsBetween(from, to uint64) bool {
	if to-from > 1024 {
		return false
	}
	for i := from; i <= to; i++ {
		var l raft.Log
		if err := n.store.GetLog(i, &l); err != nil || l.Type == raft.LogCommand {
			return false
		}
	}
	return true
}
