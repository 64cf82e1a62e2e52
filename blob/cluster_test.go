package blob

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/slipwayhq/slipway/cluster"
	"github.com/slipwayhq/slipway/cluster/clustertest"
	"github.com/slipwayhq/slipway/fsm"
)

// nodeState is State for a real cluster node: writes go through Raft (to
// the leader) and return once the local replica has applied them, as in
// the agent.
type nodeState struct {
	n *cluster.Node
	f *fsm.FSM
}

func (s nodeState) Snap() *fsm.Snap { return s.f.Snap() }

func (s nodeState) Submit(ctx context.Context, cmd fsm.Command) (*fsm.Result, error) {
	b, err := cmd.Encode()
	if err != nil {
		return nil, err
	}
	idx, raw, err := s.n.Apply(ctx, b)
	if err != nil {
		return nil, err
	}
	var res fsm.Result
	if err := json.Unmarshal(raw, &res); err != nil {
		return nil, fmt.Errorf("decoding result: %w", err)
	}
	if res.Index == 0 {
		res.Index = idx
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.f.WaitForIndex(wctx, res.Index); err != nil {
		return nil, err
	}
	return &res, nil
}

// memCluster is a clustertest harness with a blob store on every node.
type memCluster struct {
	h      *clustertest.Harness
	clock  *fakeClock
	stores map[string]*Store
	cancel map[string]context.CancelFunc
}

func newMemCluster(t *testing.T, zones ...string) *memCluster {
	c := &memCluster{h: clustertest.New(t, clustertest.Options{}), clock: &fakeClock{now: time.Now()},
		stores: map[string]*Store{}, cancel: map[string]context.CancelFunc{}}
	for i, z := range zones {
		name := fmt.Sprintf("n%d", i+1)
		m := c.h.Start(name, z, len(zones))
		s, err := New(Config{Dir: m.Dir + "/blobs", GCGrace: time.Hour, GCInterval: 200 * time.Millisecond,
			RepairInterval: 300 * time.Millisecond, RepairDelay: 500 * time.Millisecond, MinFreeBytes: -1, Clock: c.clock,
			Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", name)},
			m.Node, nodeState{m.Node, m.FSM})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		go s.Run(ctx)
		t.Cleanup(cancel)
		c.stores[name], c.cancel[name] = s, cancel
	}
	c.h.Leader(30 * time.Second)
	return c
}

func (c *memCluster) kill(name string) {
	c.cancel[name]()
	c.h.Kill(name)
	delete(c.stores, name)
}

func (c *memCluster) holders(digest string) []string {
	var out []string
	for name, s := range c.stores {
		if s.Has(digest) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// reference makes a slug refer to a blob (so the collector keeps it).
func (c *memCluster) reference(t *testing.T, via string, digest string, size int64) {
	t.Helper()
	st := nodeState{c.h.Get(via).Node, c.h.Get(via).FSM}
	app := fsm.App{ID: uuid.NewString(), Name: "app-" + strings.ToLower(uuid.NewString()[:8]), Region: "test", Stack: fsm.DefaultStack}
	slug := uuid.NewString()
	for _, cmd := range []struct {
		typ  string
		data any
	}{
		{fsm.CmdAppCreate, fsm.AppCreate{App: app, ReleaseID: uuid.NewString(), DefaultDomainID: uuid.NewString(), DefaultHostname: app.Name + ".localhost"}},
		{fsm.CmdSlugCreate, fsm.SlugCreate{Slug: fsm.Slug{ID: slug, AppID: app.ID, ProcessTypes: map[string]string{"web": "x"}}}},
		{fsm.CmdSlugUploaded, fsm.SlugUploaded{SlugID: slug, Digest: digest, Size: size}},
	} {
		command, _ := fsm.NewCommand(cmd.typ, uuid.NewString(), time.Now(), "", cmd.data)
		res, err := st.Submit(context.Background(), command)
		if err != nil || res.Err != nil {
			t.Fatalf("%s: %v %v", cmd.typ, err, res)
		}
	}
}

func zoneOf(name string) string {
	return map[string]string{"n1": "a", "n2": "b", "n3": "c", "n4": "a"}[name]
}

// TestClusterPutRepairAndCollect runs a 3-zone in-process cluster (real
// Raft, gossip and internal RPC on an in-memory network): a put is on two
// zones when it returns, a remote replica serves Open, a dead node's copies
// are re-replicated, and unreferenced blobs are collected.
func TestClusterPutRepairAndCollect(t *testing.T) {
	c := newMemCluster(t, "a", "b", "c")
	ctx := context.Background()

	// 1. Put through a node; when it returns, the state (on that node) and
	// the disks already have copies in two zones.
	data := randomBytes(10, 2<<20)
	st, err := c.stores["n1"].Put(ctx, "slug", bytes.NewReader(data), digestOf(data))
	if err != nil {
		t.Fatal(err)
	}
	rec := mustBlob(t, c.h.Get("n1").FSM.Snap(), st.Digest)
	have := c.holders(st.Digest)
	if len(rec.Replicas) != 2 || strings.Join(rec.Replicas, ",") != strings.Join(have, ",") || zoneOf(have[0]) == zoneOf(have[1]) {
		t.Fatalf("record %v, files on %v", rec.Replicas, have)
	}
	c.reference(t, "n1", st.Digest, st.Size)

	// 2. Open on the node without a copy streams from a replica (and keeps
	// a recorded copy).
	var third string
	for _, n := range []string{"n1", "n2", "n3"} {
		if !slices.Contains(have, n) {
			third = n
		}
	}
	if got := readAll(t, c.stores[third], st.Digest); !bytes.Equal(got, data) {
		t.Fatal("remote read differs")
	}
	c.h.Eventually(10*time.Second, "the fetched copy recorded", func() error {
		if r := mustBlob(t, c.h.Get(third).FSM.Snap(), st.Digest).Replicas; !slices.Contains(r, third) {
			return fmt.Errorf("replicas %v", r)
		}
		return nil
	})

	// 3. A second blob on two nodes; kill one of them (not the leader):
	// once gossip declares it dead, the leader copies the blob to the
	// third node and drops the dead replica.
	data2 := randomBytes(11, 1<<20)
	st2, err := c.stores["n2"].Put(ctx, "slug", bytes.NewReader(data2), "")
	if err != nil {
		t.Fatal(err)
	}
	c.reference(t, "n2", st2.Digest, st2.Size)
	leader := c.h.Leader(10 * time.Second).Name
	var victim, spare string
	for _, n := range st2.Replicas {
		if n != leader {
			victim = n
		}
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		if !slices.Contains(st2.Replicas, n) {
			spare = n
		}
	}
	if victim == "" || spare == "" {
		t.Fatalf("replicas %v, leader %s", st2.Replicas, leader)
	}
	t.Logf("blob on %v; killing %s; expecting a copy on %s", st2.Replicas, victim, spare)
	c.kill(victim)
	c.h.Eventually(60*time.Second, "re-replication after the node died", func() error {
		r := mustBlob(t, c.h.Get(spare).FSM.Snap(), st2.Digest).Replicas
		if slices.Contains(r, victim) || !slices.Contains(r, spare) || len(r) != 2 {
			return fmt.Errorf("replicas %v", r)
		}
		return nil
	})
	if got := readAll(t, c.stores[spare], st2.Digest); !bytes.Equal(got, data2) {
		t.Fatal("repaired copy differs")
	}

	// 4. Garbage collection: an unreferenced blob goes once the grace has
	// passed (records and files); referenced ones stay.
	junk, err := c.stores[spare].Put(ctx, "slug", strings.NewReader("nobody needs me"), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.holders(junk.Digest)) != 2 {
		t.Fatalf("junk on %v", c.holders(junk.Digest))
	}
	c.h.Eventually(60*time.Second, "collection of the unreferenced blob", func() error {
		c.clock.Add(20 * time.Minute)
		if _, ok := c.h.Get(spare).FSM.Snap().Blob(junk.Digest); ok {
			return fmt.Errorf("record still there")
		}
		if h := c.holders(junk.Digest); len(h) != 0 {
			return fmt.Errorf("files still on %v", h)
		}
		return nil
	})
	snap := c.h.Get(spare).FSM.Snap()
	for _, d := range []string{st.Digest, st2.Digest} {
		if _, ok := snap.Blob(d); !ok {
			t.Fatalf("referenced blob %s was collected", d)
		}
		if len(c.holders(d)) < 2 {
			t.Fatalf("referenced blob %s only on %v", d, c.holders(d))
		}
	}
}
