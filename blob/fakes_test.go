package blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/slipwayhq/slipway/cluster"
	"github.com/slipwayhq/slipway/fsm"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// sharedState is one real FSM that every fake node reads and writes
// directly (perfect replication, no Raft).
type sharedState struct {
	mu    sync.Mutex
	f     *fsm.FSM
	index uint64
	fail  error
}

func newSharedState(t testing.TB) *sharedState {
	f, err := fsm.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &sharedState{f: f}
}

func (s *sharedState) Snap() *fsm.Snap { return s.f.Snap() }

func (s *sharedState) Submit(_ context.Context, cmd fsm.Command) (*fsm.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	b, err := cmd.Encode()
	if err != nil {
		return nil, err
	}
	s.index++
	return s.f.ApplyCommand(s.index, b), nil
}

func (s *sharedState) apply(t testing.TB, typ string, data any) *fsm.Result {
	t.Helper()
	cmd, err := fsm.NewCommand(typ, uuid.NewString(), time.Now(), "", data)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Submit(context.Background(), cmd)
	if err != nil || res.Err != nil {
		t.Fatalf("%s: %v %v", typ, err, res.Err)
	}
	return res
}

// fakeNet is a set of fake nodes: each has its own HTTP server for internal
// RPC (real loopback HTTP, so streaming is real) and shares the member list.
type fakeNet struct {
	t     testing.TB
	mu    sync.Mutex
	nodes map[string]*fakeNode
	state *sharedState
	clock *fakeClock
}

type fakeNode struct {
	net   *fakeNet
	name  string
	zone  string
	state string // gossip state others see
	mux   *http.ServeMux
	srv   *httptest.Server
	hooks []func(context.Context)
	store *Store
	dir   string
	// broken makes the node's RPC server fail every request.
	broken bool
}

func newFakeNet(t testing.TB) *fakeNet {
	return &fakeNet{t: t, nodes: map[string]*fakeNode{}, state: newSharedState(t),
		clock: &fakeClock{now: time.Now()}}
}

func (n *fakeNet) add(name, zone string, mod ...func(*Config)) *fakeNode {
	fn := &fakeNode{net: n, name: name, zone: zone, state: cluster.StateAlive, mux: http.NewServeMux(), dir: n.t.TempDir()}
	fn.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		broken := fn.broken
		n.mu.Unlock()
		if broken {
			http.Error(w, "broken", http.StatusInternalServerError)
			return
		}
		fn.mux.ServeHTTP(w, r)
	}))
	n.t.Cleanup(fn.srv.Close)
	n.mu.Lock()
	n.nodes[name] = fn
	n.mu.Unlock()
	cfg := Config{Dir: fn.dir, GCGrace: time.Hour, RepairDelay: -1, MinFreeBytes: -1, Clock: n.clock,
		Logger: slog.New(slog.NewTextHandler(testWriter{n.t}, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", name)}
	for _, m := range mod {
		m(&cfg)
	}
	s, err := New(cfg, fn, n.state)
	if err != nil {
		n.t.Fatal(err)
	}
	fn.store = s
	return fn
}

func (n *fakeNet) setState(name, state string) {
	n.mu.Lock()
	n.nodes[name].state = state
	n.mu.Unlock()
}

func (n *fakeNet) setBroken(name string, broken bool) {
	n.mu.Lock()
	n.nodes[name].broken = broken
	n.mu.Unlock()
}

// cluster seam

func (f *fakeNode) Name() string   { return f.name }
func (f *fakeNode) Region() string { return "test" }
func (f *fakeNode) Zone() string   { return f.zone }
func (f *fakeNode) Members() []cluster.Member {
	f.net.mu.Lock()
	defer f.net.mu.Unlock()
	var out []cluster.Member
	for _, o := range f.net.nodes {
		out = append(out, cluster.Member{Name: o.name, State: o.state,
			Meta: cluster.Meta{Region: "test", Zone: o.zone, RPC: strings.TrimPrefix(o.srv.URL, "http://")}})
	}
	return out
}
func (f *fakeNode) RPCRequest(ctx context.Context, method, addr, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, body)
	if err != nil {
		return nil, err
	}
	return http.DefaultClient.Do(req)
}
func (f *fakeNode) HandleRPC(pattern string, h http.Handler) { f.mux.Handle(pattern, h) }
func (f *fakeNode) AddLeaderHook(h func(context.Context))    { f.hooks = append(f.hooks, h) }

// testWriter sends logs to t.Log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// prng is a deterministic pseudo-random stream of n bytes that holds no
// more than one buffer in memory.
type prng struct {
	r    *rand.ChaCha8
	left int64
}

func newPRNG(seed byte, n int64) *prng {
	var s [32]byte
	s[0] = seed
	return &prng{r: rand.NewChaCha8(s), left: n}
}

func (p *prng) Read(b []byte) (int, error) {
	if p.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.left {
		b = b[:p.left]
	}
	n, _ := p.r.Read(b)
	p.left -= int64(n)
	return n, nil
}

func readAll(t testing.TB, s *Store, digest string) []byte {
	t.Helper()
	rc, _, err := s.Open(context.Background(), digest)
	if err != nil {
		t.Fatalf("open %s: %v", digest, err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, rc); err != nil {
		t.Fatalf("read %s: %v", digest, err)
	}
	return buf.Bytes()
}

func mustBlob(t testing.TB, snap *fsm.Snap, digest string) *fsm.Blob {
	t.Helper()
	b, ok := snap.Blob(digest)
	if !ok {
		t.Fatalf("no record of %s", digest)
	}
	return b
}

func where(fn *fakeNet, digest string) []string {
	var out []string
	for _, n := range fn.nodes {
		if n.store.Has(digest) {
			out = append(out, n.name)
		}
	}
	sort.Strings(out)
	return out
}
