package fsm

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
)

// requestTTL is how long a command's result is remembered for retries.
const requestTTL = time.Hour

// FSM is the replicated state machine. It implements raft.FSM: Raft calls
// Apply and Restore from one goroutine; Snapshot and all readers may run
// concurrently with them.
type FSM struct {
	log *slog.Logger

	db      atomic.Pointer[memdb.MemDB]
	applied atomic.Uint64

	mu       sync.Mutex
	restored chan struct{} // closed when a restore replaces the state
	progress chan struct{} // closed (and replaced) after every apply
}

var _ raft.FSM = (*FSM)(nil)

// New returns an empty state machine.
func New(log *slog.Logger) (*FSM, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	db, err := newDB()
	if err != nil {
		return nil, err
	}
	f := &FSM{log: log, restored: make(chan struct{}), progress: make(chan struct{})}
	f.db.Store(db)
	return f, nil
}

// Snap returns a consistent read view of the current state.
func (f *FSM) Snap() *Snap {
	f.mu.Lock()
	restore := f.restored
	f.mu.Unlock()
	return &Snap{tx: f.db.Load().Txn(false), index: f.applied.Load(), restore: restore}
}

// AppliedIndex is the index of the last applied log entry.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// WaitForIndex blocks until the state reflects index, or ctx ends.
func (f *FSM) WaitForIndex(ctx context.Context, index uint64) error {
	for {
		f.mu.Lock()
		ch := f.progress
		f.mu.Unlock()
		if f.applied.Load() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("fsm: waiting for index %d (at %d): %w", index, f.applied.Load(), ctx.Err())
		}
	}
}

func (f *FSM) advance(index uint64) {
	if index > f.applied.Load() {
		f.applied.Store(index)
	}
	f.mu.Lock()
	close(f.progress)
	f.progress = make(chan struct{})
	f.mu.Unlock()
}

// Apply applies one Raft log entry. It always returns a *Result.
func (f *FSM) Apply(l *raft.Log) any {
	defer f.advance(l.Index)
	if l.Type != raft.LogCommand {
		return &Result{Index: l.Index}
	}
	return f.ApplyCommand(l.Index, l.Data)
}

// ApplyCommand applies an encoded command at the given index. Exposed for
// tests and fuzzing; Raft goes through Apply.
func (f *FSM) ApplyCommand(index uint64, data []byte) (res *Result) {
	cmd, err := DecodeCommand(data)
	if err != nil {
		e, _ := AsError(err)
		f.log.Error("fsm: rejected undecodable log entry", "index", index, "err", err)
		return &Result{Index: index, Err: e}
	}
	db := f.db.Load()

	// A command seen before returns its first result.
	if raw, _ := db.Txn(false).First(tRequests, indexID, cmd.ID); raw != nil {
		var prev Result
		if json.Unmarshal(raw.(*request).Result, &prev) == nil {
			return &prev
		}
	}

	tx := db.Txn(true)
	defer tx.Abort()
	value, cerr := f.dispatch(tx, &cmd)
	res = &Result{Index: index}
	if cerr != nil {
		tx.Abort()
		tx = db.Txn(true)
		res.Err = cerr
	} else if value != nil {
		b, err := json.Marshal(value)
		if err != nil {
			tx.Abort()
			tx = db.Txn(true)
			res.Err = Errorf("internal", "encoding result: %v", err)
		} else {
			res.Value = b
		}
	}
	rememberRequest(tx, &cmd, res)
	tx.Commit()
	return res
}

func rememberRequest(tx *memdb.Txn, cmd *Command, res *Result) {
	b, _ := json.Marshal(res)
	_ = tx.Insert(tRequests, &request{ID: cmd.ID, AtUnix: cmd.At.Unix(), Result: b})
	// Forget results older than the TTL (by the proposers' clocks, so every
	// node forgets the same ones).
	cutoff := cmd.At.Add(-requestTTL).Unix()
	it, err := tx.LowerBound(tRequests, "at", int64(-1<<62))
	if err != nil {
		return
	}
	var old []any
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if raw.(*request).AtUnix >= cutoff {
			break
		}
		old = append(old, raw)
		if len(old) >= 256 {
			break
		}
	}
	for _, o := range old {
		_ = tx.Delete(tRequests, o)
	}
}

type handler func(f *FSM, tx *memdb.Txn, c *Command) (any, *Error)

func handlerFor(typ string) handler {
	switch typ {
	case CmdAppCreate:
		return applyAppCreate
	case CmdAppUpdate:
		return applyAppUpdate
	case CmdAppDelete:
		return applyAppDelete
	case CmdConfigUpdate:
		return applyConfigUpdate
	case CmdSlugCreate:
		return applySlugCreate
	case CmdSlugUploaded:
		return applySlugUploaded
	case CmdReleaseCreate:
		return applyReleaseCreate
	case CmdReleaseRollback:
		return applyReleaseRollback
	case CmdFormationUpdate:
		return applyFormationUpdate
	case CmdDomainCreate:
		return applyDomainCreate
	case CmdDomainDelete:
		return applyDomainDelete
	case CmdFeatureSet:
		return applyFeatureSet
	case CmdUserCreate:
		return applyUserCreate
	case CmdTokenCreate:
		return applyTokenCreate
	case CmdTokenDelete:
		return applyTokenDelete
	case CmdNodeUpsert:
		return applyNodeUpsert
	case CmdNodeDrain:
		return applyNodeDrain
	case CmdMetaSet:
		return applyMetaSet
	case CmdAdminBootstrap:
		return applyAdminBootstrap
	}
	for _, more := range []func(string) handler{dynoHandler, blobHandler, drainHandler, certHandler, buildHandler} {
		if h := more(typ); h != nil {
			return h
		}
	}
	return nil
}

// Known reports whether this binary can apply a command type.
func Known(typ string) bool { return handlerFor(typ) != nil }

func (f *FSM) dispatch(tx *memdb.Txn, c *Command) (v any, e *Error) {
	h := handlerFor(c.Type)
	if h == nil {
		f.log.Error("fsm: unknown command type", "type", c.Type, "id", c.ID)
		return nil, Errorf(CodeBadRequest, "unknown command type %q", c.Type)
	}
	defer func() {
		if r := recover(); r != nil {
			f.log.Error("fsm: command panicked", "type", c.Type, "id", c.ID, "panic", r)
			v, e = nil, Errorf("internal", "command %s failed", c.Type)
		}
	}()
	return h(f, tx, c)
}

func decodeData[T any](c *Command) (*T, *Error) {
	v := new(T)
	if err := json.Unmarshal(c.Data, v); err != nil {
		return nil, Errorf(CodeBadRequest, "malformed %s payload: %v", c.Type, err)
	}
	return v, nil
}

var _ raft.ConfigurationStore = (*FSM)(nil)

// StoreConfiguration implements raft.ConfigurationStore. Raft membership is
// not part of Slipway's state, but counting configuration entries as
// applied keeps the applied index (and so snapshots and linearizable reads)
// moving past them.
func (f *FSM) StoreConfiguration(index uint64, _ raft.Configuration) { f.advance(index) }
