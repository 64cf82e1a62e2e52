package fsm

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"

	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
)

// snapshotFormat identifies the snapshot encoding. Version 1: a header line
// then one line per record: {"t": table, "o": record}.
const (
	snapshotFormat  = "slipway-fsm"
	snapshotVersion = 1
)

type snapHeader struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	Index   uint64 `json:"index"`
}

type snapRecord struct {
	T string          `json:"t"`
	O json.RawMessage `json:"o"`
}

type fsmSnapshot struct {
	tx    *memdb.Txn
	index uint64
}

// Snapshot captures the current state cheaply (memdb is immutable); the
// encoding happens in Persist, concurrently with further applies.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{tx: f.db.Load().Txn(false), index: f.applied.Load()}, nil
}

// Persist streams the snapshot to the sink.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.write(sink); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) write(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(snapHeader{Format: snapshotFormat, Version: snapshotVersion, Index: s.index}); err != nil {
		return fmt.Errorf("fsm: writing snapshot header: %w", err)
	}
	names := TableNames()
	sort.Strings(names)
	for _, t := range names {
		it, err := s.tx.Get(t, indexID)
		if err != nil {
			return fmt.Errorf("fsm: snapshot of %s: %w", t, err)
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			b, err := json.Marshal(raw)
			if err != nil {
				return fmt.Errorf("fsm: encoding %s record: %w", t, err)
			}
			if err := enc.Encode(snapRecord{T: t, O: b}); err != nil {
				return fmt.Errorf("fsm: writing snapshot: %w", err)
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("fsm: writing snapshot: %w", err)
	}
	return nil
}

// Release is a no-op: the memdb transaction holds no resources.
func (s *fsmSnapshot) Release() {}

// Restore replaces the whole state with a snapshot. Unknown tables and
// fields are skipped, so snapshots move between binary versions.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	db, index, err := f.decodeSnapshot(rc)
	if err != nil {
		return err
	}
	f.db.Store(db)
	f.mu.Lock()
	close(f.restored)
	f.restored = make(chan struct{})
	f.mu.Unlock()
	f.applied.Store(index)
	f.advance(index)
	return nil
}

func (f *FSM) decodeSnapshot(r io.Reader) (*memdb.MemDB, uint64, error) {
	db, err := newDB()
	if err != nil {
		return nil, 0, err
	}
	dec := json.NewDecoder(bufio.NewReaderSize(r, 64<<10))
	var h snapHeader
	if err := dec.Decode(&h); err != nil {
		return nil, 0, fmt.Errorf("fsm: reading snapshot header: %w", err)
	}
	if h.Format != snapshotFormat {
		return nil, 0, fmt.Errorf("fsm: not a slipway snapshot (format %q)", h.Format)
	}
	if h.Version > snapshotVersion {
		return nil, 0, fmt.Errorf("fsm: snapshot version %d is newer than this binary understands (%d)", h.Version, snapshotVersion)
	}
	defs := tables()
	tx := db.Txn(true)
	defer tx.Abort()
	skipped := map[string]int{}
	for {
		var rec snapRecord
		if err := dec.Decode(&rec); err == io.EOF {
			break
		} else if err != nil {
			return nil, 0, fmt.Errorf("fsm: reading snapshot: %w", err)
		}
		def, ok := defs[rec.T]
		if !ok {
			skipped[rec.T]++
			continue
		}
		obj, err := def.decode(rec.O)
		if err != nil {
			return nil, 0, fmt.Errorf("fsm: decoding %s record: %w", rec.T, err)
		}
		if err := tx.Insert(rec.T, obj); err != nil {
			return nil, 0, fmt.Errorf("fsm: restoring %s record: %w", rec.T, err)
		}
	}
	tx.Commit()
	for t, n := range skipped {
		f.log.Warn("fsm: snapshot has records of a table this binary does not know; skipped", "table", t, "records", n)
	}
	return db, h.Index, nil
}
