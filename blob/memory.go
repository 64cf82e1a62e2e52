package blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/slipwayhq/slipway/fsm"
)

// Memory is an in-memory stand-in for a Store (Put, Open, Has) in tests of
// code that stores or reads blobs. It keeps whole blobs in RAM.
type Memory struct {
	// Node and Zone name the single "replica" Put reports.
	Node, Zone string

	mu    sync.Mutex
	blobs map[string][]byte
}

// NewMemory returns an empty Memory.
func NewMemory() *Memory { return &Memory{Node: "memory", Zone: "memory", blobs: map[string][]byte{}} }

// Put reads r to the end and keeps it, like Store.Put.
func (m *Memory) Put(ctx context.Context, kind string, r io.Reader, want string) (*Stored, error) {
	if want != "" {
		if e := fsm.ValidDigest(want); e != nil {
			return nil, fmt.Errorf("storing blob: %w", e)
		}
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, r); err != nil {
		return nil, fmt.Errorf("storing blob: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(buf.Bytes())
	digest := "sha256:" + hex.EncodeToString(sum[:])
	if want != "" && want != digest {
		return nil, &MismatchError{Want: want, Got: digest}
	}
	m.mu.Lock()
	m.blobs[digest] = buf.Bytes()
	m.mu.Unlock()
	now := time.Now().UTC()
	return &Stored{Blob: fsm.Blob{Digest: digest, Size: int64(buf.Len()), Kind: kind, Replicas: []string{m.Node}, CreatedAt: now, UpdatedAt: now},
		Zones: []string{m.Zone}}, nil
}

// Open returns a stored blob.
func (m *Memory) Open(_ context.Context, digest string) (io.ReadCloser, int64, error) {
	m.mu.Lock()
	b, ok := m.blobs[digest]
	m.mu.Unlock()
	if !ok {
		return nil, 0, fmt.Errorf("%w: %s", ErrNotFound, digest)
	}
	return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
}

// Has reports whether a blob is stored.
func (m *Memory) Has(digest string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.blobs[digest]
	return ok
}

// Digests lists the stored blobs.
func (m *Memory) Digests() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.blobs))
	for d := range m.blobs {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}
