package deploy

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// DefaultMaxOutputBytes bounds the output kept of one build.
const DefaultMaxOutputBytes = 8 << 20

// outputHub keeps the live output of the builds whose compiler streams to
// this node, for followers here and on other nodes.
type outputHub struct {
	max int
	mu  sync.Mutex
	m   map[string]*outputBuf
}

func newOutputHub(max int) *outputHub {
	if max <= 0 {
		max = DefaultMaxOutputBytes
	}
	return &outputHub{max: max, m: map[string]*outputBuf{}}
}

// get returns a build's buffer, creating it if asked.
func (h *outputHub) get(id string, create bool) *outputBuf {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	for k, b := range h.m {
		if b.expired(now) {
			delete(h.m, k)
		}
	}
	b := h.m[id]
	if b == nil && create {
		b = &outputBuf{max: h.max, changed: make(chan struct{})}
		h.m[id] = b
	}
	return b
}

// outputBuf is one build's output: append-only until closed.
type outputBuf struct {
	max       int
	mu        sync.Mutex
	data      []byte
	closed    bool
	closedAt  time.Time
	truncated bool
	changed   chan struct{}
}

func (b *outputBuf) expired(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed && now.Sub(b.closedAt) > 10*time.Minute
}

// Write appends output (dropping what exceeds the limit, once noted).
func (b *outputBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return len(p), nil
	}
	room := b.max - len(b.data)
	switch {
	case room >= len(p):
		b.data = append(b.data, p...)
	case !b.truncated:
		b.truncated = true
		if room > 0 {
			b.data = append(b.data, p[:room]...)
		}
		b.data = append(b.data, fmt.Sprintf("\n !     Build output truncated at %s.\n", humanSize(int64(b.max)))...)
	}
	close(b.changed)
	b.changed = make(chan struct{})
	return len(p), nil
}

// Close ends the output.
func (b *outputBuf) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed, b.closedAt = true, time.Now()
		close(b.changed)
	}
}

// Bytes returns the output so far and whether it has ended.
func (b *outputBuf) Bytes() ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.data, b.closed
}

// follow copies the output from offset to w as it grows (flushing after
// each write) until it ends or ctx does; it returns the offset reached.
func (b *outputBuf) follow(ctx context.Context, offset int, w io.Writer, flush func()) (int, error) {
	for {
		b.mu.Lock()
		data, closed, ch := b.data, b.closed, b.changed
		b.mu.Unlock()
		if offset < len(data) {
			n, err := w.Write(data[offset:])
			offset += n
			if err != nil {
				return offset, err
			}
			if flush != nil {
				flush()
			}
			continue
		}
		if closed {
			return offset, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return offset, ctx.Err()
		}
	}
}
