package blob

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/slipwayhq/slipway/cluster"
	"github.com/slipwayhq/slipway/fsm"
)

func threeZones(t *testing.T) *fakeNet {
	n := newFakeNet(t)
	n.add("a1", "a")
	n.add("a2", "a")
	n.add("b1", "b")
	n.add("c1", "c")
	return n
}

func tmpFiles(t *testing.T, s *Store) []string {
	t.Helper()
	ents, err := os.ReadDir(s.tmp)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestPutReplicatesToTwoZonesBeforeReturning(t *testing.T) {
	n := threeZones(t)
	ctx := context.Background()
	data := randomBytes(1, 3<<20+17)
	d := digestOf(data)
	st, err := n.nodes["a1"].store.Put(ctx, "slug", bytes.NewReader(data), d)
	if err != nil {
		t.Fatal(err)
	}
	if st.Digest != d || st.Size != int64(len(data)) || st.Kind != "slug" || st.Note != "" {
		t.Fatalf("stored = %+v", st)
	}
	if len(st.Zones) != 2 || st.Zones[0] != "a" {
		t.Fatalf("zones = %v", st.Zones)
	}
	// The record and the files agree: a1 plus one node of another zone.
	b := mustBlob(t, n.state.Snap(), d)
	have := where(n, d)
	if len(b.Replicas) != 2 || strings.Join(b.Replicas, ",") != strings.Join(have, ",") || b.Replicas[0] != "a1" || b.Replicas[1] == "a2" {
		t.Fatalf("replicas %v, files on %v", b.Replicas, have)
	}
	for _, name := range have {
		if got := readAll(t, n.nodes[name].store, d); !bytes.Equal(got, data) {
			t.Fatalf("copy on %s differs", name)
		}
	}
	if tmp := tmpFiles(t, n.nodes["a1"].store); len(tmp) != 0 {
		t.Fatalf("temporary files left: %v", tmp)
	}
	// Storing it again (from another node) is idempotent and refreshes the
	// record.
	before := b.UpdatedAt
	n.clock.Add(time.Second)
	st2, err := n.nodes["c1"].store.Put(ctx, "slug", bytes.NewReader(data), "")
	if err != nil {
		t.Fatal(err)
	}
	if !st2.UpdatedAt.After(before) || !slices.Contains(st2.Replicas, "c1") || len(st2.Zones) < 2 {
		t.Fatalf("second put = %+v", st2)
	}
}

func TestPutRefusesWrongDigestAndLeavesNothing(t *testing.T) {
	n := threeZones(t)
	data := []byte("hello")
	wrong := digestOf([]byte("other"))
	_, err := n.nodes["a1"].store.Put(context.Background(), "slug", bytes.NewReader(data), wrong)
	var me *MismatchError
	if !errors.As(err, &me) || me.Want != wrong || me.Got != digestOf(data) {
		t.Fatalf("err = %v", err)
	}
	if len(where(n, digestOf(data))) != 0 || len(n.state.Snap().Blobs()) != 0 || len(tmpFiles(t, n.nodes["a1"].store)) != 0 {
		t.Fatal("a refused put left something behind")
	}
	if _, err := n.nodes["a1"].store.Put(context.Background(), "slug", bytes.NewReader(data), "md5:x"); err == nil {
		t.Fatal("a bad digest was accepted")
	}
}

func TestPutFailingReaderLeavesNothing(t *testing.T) {
	n := threeZones(t)
	boom := errors.New("client went away")
	_, err := n.nodes["a1"].store.Put(context.Background(), "slug", io.MultiReader(strings.NewReader("partial"), errReader{boom}), "")
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if len(n.state.Snap().Blobs()) != 0 || len(tmpFiles(t, n.nodes["a1"].store)) != 0 {
		t.Fatal("a failed put left something behind")
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestPutSkipsFailingNodes(t *testing.T) {
	n := threeZones(t)
	n.setBroken("b1", true)
	data := randomBytes(2, 1000)
	st, err := n.nodes["a1"].store.Put(context.Background(), "slug", bytes.NewReader(data), "")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(st.Replicas, ",") != "a1,c1" {
		t.Fatalf("replicas = %v", st.Replicas)
	}
	// Every other zone broken: the put fails and leaves nothing recorded.
	n.setBroken("c1", true)
	data = randomBytes(3, 1000)
	_, err = n.nodes["a1"].store.Put(context.Background(), "slug", bytes.NewReader(data), "")
	if !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("err = %v", err)
	}
	if _, ok := n.state.Snap().Blob(digestOf(data)); ok || n.nodes["a1"].store.Has(digestOf(data)) {
		t.Fatal("an unreplicated put was recorded or kept")
	}
	// Dead nodes are not tried at all.
	n.setBroken("b1", false)
	n.setBroken("c1", false)
	n.setState("b1", cluster.StateDead)
	n.setState("c1", cluster.StateLeft)
	st, err = n.nodes["a1"].store.Put(context.Background(), "slug", bytes.NewReader(data), "")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(st.Replicas, ",") != "a1,a2" || !strings.Contains(st.Note, "only 1 alive zone") {
		t.Fatalf("stored = %+v", st)
	}
}

func TestPutWithFewerZones(t *testing.T) {
	n := newFakeNet(t)
	n.add("a1", "a")
	st, err := n.nodes["a1"].store.Put(context.Background(), "cache", strings.NewReader("x"), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Replicas) != 1 || !strings.Contains(st.Note, "fewer than 2") {
		t.Fatalf("single node: %+v", st)
	}
	n.add("a2", "a")
	n.add("a3", "a")
	st, err = n.nodes["a1"].store.Put(context.Background(), "cache", strings.NewReader("y"), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Replicas) != 2 || len(st.Zones) != 1 || st.Note == "" {
		t.Fatalf("one zone: %+v", st)
	}
}

func TestOpenRemoteKeepsAndRecordsACopy(t *testing.T) {
	n := threeZones(t)
	data := randomBytes(4, 1<<20)
	st, err := n.nodes["a1"].store.Put(context.Background(), "slug", bytes.NewReader(data), "")
	if err != nil {
		t.Fatal(err)
	}
	var reader *fakeNode
	for _, name := range []string{"a2", "b1", "c1"} {
		if !slices.Contains(st.Replicas, name) {
			reader = n.nodes[name]
			break
		}
	}
	rc, size, err := reader.store.Open(context.Background(), st.Digest)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) || size != int64(len(data)) {
		t.Fatalf("remote read: %v, %d bytes of %d", err, len(got), size)
	}
	if !reader.store.Has(st.Digest) || !slices.Contains(mustBlob(t, n.state.Snap(), st.Digest).Replicas, reader.name) {
		t.Fatal("the fetched copy was not kept and recorded")
	}
	// An unknown blob is not found.
	if _, _, err := reader.store.Open(context.Background(), digestOf([]byte("nope"))); !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v", err)
	}
}

func TestOpenDetectsCorruption(t *testing.T) {
	n := threeZones(t)
	data := []byte("precious bytes")
	st, err := n.nodes["a1"].store.Put(context.Background(), "slug", bytes.NewReader(data), "")
	if err != nil {
		t.Fatal(err)
	}
	s := n.nodes["a1"].store
	if err := os.WriteFile(s.path(st.Digest), []byte("precious bytez"), 0o600); err != nil {
		t.Fatal(err)
	}
	rc, _, err := s.Open(context.Background(), st.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadAll(rc); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v", err)
	}
	// A corrupt copy is also refused by a node receiving it.
	var other *fakeNode
	for _, name := range []string{"b1", "c1", "a2"} {
		if !slices.Contains(st.Replicas, name) {
			other = n.nodes[name]
		}
	}
	for _, m := range s.c.Members() {
		if m.Name == other.name {
			if err := s.push(context.Background(), m, st.Digest, int64(len(data)), "slug"); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("push of a corrupt copy: %v", err)
			}
		}
	}
	if other.store.Has(st.Digest) {
		t.Fatal("a corrupt copy was accepted")
	}
}

func TestRepairAfterNodeDies(t *testing.T) {
	n := threeZones(t)
	data := randomBytes(5, 200_000)
	st, err := n.nodes["a1"].store.Put(context.Background(), "slug", bytes.NewReader(data), "")
	if err != nil {
		t.Fatal(err)
	}
	other := st.Replicas[1] // a1's partner in another zone
	// Nothing to do while everyone is alive.
	if c := n.nodes["a2"].store.Repair(context.Background()); c != 0 {
		t.Fatalf("repair changed %d blobs in a healthy cluster", c)
	}
	n.setState(other, cluster.StateDead)
	n.setBroken(other, true)
	if c := n.nodes["a2"].store.Repair(context.Background()); c != 1 {
		t.Fatalf("repair changed %d blobs, want 1", c)
	}
	b := mustBlob(t, n.state.Snap(), st.Digest)
	if len(b.Replicas) != 2 || slices.Contains(b.Replicas, other) || !slices.Contains(b.Replicas, "a1") {
		t.Fatalf("replicas after repair = %v", b.Replicas)
	}
	newNode := b.Replicas[0]
	if newNode == "a1" {
		newNode = b.Replicas[1]
	}
	if n.nodes[newNode].zone == "a" || !bytes.Equal(readAll(t, n.nodes[newNode].store, st.Digest), data) {
		t.Fatalf("repaired copy on %s (zone %s) is wrong", newNode, n.nodes[newNode].zone)
	}
	// Every copy lost: repair waits (the record is kept for when a node
	// comes back).
	for _, r := range b.Replicas {
		n.setState(r, cluster.StateDead)
	}
	if c := n.nodes["a2"].store.Repair(context.Background()); c != 0 {
		t.Fatalf("repair changed %d blobs with no live copy", c)
	}
	if len(mustBlob(t, n.state.Snap(), st.Digest).Replicas) != 2 {
		t.Fatal("the record of a blob with no live copy was changed")
	}
}

func TestGarbageCollection(t *testing.T) {
	n := threeZones(t)
	ctx := context.Background()
	leader := n.nodes["a2"].store
	keep, err := n.nodes["a1"].store.Put(ctx, "slug", strings.NewReader("referenced"), "")
	if err != nil {
		t.Fatal(err)
	}
	drop, err := n.nodes["b1"].store.Put(ctx, "slug", strings.NewReader("unreferenced"), "")
	if err != nil {
		t.Fatal(err)
	}
	// A slug refers to keep.
	app := fsm.App{ID: uuid.NewString(), Name: "demo", Region: "test", Stack: fsm.DefaultStack}
	n.state.apply(t, fsm.CmdAppCreate, fsm.AppCreate{App: app, ReleaseID: uuid.NewString(), DefaultDomainID: uuid.NewString(), DefaultHostname: "demo.localhost"})
	slugID := uuid.NewString()
	n.state.apply(t, fsm.CmdSlugCreate, fsm.SlugCreate{Slug: fsm.Slug{ID: slugID, AppID: app.ID, ProcessTypes: map[string]string{"web": "x"}}})
	n.state.apply(t, fsm.CmdSlugUploaded, fsm.SlugUploaded{SlugID: slugID, Digest: keep.Digest, Size: keep.Size})

	if got := leader.CollectGarbage(ctx); len(got) != 0 {
		t.Fatalf("first pass deleted %v", got)
	}
	n.clock.Add(59 * time.Minute)
	if got := leader.CollectGarbage(ctx); len(got) != 0 {
		t.Fatalf("deleted %v before the grace period", got)
	}
	// Local collectors keep every listed copy.
	for _, fn := range n.nodes {
		if got, err := fn.store.CollectLocal(); err != nil || len(got) != 0 {
			t.Fatalf("%s removed %v (%v)", fn.name, got, err)
		}
	}
	n.clock.Add(2 * time.Minute)
	got := leader.CollectGarbage(ctx)
	if len(got) != 1 || got[0] != drop.Digest {
		t.Fatalf("deleted %v, want only %s", got, drop.Digest)
	}
	if _, ok := n.state.Snap().Blob(keep.Digest); !ok {
		t.Fatal("the referenced blob was deleted")
	}
	// Nodes now remove the files of the deleted blob (they are older than
	// the grace), and keep the rest.
	for _, fn := range n.nodes {
		if _, err := fn.store.CollectLocal(); err != nil {
			t.Fatal(err)
		}
	}
	if w := where(n, drop.Digest); len(w) != 0 {
		t.Fatalf("deleted blob still on %v", w)
	}
	if w := where(n, keep.Digest); len(w) != 2 {
		t.Fatalf("kept blob on %v", w)
	}
}

func TestGarbageCollectionSparesRefreshedBlobs(t *testing.T) {
	n := threeZones(t)
	ctx := context.Background()
	leader := n.nodes["a2"].store
	st, err := n.nodes["a1"].store.Put(ctx, "slug", strings.NewReader("again"), "")
	if err != nil {
		t.Fatal(err)
	}
	leader.CollectGarbage(ctx)
	n.clock.Add(2 * time.Hour)
	// Put again just before the collector runs: the record is newer than
	// the grace, so it stays.
	if _, err := n.nodes["c1"].store.Put(ctx, "slug", strings.NewReader("again"), ""); err != nil {
		t.Fatal(err)
	}
	if got := leader.CollectGarbage(ctx); len(got) != 0 {
		t.Fatalf("deleted %v right after a put", got)
	}
	// And a delete racing with a refresh is refused by the state.
	b := mustBlob(t, n.state.Snap(), st.Digest)
	old := b.UpdatedAt.Add(-time.Second)
	if _, err := leader.submit(ctx, fsm.CmdBlobDelete, fsm.BlobDelete{Digest: st.Digest, IfUpdatedAt: &old}); err == nil {
		t.Fatal("a stale delete succeeded")
	}
}

func TestCollectLocalSparesFreshFiles(t *testing.T) {
	n := newFakeNet(t)
	a := n.add("a1", "a")
	// A copy received from a put that never recorded it (or in flight).
	data := []byte("in flight")
	if err := a.store.receive(bytes.NewReader(data), digestOf(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	stray := filepath.Join(a.store.tmp, "put-123")
	if err := os.WriteFile(stray, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.store.CollectLocal(); len(got) != 0 || !a.store.Has(digestOf(data)) {
		t.Fatalf("fresh file removed: %v", got)
	}
	n.clock.Add(61 * time.Minute)
	if got, err := a.store.CollectLocal(); err != nil || len(got) != 1 || a.store.Has(digestOf(data)) {
		t.Fatalf("stale file kept: %v %v", got, err)
	}
	if _, err := os.Stat(stray); !os.IsNotExist(err) {
		t.Fatalf("stale temporary file kept: %v", err)
	}
}

func TestRemove(t *testing.T) {
	n := threeZones(t)
	st, err := n.nodes["a1"].store.Put(context.Background(), "slug", strings.NewReader("bye"), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := n.nodes["a1"].store.Remove(context.Background(), st.Digest); err != nil {
		t.Fatal(err)
	}
	if n.nodes["a1"].store.Has(st.Digest) || slices.Contains(mustBlob(t, n.state.Snap(), st.Digest).Replicas, "a1") {
		t.Fatal("not removed")
	}
}

func TestNextTargetPrefersOtherZones(t *testing.T) {
	m := func(name, zone string) cluster.Member {
		return cluster.Member{Name: name, State: cluster.StateAlive, Meta: cluster.Meta{Zone: zone, RPC: name + ":1"}}
	}
	alive := map[string]cluster.Member{"a1": m("a1", "a"), "a2": m("a2", "a"), "a3": m("a3", "a"), "b1": m("b1", "b")}
	g := goalFor(alive, 2, 2)
	if g.zones != 2 || g.copies != 2 {
		t.Fatalf("goal = %+v", g)
	}
	// Whatever the digest, the second copy goes to zone b.
	for i := 0; i < 50; i++ {
		d := digestOf([]byte{byte(i)})
		got, ok := nextTarget(d, alive, map[string]cluster.Member{"a1": alive["a1"]}, nil, g)
		if !ok || got.Name != "b1" {
			t.Fatalf("target = %v %v", got.Name, ok)
		}
	}
	// With b1 failing, no candidate can add a zone.
	if _, ok := nextTarget(digestOf(nil), alive, map[string]cluster.Member{"a1": alive["a1"]}, map[string]bool{"b1": true}, g); ok {
		t.Fatal("picked a node in a covered zone while a zone was missing")
	}
	// Spread: within one zone, rendezvous hashing uses every node.
	seen := map[string]bool{}
	one := map[string]cluster.Member{"a1": alive["a1"], "a2": alive["a2"], "a3": alive["a3"]}
	g1 := goalFor(one, 2, 2)
	for i := 0; i < 50; i++ {
		got, _ := nextTarget(digestOf([]byte{byte(i)}), one, map[string]cluster.Member{"a1": one["a1"]}, nil, g1)
		seen[got.Name] = true
	}
	if !seen["a2"] || !seen["a3"] {
		t.Fatalf("targets %v", seen)
	}
}
