package scheduler

import (
	"testing"
	"time"

	"github.com/slipwayhq/slipway/cluster"
	"github.com/slipwayhq/slipway/fsm"
)

// A node that left gossip gracefully (an agent restart) keeps its dynos for
// LeftGrace; a failed node's dynos move at once.
func TestNodesLeftGrace(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	members := []cluster.Member{
		{Name: "alive", State: cluster.StateAlive, Meta: cluster.Meta{Region: "r", Zone: "a"}},
		{Name: "suspect", State: cluster.StateSuspect, Meta: cluster.Meta{Region: "r", Zone: "a"}},
		{Name: "left-now", State: cluster.StateLeft, Since: now.Add(-10 * time.Second), Meta: cluster.Meta{Region: "r", Zone: "b"}},
		{Name: "left-long-ago", State: cluster.StateLeft, Since: now.Add(-2 * time.Minute), Meta: cluster.Meta{Region: "r", Zone: "b"}},
		{Name: "failed-now", State: cluster.StateDead, Since: now.Add(-time.Second), Meta: cluster.Meta{Region: "r", Zone: "c"}},
		{Name: "elsewhere", State: cluster.StateAlive, Meta: cluster.Meta{Region: "other", Zone: "a"}},
	}
	cfg := DefaultConfig()
	if cfg.LeftGrace != time.Minute {
		t.Fatalf("default LeftGrace = %s, want 1m", cfg.LeftGrace)
	}
	f, err := fsm.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Deps{Members: func() []cluster.Member { return members }, Region: "r", Clock: func() time.Time { return now }}, cfg)
	got := map[string]NodeState{}
	for _, n := range s.Nodes(f.Snap(), now.Add(-time.Hour)) {
		got[n.Name] = n.State
	}
	want := map[string]NodeState{"alive": NodeAlive, "suspect": NodeAlive, "left-now": NodeUnknown,
		"left-long-ago": NodeDead, "failed-now": NodeDead}
	if len(got) != len(want) {
		t.Fatalf("nodes = %v, want %v", got, want)
	}
	for name, st := range want {
		if got[name] != st {
			t.Errorf("%s: state %d, want %d", name, got[name], st)
		}
	}
}
