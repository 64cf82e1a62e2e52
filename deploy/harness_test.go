package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/slipwayhq/slipway/blob"
	"github.com/slipwayhq/slipway/fsm"
)

const testToken = "test-token-0123456789"

// cluster is one node's deploy service over a real FSM, an in-memory blob
// store and a real HTTP server, with a stand-in for the scheduler and the
// dyno supervisor that runs build dynos' compilers in-process and release
// commands with bash.
type testNode struct {
	t     *testing.T
	f     *fsm.FSM
	mu    sync.Mutex
	index uint64
	blobs *blob.Memory
	svc   *Service
	srv   *httptest.Server
	user  *fsm.User

	ran  map[string]bool
	stop context.CancelFunc
	wg   sync.WaitGroup
	// noDynos leaves build dynos unplaced (no capacity).
	noDynos bool
}

func (n *testNode) submit(_ context.Context, cmd fsm.Command) (*fsm.Result, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	b, err := cmd.Encode()
	if err != nil {
		return nil, err
	}
	n.index++
	return n.f.ApplyCommand(n.index, b), nil
}

func (n *testNode) apply(typ string, payload any) *fsm.Result {
	n.t.Helper()
	cmd, err := fsm.NewCommand(typ, uuid.NewString(), time.Now(), n.user.ID, payload)
	if err != nil {
		n.t.Fatal(err)
	}
	res, _ := n.submit(context.Background(), cmd)
	return res
}

func newTestNode(t *testing.T, mod func(*Config)) *testNode {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatal("git is required")
	}
	f, err := fsm.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{t: t, f: f, blobs: blob.NewMemory(), ran: map[string]bool{}}
	n.user = &fsm.User{ID: uuid.NewString(), Email: "dev@example.com"}
	if r := n.apply(fsm.CmdUserCreate, fsm.UserCreate{User: *n.user}); r.Err != nil {
		t.Fatal(r.Err)
	}
	mux := http.NewServeMux()
	n.srv = httptest.NewServer(mux)
	exe, _ := os.Executable()
	cfg := Config{Node: "n1", Snap: f.Snap, Submit: n.submit, Blobs: n.blobs, APIURL: n.srv.URL, Binary: exe,
		WorkDir: t.TempDir(), LeaseWait: 2 * time.Second, LeaseTTL: 10 * time.Second,
		WebURL: func(app string) string { return "http://" + app + ".localhost:5005/" },
		Authenticate: func(r *http.Request) (*fsm.User, error) {
			_, pw, ok := r.BasicAuth()
			if !ok {
				return nil, errors.New("No credentials provided.")
			}
			if pw != testToken {
				return nil, errors.New("Invalid credentials provided.")
			}
			return n.user, nil
		}}
	if mod != nil {
		mod(&cfg)
	}
	n.svc, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle(InternalPrefix, n.svc.InternalHandler())
	mux.Handle("/", n.svc.GitHandler())
	ctx, cancel := context.WithCancel(context.Background())
	n.stop = cancel
	n.wg.Add(1)
	go func() { defer n.wg.Done(); n.runDynos(ctx) }()
	t.Cleanup(func() {
		cancel()
		n.wg.Wait()
		n.svc.Close()
		n.srv.Close()
	})
	return n
}

// runDynos places and runs build and release dynos as they appear.
func (n *testNode) runDynos(ctx context.Context) {
	for ctx.Err() == nil {
		snap := n.f.Snap()
		ws := snap.Watch("dynos")
		for _, d := range snap.AllDynos() {
			if n.ran[d.ID] || d.Stop || !d.OneOff {
				continue
			}
			if n.noDynos {
				if d.PendingReason == "" {
					n.apply(fsm.CmdDynoPlan, fsm.DynoPlan{Pending: []fsm.Pending{{ID: d.ID, Reason: "no node has 1024 MB free for a Standard-2X dyno"}}})
				}
				continue
			}
			n.ran[d.ID] = true
			inst := uuid.NewString()
			n.apply(fsm.CmdDynoPlan, fsm.DynoPlan{Place: []fsm.Placement{{ID: d.ID, Node: "n1", Zone: "a", Addr: "127.0.0.1", Port: 30001, Instance: inst}}})
			d := *d
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				status := n.runDyno(ctx, &d)
				state := fsm.DynoDown
				if status != 0 {
					state = fsm.DynoCrashed
				}
				n.apply(fsm.CmdDynoReport, fsm.DynoReport{ID: d.ID, Instance: inst, Node: "n1", State: state, ExitStatus: &status})
			}()
		}
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		_ = ws.WatchCtx(wctx)
		cancel()
	}
}

func (n *testNode) runDyno(ctx context.Context, d *fsm.Dyno) int {
	switch d.Type {
	case fsm.DynoTypeBuild:
		work := n.t.TempDir()
		h := NewHTTPHost(strings.Split(d.Env["SLIPWAY_BUILD_URLS"], ","), d.Env["SLIPWAY_BUILD_ID"], d.Env["SLIPWAY_BUILD_TOKEN"])
		if _, err := h.Job(ctx); err != nil {
			return 1
		}
		exe, _ := os.Executable()
		env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + work}
		for _, k := range []string{"GOPROXY", "GOFLAGS"} {
			if v := os.Getenv(k); v != "" {
				env = append(env, k+"="+v)
			}
		}
		if err := Compile(ctx, h, h.Output(ctx), CompileOptions{WorkDir: work, Env: env, SlipwayBin: exe}); err != nil {
			return 1
		}
		return 0
	case fsm.DynoTypeRelease:
		cmd := exec.CommandContext(ctx, "bash", "-c", d.Command)
		if err := cmd.Run(); err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return ee.ExitCode()
			}
			return 1
		}
		return 0
	}
	return 0
}

func (n *testNode) createApp(name string) *fsm.App {
	n.t.Helper()
	var a fsm.App
	r := n.apply(fsm.CmdAppCreate, fsm.AppCreate{App: fsm.App{ID: uuid.NewString(), Name: name, Region: "local", OwnerID: n.user.ID}, ReleaseID: uuid.NewString()})
	if err := r.Decode(&a); err != nil {
		n.t.Fatal(err)
	}
	return &a
}

func (n *testNode) gitURL(app, token string) string {
	return strings.Replace(n.srv.URL, "http://", "http://git:"+token+"@", 1) + "/" + app + ".git"
}

// localRepo is a git working copy.
type localRepo struct {
	t   *testing.T
	dir string
}

func newLocalRepo(t *testing.T, files map[string]string) *localRepo {
	t.Helper()
	r := &localRepo{t: t, dir: t.TempDir()}
	r.mustGit("init", "--quiet", "--initial-branch=main")
	r.write(files)
	r.commit("first")
	return r
}

func (r *localRepo) write(files map[string]string) {
	r.t.Helper()
	for name, content := range files {
		p := filepath.Join(r.dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
}

func (r *localRepo) commit(msg string) {
	r.t.Helper()
	r.mustGit("add", "-A")
	r.mustGit("commit", "--quiet", "--allow-empty", "-m", msg)
}

func (r *localRepo) git(args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t",
		"GIT_COMMITTER_EMAIL=t@example.com", "GIT_TERMINAL_PROMPT=0", "HOME="+r.dir, "GIT_CONFIG_NOSYSTEM=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func (r *localRepo) mustGit(args ...string) string {
	r.t.Helper()
	out, err := r.git(args...)
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (r *localRepo) head() string { return strings.TrimSpace(r.mustGit("rev-parse", "HEAD")) }

// goApp is a small Go web app.
func goApp(msg string) map[string]string {
	return map[string]string{
		"go.mod": "module example.com/hello\n\ngo 1.22\n",
		// The unit tests never run the app (a stand-in runs dynos), so it
		// stays small: a cold build cache compiles it in seconds, where
		// net/http would take a minute on a busy machine. The e2e tests
		// push a real web app.
		"main.go": fmt.Sprintf(`package main

import "os"

func main() {
	os.Stdout.WriteString(%q + " on port " + os.Getenv("PORT") + "\n")
}
`, msg),
	}
}

func mustContain(t *testing.T, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Fatalf("output lacks %q:\n%s", w, out)
		}
	}
}
