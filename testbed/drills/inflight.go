package drills

import (
	"sync"
	"time"
)

// inflight tracks requests under way: how many per node, and when the
// oldest began (a request stuck for seconds is an outage not over yet).
type inflight struct {
	mu     sync.Mutex
	next   int64
	byNode map[string]int
	starts map[int64]time.Time
}

func (f *inflight) begin(node string, at time.Time) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byNode == nil {
		f.byNode, f.starts = map[string]int{}, map[int64]time.Time{}
	}
	f.next++
	f.byNode[node]++
	f.starts[f.next] = at
	return f.next
}

func (f *inflight) end(id int64, node string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.byNode[node]--
	delete(f.starts, id)
}

// count is how many requests to node are under way.
func (f *inflight) count(node string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.byNode[node]
}

// oldestSince is when the oldest request under way that began at or
// after since began.
func (f *inflight) oldestSince(since time.Time) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var t time.Time
	found := false
	for _, s := range f.starts {
		if s.Before(since) {
			continue
		}
		if !found || s.Before(t) {
			t, found = s, true
		}
	}
	return t, found
}
