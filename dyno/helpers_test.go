package dyno

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/slipwayhq/slipway/fsm"
	"github.com/slipwayhq/slipway/logplex"
)

// The test app binary (testdata/dynoapp), built on first use.
var (
	dynoAppOnce sync.Once
	dynoAppDir  string
	dynoAppErr  error
)

func dynoApp(t testing.TB) string {
	t.Helper()
	dynoAppOnce.Do(func() {
		if dynoAppDir, dynoAppErr = os.MkdirTemp("", "dynoapp-"); dynoAppErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-ldflags=-s -w", "-o", filepath.Join(dynoAppDir, "dynoapp"), "./testdata/dynoapp")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			dynoAppErr = fmt.Errorf("building the test app: %v\n%s", err, out)
		}
	})
	if dynoAppErr != nil {
		t.Fatal(dynoAppErr)
	}
	return filepath.Join(dynoAppDir, "dynoapp")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if dynoAppDir != "" {
		os.RemoveAll(dynoAppDir)
	}
	os.Exit(code)
}

// memSlugs is an in-memory Slugs.
type memSlugs struct {
	mu    sync.Mutex
	blobs map[string][]byte
	opens int
	// corrupt serves wrong bytes for a digest.
	corrupt map[string]bool
}

func (m *memSlugs) put(b []byte) string {
	sum := sha256.Sum256(b)
	d := "sha256:" + hex.EncodeToString(sum[:])
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.blobs == nil {
		m.blobs = map[string][]byte{}
	}
	m.blobs[d] = b
	return d
}

func (m *memSlugs) Open(_ context.Context, digest string) (io.ReadCloser, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.blobs[digest]
	if !ok {
		return nil, 0, fmt.Errorf("blob %s not found", digest)
	}
	m.opens++
	if m.corrupt[digest] {
		b = append([]byte("x"), b[1:]...)
	}
	return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
}

// memSink collects log lines.
type memSink struct {
	mu    sync.Mutex
	lines []logplex.Line
}

func (s *memSink) Emit(l logplex.Line) {
	s.mu.Lock()
	s.lines = append(s.lines, l)
	s.mu.Unlock()
}

func (s *memSink) all(proc string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, l := range s.lines {
		if proc == "" || l.Proc == proc {
			out = append(out, l.Source+"["+l.Proc+"]: "+l.Text)
		}
	}
	return out
}

// slugFile is one file of a test slug.
type slugFile struct {
	name string // under ./app
	body string
	mode int64
}

// makeSlug builds a Heroku slug (a tar.gz of ./app) holding the test app
// binary as bin/dynoapp plus files.
func makeSlug(t testing.TB, files ...slugFile) []byte {
	t.Helper()
	app, err := os.ReadFile(dynoApp(t))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	tw := tar.NewWriter(zw)
	add := func(h *tar.Header, body []byte) {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	add(&tar.Header{Name: "./app/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	add(&tar.Header{Name: "./app/bin/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	add(&tar.Header{Name: "./app/bin/dynoapp", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(app))}, app)
	for _, f := range files {
		mode := f.mode
		if mode == 0 {
			mode = 0o644
		}
		if dir := filepath.Dir(f.name); dir != "." {
			add(&tar.Header{Name: "./app/" + dir + "/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
		}
		add(&tar.Header{Name: "./app/" + f.name, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(f.body))}, []byte(f.body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// harness is a node's supervisor over a real in-memory FSM.
type harness struct {
	t     testing.TB
	f     *fsm.FSM
	node  string
	dir   string
	rt    Runtime
	slugs *memSlugs
	sink  *memSink
	cfg   Config

	mu      sync.Mutex
	index   uint64
	reports []fsm.DynoReport

	app *fsm.App
	rel *fsm.Release

	sup    *Supervisor
	cancel context.CancelFunc
	done   chan struct{}
}

func newHarness(t testing.TB, rt Runtime) *harness {
	t.Helper()
	f, err := fsm.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, f: f, node: "n-" + uuid.NewString()[:8], dir: t.TempDir(), rt: rt, slugs: &memSlugs{}, sink: &memSink{}}
	h.cfg = Config{
		BootTimeout: 30 * time.Second, StopTimeout: 3 * time.Second, AttachTimeout: 30 * time.Second,
		Resync: 300 * time.Millisecond, MemoryInterval: 200 * time.Millisecond,
	}
	var app fsm.App
	h.apply(fsm.CmdAppCreate, fsm.AppCreate{
		App:       fsm.App{ID: uuid.NewString(), Name: "app" + uuid.NewString()[:8], Region: "local"},
		ReleaseID: uuid.NewString(), DefaultDomainID: uuid.NewString(), DefaultHostname: "x.localhost",
	}, &app)
	h.app = &app
	t.Cleanup(h.stop)
	return h
}

func (h *harness) apply(typ string, data any, into any) *fsm.Result {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	c, err := fsm.NewCommand(typ, uuid.NewString(), time.Now(), "", data)
	if err != nil {
		h.t.Fatal(err)
	}
	b, err := c.Encode()
	if err != nil {
		h.t.Fatal(err)
	}
	h.index++
	res := h.f.ApplyCommand(h.index, b)
	if into != nil {
		if err := res.Decode(into); err != nil {
			h.t.Fatalf("%s: %v", typ, err)
		}
	}
	return res
}

// Report implements Reporter against the FSM.
func (h *harness) Report(_ context.Context, r fsm.DynoReport) error {
	h.mu.Lock()
	h.reports = append(h.reports, r)
	h.mu.Unlock()
	res := h.apply(fsm.CmdDynoReport, r, nil)
	if res.Err != nil {
		return res.Err
	}
	return nil
}

func (h *harness) reportsFor(id string) []fsm.DynoReport {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []fsm.DynoReport
	for _, r := range h.reports {
		if r.ID == id {
			out = append(out, r)
		}
	}
	return out
}

// config sets config vars (making a release).
func (h *harness) config(kv ...string) {
	ch := map[string]*string{}
	for i := 0; i+1 < len(kv); i += 2 {
		v := kv[i+1]
		ch[kv[i]] = &v
	}
	h.apply(fsm.CmdConfigUpdate, fsm.ConfigUpdate{AppID: h.app.ID, Changes: ch, ReleaseID: uuid.NewString()}, nil)
}

// deploy releases a slug.
func (h *harness) deploy(slug []byte, types map[string]string) *fsm.Release {
	h.t.Helper()
	digest := h.slugs.put(slug)
	sl := fsm.Slug{ID: uuid.NewString(), AppID: h.app.ID, ProcessTypes: types, Commit: "0123456789abcdef0123456789abcdef01234567", Stack: "heroku-24"}
	h.apply(fsm.CmdSlugCreate, fsm.SlugCreate{Slug: sl}, nil)
	h.apply(fsm.CmdSlugUploaded, fsm.SlugUploaded{SlugID: sl.ID, Digest: digest, Size: int64(len(slug))}, nil)
	var rel fsm.Release
	h.apply(fsm.CmdReleaseCreate, fsm.ReleaseCreate{AppID: h.app.ID, ReleaseID: uuid.NewString(), SlugID: sl.ID, Description: "Deploy 0123456"}, &rel)
	h.rel = &rel
	return &rel
}

func (h *harness) start() {
	h.t.Helper()
	cfg := h.cfg
	cfg.Node, cfg.Dir, cfg.Runtime, cfg.Reporter, cfg.Slugs, cfg.Sink = h.node, h.dir, h.rt, h, h.slugs, h.sink
	if cfg.Snap == nil {
		cfg.Snap = h.f.Snap
	}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	sup, err := NewSupervisor(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.sup, h.cancel, h.done = sup, cancel, make(chan struct{})
	go func() {
		defer close(h.done)
		_ = sup.Run(ctx)
	}()
	if cfg.Synced != nil {
		return // Ready waits for Synced
	}
	select {
	case <-sup.Ready():
	case <-time.After(30 * time.Second):
		h.t.Fatal("supervisor not ready")
	}
}

// restart stops the supervisor (leaving its dynos running) and starts a new
// one over the same directory, as an agent restart does.
func (h *harness) restart() {
	h.t.Helper()
	h.detach()
	h.start()
}

func (h *harness) detach() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	<-h.done
	h.cancel = nil
}

// stop ends the test: stops every dyno and the supervisor.
func (h *harness) stop() {
	if h.cancel != nil {
		var ids []string
		for _, d := range h.f.Snap().NodeDynos(h.node) {
			ids = append(ids, d.ID)
		}
		if len(ids) > 0 {
			h.apply(fsm.CmdDynoPlan, fsm.DynoPlan{Remove: ids}, nil)
		}
		deadline := time.Now().Add(time.Minute)
		for len(h.sup.Running()) > 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		h.detach()
	}
	// Whatever is left (a test that failed half-way) must not outlive it.
	prefix := markerPrefix + h.node + "@"
	if h.sup != nil {
		prefix = nodeMarkerPrefix(h.sup.markerNode)
	}
	_ = h.rt.Sweep(context.Background(), prefix, nil)
}

// freePort returns a TCP port nobody listens on.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// dynoSpec describes a dyno to create and place on the harness's node.
type dynoSpec struct {
	name, command, size string
	oneOff, attach      bool
	env                 map[string]string
	ttl                 time.Duration
}

// place creates a dyno of the current release and places it here.
func (h *harness) place(s dynoSpec) *fsm.Dyno {
	h.t.Helper()
	typ, _, _ := strings.Cut(s.name, ".")
	size := s.size
	if size == "" {
		size = "Basic"
	}
	d := fsm.Dyno{ID: uuid.NewString(), AppID: h.app.ID, Name: s.name, Type: typ, Command: s.command, Size: size,
		ReleaseID: h.rel.ID, Version: h.rel.Version, Env: s.env}
	if s.ttl > 0 {
		exp := time.Now().Add(s.ttl)
		d.ExpiresAt = &exp
	}
	if s.oneOff {
		var created fsm.Dyno
		d.Type = "run"
		d.Attach = s.attach
		h.apply(fsm.CmdDynoRun, fsm.DynoRun{Dyno: d}, &created)
		d = created
	} else {
		h.apply(fsm.CmdDynoPlan, fsm.DynoPlan{Create: []fsm.Dyno{d}}, nil)
	}
	h.apply(fsm.CmdDynoPlan, fsm.DynoPlan{Place: []fsm.Placement{{ID: d.ID, Node: h.node, Addr: "127.0.0.1", Port: freePort(h.t), Instance: uuid.NewString()}}}, nil)
	got, _ := h.f.Snap().DynoByID(d.ID)
	return got
}

func (h *harness) dyno(id string) *fsm.Dyno {
	d, ok := h.f.Snap().DynoByID(id)
	if !ok {
		return nil
	}
	return d
}

// waitFor polls cond for up to a minute.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s; logs:\n%s", what, strings.Join(h.sink.all(""), "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitState waits for the dyno's instance to reach state.
func (h *harness) waitState(id, state string) *fsm.Dyno {
	h.t.Helper()
	var d *fsm.Dyno
	h.waitFor(id+" "+state, func() bool {
		d = h.dyno(id)
		return d != nil && d.State == state
	})
	return d
}

// waitLog waits for a line of proc containing text.
func (h *harness) waitLog(proc, text string) {
	h.t.Helper()
	h.waitFor(fmt.Sprintf("%q in %s's log", text, proc), func() bool { return h.hasLog(proc, text) })
}

func (h *harness) hasLog(proc, text string) bool {
	for _, l := range h.sink.all(proc) {
		if strings.Contains(l, text) {
			return true
		}
	}
	return false
}

// shims lists the pids of shim processes of a dyno on this host.
func shims(node, dynoID string) []int {
	var out []int
	for _, pid := range allPids() {
		// Markers are markerPrefix + node@<dir hash> + "/" + dyno + "/" + instance.
		m := strings.TrimPrefix(shimMarker(pid), markerPrefix+node+"@")
		if _, rest, ok := strings.Cut(m, "/"); ok && len(m) < len(shimMarker(pid)) && strings.HasPrefix(rest, dynoID+"/") {
			if st, err := readProcStat(pid); err == nil && st.State != 'Z' {
				out = append(out, pid)
			}
		}
	}
	return out
}

// webUp deploys the test slug with command as its web process type,
// starts the supervisor and waits until web.1 is up.
func (h *harness) webUp(command string) *fsm.Dyno {
	h.t.Helper()
	h.deploy(makeSlug(h.t), map[string]string{"web": command})
	h.start()
	d := h.place(dynoSpec{name: "web.1", command: command})
	h.waitState(d.ID, fsm.DynoUp)
	return d
}
