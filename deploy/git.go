package deploy

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/slipwayhq/slipway/fsm"
)

// The pre-receive hook installed in every restored repository: it hands
// the pushed refs (and where git keeps the pushed objects until the push
// is accepted) to the node through a FIFO, relays the node's output
// through another, and exits with the status the node ends it with.
const preReceiveHook = `#!/usr/bin/env bash
d="$SLIPWAY_HOOK_DIR"
if [ -z "$d" ]; then echo "slipway: this repository only takes pushes through Slipway" >&2; exit 1; fi
{
	printf 'GIT_OBJECT_DIRECTORY=%s\n' "$GIT_OBJECT_DIRECTORY"
	printf 'GIT_ALTERNATE_OBJECT_DIRECTORIES=%s\n' "$GIT_ALTERNATE_OBJECT_DIRECTORIES"
	printf 'GIT_QUARANTINE_PATH=%s\n' "$GIT_QUARANTINE_PATH"
	echo
	cat
} > "$d/request" || exit 1
while IFS= read -r line; do
	case "$line" in
	$'\x01'exit*) exit "${line#*exit }" ;;
	*) printf '%s\n' "$line" ;;
	esac
done < "$d/output"
exit 1
`

// hookExitPrefix starts the line that ends the hook's output.
const hookExitPrefix = "\x01exit "

// gitError answers a git client: a text/plain body is shown as "remote:"
// lines by git.
func gitError(w http.ResponseWriter, status int, msg string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="Slipway"`)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprintln(w, msg)
}

// GitHandler serves git's smart HTTP protocol on /{app}.git/: info/refs,
// git-upload-pack (fetch, clone) and git-receive-pack (push).
func (s *Service) GitHandler() http.Handler { return http.HandlerFunc(s.serveGit) }

func (s *Service) serveGit(w http.ResponseWriter, r *http.Request) {
	name, rest, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), ".git/")
	if !ok {
		gitError(w, http.StatusNotFound, "Not a git repository path.")
		return
	}
	user, err := s.cfg.Authenticate(r)
	if err != nil {
		gitError(w, http.StatusUnauthorized, err.Error())
		return
	}
	app, ok := s.cfg.Snap().App(name)
	if !ok {
		gitError(w, http.StatusNotFound, fmt.Sprintf("Couldn't find that app: %s.", name))
		return
	}
	switch {
	case rest == "info/refs" && r.Method == http.MethodGet:
		s.gitInfoRefs(w, r, app)
	case rest == "git-upload-pack" && r.Method == http.MethodPost:
		s.gitUploadPack(w, r, app)
	case rest == "git-receive-pack" && r.Method == http.MethodPost:
		s.gitReceivePack(w, r, app, user)
	default:
		gitError(w, http.StatusNotFound, "Not found (only git's smart HTTP protocol is served).")
	}
}

// checkout restores an app's repository into a new directory under the
// work directory (an empty repository if it has none yet).
func (s *Service) checkout(ctx context.Context, app *fsm.App) (string, error) {
	dir, err := os.MkdirTemp(s.cfg.WorkDir, "repo-"+app.Name+"-")
	if err != nil {
		return "", err
	}
	repo := s.cfg.Snap().Repo(app.ID)
	if repo.Digest == "" {
		if out, err := s.git(ctx, dir, nil, "init", "--quiet", "--bare", "--initial-branch=main", "."); err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("git init: %v: %s", err, out)
		}
	} else {
		rc, _, err := s.cfg.Blobs.Open(ctx, repo.Digest)
		if err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("opening the repository: %w", err)
		}
		err = ExtractTarGz(rc, dir, ExtractOptions{})
		rc.Close()
		if err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("restoring the repository: %w", err)
		}
	}
	for _, kv := range [][2]string{{"receive.denyNonFastForwards", "false"}, {"receive.denyDeletes", "false"},
		{"receive.autogc", "false"}, {"gc.auto", "0"}, {"core.logAllRefUpdates", "false"}, {"http.receivepack", "true"}} {
		if out, err := s.git(ctx, dir, nil, "config", kv[0], kv[1]); err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("git config: %v: %s", err, out)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "hooks"), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "hooks", "pre-receive"), []byte(preReceiveHook), 0o755); err != nil {
		return "", err
	}
	return dir, nil
}

// git runs a git command in dir and returns its combined output.
func (s *Service) git(ctx context.Context, dir string, env []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, s.cfg.Git, args...)
	cmd.Dir = dir
	cmd.Env = append(gitEnv(), env...)
	return cmd.CombinedOutput()
}

// gitEnv is the environment of the git programs: the node's, without any
// GIT_* variable that would point them elsewhere.
func gitEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GIT_") {
			out = append(out, kv)
		}
	}
	return append(out, "GIT_CONFIG_NOSYSTEM=1", "HOME=/nonexistent", "GIT_TERMINAL_PROMPT=0")
}

func (s *Service) gitInfoRefs(w http.ResponseWriter, r *http.Request, app *fsm.App) {
	service := r.URL.Query().Get("service")
	if service != "git-upload-pack" && service != "git-receive-pack" {
		gitError(w, http.StatusForbidden, "Only git's smart HTTP protocol is served: use git 1.6.6 or newer.")
		return
	}
	dir, err := s.checkout(r.Context(), app)
	if err != nil {
		s.log.Warn("git: restoring a repository", "app", app.Name, "err", err)
		gitError(w, http.StatusServiceUnavailable, "The repository of "+app.Name+" cannot be read right now: "+err.Error())
		return
	}
	defer os.RemoveAll(dir)
	cmd := exec.CommandContext(r.Context(), s.cfg.Git, strings.TrimPrefix(service, "git-"), "--stateless-rpc", "--advertise-refs", ".")
	cmd.Dir, cmd.Env = dir, gitEnv()
	out, err := cmd.Output()
	if err != nil {
		gitError(w, http.StatusInternalServerError, "git "+service+" failed: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/x-"+service+"-advertisement")
	w.Header().Set("Cache-Control", "no-cache")
	io.WriteString(w, pkt("# service="+service+"\n")+"0000")
	w.Write(out)
}

func requestBody(r *http.Request) (io.Reader, error) {
	if r.Header.Get("Content-Encoding") == "gzip" {
		return gzip.NewReader(r.Body)
	}
	return r.Body, nil
}

func (s *Service) gitUploadPack(w http.ResponseWriter, r *http.Request, app *fsm.App) {
	body, err := requestBody(r)
	if err != nil {
		gitError(w, http.StatusBadRequest, "Bad request body: "+err.Error())
		return
	}
	dir, err := s.checkout(r.Context(), app)
	if err != nil {
		gitError(w, http.StatusServiceUnavailable, "The repository of "+app.Name+" cannot be read right now: "+err.Error())
		return
	}
	defer os.RemoveAll(dir)
	w.Header().Set("Content-Type", "application/x-git-upload-pack-result")
	w.Header().Set("Cache-Control", "no-cache")
	cmd := exec.CommandContext(r.Context(), s.cfg.Git, "upload-pack", "--stateless-rpc", ".")
	cmd.Dir, cmd.Env = dir, gitEnv()
	cmd.Stdin, cmd.Stdout = body, flushWriter{w}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		s.log.Warn("git upload-pack failed", "app", app.Name, "err", err, "stderr", stderr.String())
	}
}

// flushWriter flushes the response after every write (git output streams).
type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
	return n, err
}

// syncWriter serializes writes from the hook relay and the waiting
// messages.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// gitReceivePack takes a push: it spools the pack, waits for the app's push
// lease, restores the repository, runs git receive-pack (whose pre-receive
// hook builds a push to main or master), and stores the repository back if
// git accepted the push.
func (s *Service) gitReceivePack(w http.ResponseWriter, r *http.Request, app *fsm.App, user *fsm.User) {
	ctx := r.Context()
	body, err := requestBody(r)
	if err != nil {
		gitError(w, http.StatusBadRequest, "Bad request body: "+err.Error())
		return
	}
	br := bufio.NewReaderSize(body, 64<<10)
	cmds, caps, rawCmds, err := readCommands(br)
	if err != nil {
		gitError(w, http.StatusBadRequest, "Bad push: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/x-git-receive-pack-result")
	w.Header().Set("Cache-Control", "no-cache")
	out := &syncWriter{w: flushWriter{w}}
	side := sidebandWriter{w: out, enabled: caps["side-band-64k"] || caps["side-band"]}

	// The pack, spooled to disk within the limit.
	work, err := os.MkdirTemp(s.cfg.WorkDir, "push-"+app.Name+"-")
	if err != nil {
		writeRejection(out, cmds, caps, "internal error", []string{" !     " + err.Error()})
		return
	}
	defer os.RemoveAll(work)
	spool, err := os.Create(filepath.Join(work, "pack"))
	if err != nil {
		writeRejection(out, cmds, caps, "internal error", []string{" !     " + err.Error()})
		return
	}
	defer spool.Close()
	n, err := io.Copy(spool, io.LimitReader(br, s.cfg.MaxPushBytes+1))
	if err != nil {
		writeRejection(out, cmds, caps, "push interrupted", []string{" !     Reading the push failed: " + err.Error()})
		return
	}
	if n > s.cfg.MaxPushBytes {
		// Read (and drop) the rest, so that the client gets the message
		// rather than a broken connection.
		_, _ = io.Copy(io.Discard, io.LimitReader(br, 4*s.cfg.MaxPushBytes))
		writeRejection(out, cmds, caps, "push too large", []string{
			fmt.Sprintf(" !     Push rejected: this push is larger than the %s limit of a push to %s.", humanSize(s.cfg.MaxPushBytes), app.Name),
			" !     Remove large files from the repository's history (or use .slugignore for build inputs).",
		})
		return
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		writeRejection(out, cmds, caps, "internal error", []string{" !     " + err.Error()})
		return
	}
	if len(cmds) == 0 {
		io.WriteString(out, "0000")
		return
	}

	// One push (and build) of an app at a time.
	lease, err := s.takeLease(ctx, app, user, func(msg string) { side.message(msg) })
	if err != nil {
		writeRejection(out, cmds, caps, "another push is in progress", []string{" !     " + err.Error()})
		return
	}
	defer lease.release()

	dir, err := s.checkout(ctx, app)
	if err != nil {
		s.log.Warn("git: restoring a repository", "app", app.Name, "err", err)
		writeRejection(out, cmds, caps, "repository unavailable", []string{" !     The repository of " + app.Name + " cannot be restored right now: " + err.Error()})
		return
	}
	defer os.RemoveAll(dir)
	before := s.refs(ctx, dir)
	hookDir := filepath.Join(work, "hook")
	if err := os.Mkdir(hookDir, 0o700); err == nil {
		for _, f := range []string{"request", "output"} {
			if err = syscall.Mkfifo(filepath.Join(hookDir, f), 0o600); err != nil {
				break
			}
		}
	}
	if err != nil {
		writeRejection(out, cmds, caps, "internal error", []string{" !     " + err.Error()})
		return
	}
	hctx, stopHook := context.WithCancel(ctx)
	hookDone := make(chan bool, 1)
	go func() { hookDone <- s.serveHook(hctx, hookDir, app, user, dir, lease) }()

	cmd := exec.Command(s.cfg.Git, "receive-pack", "--stateless-rpc", ".")
	cmd.Dir = dir
	cmd.Env = append(gitEnv(), "SLIPWAY_HOOK_DIR="+hookDir)
	cmd.Stdin = io.MultiReader(bytes.NewReader(rawCmds), spool)
	cmd.Stdout = out
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	if err == nil {
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err = <-done:
		case <-ctx.Done():
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			err = <-done
		}
	}
	stopHook()
	accepted := <-hookDone
	if err != nil {
		s.log.Warn("git receive-pack failed", "app", app.Name, "err", err, "stderr", strings.TrimSpace(stderr.String()))
	}
	after := s.refs(context.WithoutCancel(ctx), dir)
	if !accepted || sameRefs(before, after) {
		return
	}
	if err := s.storeRepo(context.WithoutCancel(ctx), app, dir, lease, after); err != nil {
		s.log.Error("git: the push was accepted but the repository could not be stored", "app", app.Name, "err", err)
	}
}

// refs lists a repository's refs (name → object id).
func (s *Service) refs(ctx context.Context, dir string) map[string]string {
	out, err := s.git(ctx, dir, nil, "for-each-ref", "--format=%(refname) %(objectname)")
	refs := map[string]string{}
	if err != nil {
		return refs
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if name, id, ok := strings.Cut(line, " "); ok {
			refs[name] = id
		}
	}
	return refs
}

func sameRefs(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// storeRepo puts the repository in the blob store and records it (only if
// this push still holds the lease).
func (s *Service) storeRepo(ctx context.Context, app *fsm.App, dir string, l *lease, refs map[string]string) error {
	f, err := os.CreateTemp(s.cfg.WorkDir, "repo-*.tgz")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	skip := func(rel string, _ os.DirEntry) bool { return rel == "hooks" }
	if err := WriteTarGz(f, dir, "", gzip.BestSpeed, skip); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	st, err := s.cfg.Blobs.Put(ctx, "repo", f, "")
	if err != nil {
		return err
	}
	head := refs["refs/heads/main"]
	if head == "" {
		head = refs["refs/heads/master"]
	}
	_, err = s.submit(ctx, l.userID, fsm.CmdRepoUpdate, fsm.RepoUpdate{AppID: app.ID, LeaseID: l.id, Digest: st.Digest, Size: st.Size, Head: head})
	return err
}

// lease is a held push lease, renewed until released.
type lease struct {
	s       *Service
	appID   string
	id      string
	userID  string
	stop    context.CancelFunc
	done    chan struct{}
	lostMu  sync.Mutex
	lostErr error
}

// takeLease takes the app's push lease, waiting up to LeaseWait for another
// push to finish (saying so through msg).
func (s *Service) takeLease(ctx context.Context, app *fsm.App, user *fsm.User, msg func(string)) (*lease, error) {
	l := &lease{s: s, appID: app.ID, id: uuid.NewString(), userID: user.ID, done: make(chan struct{})}
	deadline := s.cfg.Now().Add(s.cfg.LeaseWait)
	said := false
	for {
		_, err := s.submit(ctx, user.ID, fsm.CmdRepoLease, fsm.RepoLeaseTake{AppID: app.ID, LeaseID: l.id, Holder: s.cfg.Node, Purpose: "push", TTL: s.cfg.LeaseTTL})
		if err == nil {
			break
		}
		e, ok := fsm.AsError(err)
		if !ok || e.Code != fsm.CodeConflict {
			return nil, fmt.Errorf("The cluster cannot take the push right now: %v", err)
		}
		if !s.cfg.Now().Before(deadline) {
			return nil, fmt.Errorf("Push rejected: %s Try again when it has finished.", e.Message)
		}
		if !said {
			said = true
			msg("       " + e.Message + " Waiting for it to finish...")
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	rctx, cancel := context.WithCancel(s.ctx)
	l.stop = cancel
	go l.renew(rctx)
	return l, nil
}

func (l *lease) renew(ctx context.Context) {
	defer close(l.done)
	t := time.NewTicker(l.s.cfg.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, err := l.s.submit(ctx, l.userID, fsm.CmdRepoLease, fsm.RepoLeaseTake{AppID: l.appID, LeaseID: l.id, Holder: l.s.cfg.Node, Purpose: "push", TTL: l.s.cfg.LeaseTTL})
		if e, ok := fsm.AsError(err); ok && e.Code == fsm.CodeConflict {
			l.lostMu.Lock()
			l.lostErr = e
			l.lostMu.Unlock()
			return
		}
	}
}

func (l *lease) release() {
	l.stop()
	<-l.done
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := l.s.submit(ctx, l.userID, fsm.CmdRepoUnlease, fsm.RepoUnlease{AppID: l.appID, LeaseID: l.id}); err != nil {
		l.s.log.Warn("releasing a push lease (it expires by itself)", "app", l.appID, "err", err)
	}
}

// openFIFO opens a FIFO, blocking until the other side opens it or ctx
// ends (then the pending open is released by opening the other side here).
func openFIFO(ctx context.Context, path string, flag int) (*os.File, error) {
	type res struct {
		f   *os.File
		err error
	}
	ch := make(chan res, 1)
	go func() {
		f, err := os.OpenFile(path, flag, 0)
		ch <- res{f, err}
	}()
	select {
	case r := <-ch:
		return r.f, r.err
	case <-ctx.Done():
		if o, err := os.OpenFile(path, os.O_RDWR, 0); err == nil {
			o.Close()
		}
		if r := <-ch; r.f != nil {
			r.f.Close()
		}
		return nil, ctx.Err()
	}
}

// serveHook answers the pre-receive hook: it reads the pushed refs, decides
// (building a push to main or master), streams the output to the hook and
// ends it with its exit status. It returns whether the push was accepted
// (false also when the hook never ran).
func (s *Service) serveHook(ctx context.Context, dir string, app *fsm.App, user *fsm.User, repo string, l *lease) bool {
	req, err := openFIFO(ctx, filepath.Join(dir, "request"), os.O_RDONLY)
	if err != nil {
		return false
	}
	raw, err := io.ReadAll(io.LimitReader(req, 1<<20))
	req.Close()
	if err != nil || len(raw) == 0 {
		return false
	}
	head, refLines, _ := strings.Cut(string(raw), "\n\n")
	var env []string
	for _, kv := range strings.Split(head, "\n") {
		if k, v, ok := strings.Cut(kv, "="); ok && v != "" && strings.HasPrefix(k, "GIT_") {
			env = append(env, k+"="+v)
		}
	}
	var cmds []refUpdate
	for _, line := range strings.Split(strings.TrimSpace(refLines), "\n") {
		if f := strings.Fields(line); len(f) == 3 {
			cmds = append(cmds, refUpdate{Old: f[0], New: f[1], Ref: f[2]})
		}
	}
	outF, err := openFIFO(ctx, filepath.Join(dir, "output"), os.O_WRONLY)
	if err != nil {
		return false
	}
	defer outF.Close()
	w := &hookWriter{w: outF}
	ok := s.preReceive(ctx, app, user, repo, env, cmds, w, l)
	w.flushPartial()
	status := 1
	if ok {
		status = 0
	}
	fmt.Fprintf(outF, "%s%d\n", hookExitPrefix, status)
	return ok
}

// hookWriter writes whole lines to the hook (the relay reads lines), so a
// line of output never starts with the exit marker by accident.
type hookWriter struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

func (h *hookWriter) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.buf = append(h.buf, p...)
	i := bytes.LastIndexByte(h.buf, '\n')
	if i < 0 {
		return len(p), nil
	}
	chunk := bytes.ReplaceAll(h.buf[:i+1], []byte{1}, []byte{' '})
	h.buf = append(h.buf[:0], h.buf[i+1:]...)
	if _, err := h.w.Write(chunk); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (h *hookWriter) flushPartial() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.buf) > 0 {
		h.w.Write(append(bytes.ReplaceAll(h.buf, []byte{1}, []byte{' '}), '\n'))
		h.buf = nil
	}
}

// deployRef picks the pushed ref that deploys: main, else master.
func deployRef(cmds []refUpdate) (refUpdate, bool) {
	for _, want := range []string{"refs/heads/main", "refs/heads/master"} {
		for _, c := range cmds {
			if c.Ref == want && !c.deletes() {
				return c, true
			}
		}
	}
	return refUpdate{}, false
}

// preReceive decides a push: refs must not have moved since the client
// read them; a push to main or master is built and released, and accepted
// only if the build succeeded.
func (s *Service) preReceive(ctx context.Context, app *fsm.App, user *fsm.User, repo string, env []string, cmds []refUpdate, out io.Writer, l *lease) bool {
	cur := s.refs(ctx, repo)
	for _, c := range cmds {
		have := cur[c.Ref]
		if have == "" {
			have = zeroID
		}
		if have != c.Old {
			fmt.Fprintf(out, " !     Push rejected: %s changed since you fetched it (another push went first).\n", strings.TrimPrefix(c.Ref, "refs/heads/"))
			fmt.Fprintln(out, " !     Fetch, merge and push again (or force the push).")
			return false
		}
	}
	c, ok := deployRef(cmds)
	if !ok {
		var names []string
		for _, c := range cmds {
			names = append(names, strings.TrimPrefix(c.Ref, "refs/heads/"))
		}
		fmt.Fprintf(out, "Pushed to non-deploy branch %s: stored, not built (push main or master to deploy).\n", strings.Join(names, ", "))
		return true
	}
	if l.lost() != nil {
		fmt.Fprintf(out, " !     Push rejected: %v\n", l.lost())
		return false
	}
	fmt.Fprintln(out, "Building source:")
	fmt.Fprintln(out)
	subject, _ := s.git(ctx, repo, env, "log", "-1", "--format=%s", c.New)
	b := fsm.Build{ID: uuid.NewString(), AppID: app.ID, Origin: fsm.BuildFromGit, SourceVersion: c.New,
		SourceDescription: truncateText(strings.TrimSpace(string(subject)), 200)}
	res, err := s.submit(ctx, user.ID, fsm.CmdBuildCreate, fsm.BuildCreate{Build: b})
	if err != nil {
		fmt.Fprintf(out, " !     Push rejected: the build could not be recorded: %v\n", err)
		return false
	}
	if err := res.Decode(&b); err != nil {
		return false
	}
	s.event(app.ID, user.ID, "Build started")
	digest, err := s.archiveSource(ctx, repo, env, c.New)
	if err == nil {
		err = s.startBuild(ctx, &b, digest)
	}
	if err != nil {
		fmt.Fprintf(out, " !     %v\n", err)
		s.failBuild(ctx, &b, err.Error(), nil)
		fmt.Fprintf(out, " !     Push rejected to %s.\n", app.Name)
		return false
	}
	var seen bytes.Buffer
	if err := s.Follow(ctx, b.ID, io.MultiWriter(out, &seen), nil); err != nil {
		if ctx.Err() != nil {
			return false
		}
		fmt.Fprintf(out, " !     Following the build output failed: %v\n", err)
	}
	final, err := s.waitBuild(ctx, b.ID)
	if err != nil {
		return false
	}
	if final.Status != fsm.BuildSucceeded {
		if final.Message != "" && !strings.Contains(seen.String(), final.Message) {
			fmt.Fprintf(out, " !     %s\n", final.Message)
			fmt.Fprintln(out)
			fmt.Fprintln(out, " !     Push failed")
		}
		fmt.Fprintln(out, "Verifying deploy...")
		fmt.Fprintln(out)
		fmt.Fprintf(out, " !     Push rejected to %s.\n", app.Name)
		fmt.Fprintln(out)
		return false
	}
	if rel, ok := s.cfg.Snap().Release(app.ID, final.ReleaseID); ok && rel.Status == fsm.ReleasePending {
		fmt.Fprintln(out, "Running release command...")
		st := s.waitRelease(ctx, app.ID, rel.ID)
		switch st {
		case fsm.ReleaseSucceeded:
			fmt.Fprintln(out, "Waiting for release.... done.")
		case fsm.ReleaseFailed:
			fmt.Fprintf(out, " !     Release command failed: v%d was not deployed; v%d keeps running.\n", rel.Version, currentVersion(s.cfg.Snap(), app.ID))
			fmt.Fprintf(out, " !     See its output with: heroku logs --app %s --dyno release.%d\n", app.Name, rel.Version)
		default:
			fmt.Fprintln(out, "Release command still running: follow it with heroku releases.")
		}
	}
	fmt.Fprintln(out, "Verifying deploy... done.")
	return true
}

func currentVersion(snap *fsm.Snap, appID string) int {
	if r := snap.CurrentRelease(appID); r != nil {
		return r.Version
	}
	return 0
}

// waitRelease waits for a pending release to be decided.
func (s *Service) waitRelease(ctx context.Context, appID, relID string) string {
	deadline := time.Now().Add(fsm.ReleasePhaseTimeout + time.Minute)
	for time.Now().Before(deadline) {
		snap := s.cfg.Snap()
		ws := snap.Watch("releases")
		if r, ok := snap.Release(appID, relID); !ok || r.Status != fsm.ReleasePending {
			if !ok {
				return ""
			}
			return r.Status
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = ws.WatchCtx(wctx)
		cancel()
		if ctx.Err() != nil {
			return ""
		}
	}
	return fsm.ReleasePending
}

// archiveSource stores the pushed commit's tree as a source tarball (git
// archive, reading the pushed objects from git's quarantine).
func (s *Service) archiveSource(ctx context.Context, repo string, env []string, commit string) (string, error) {
	cmd := exec.CommandContext(ctx, s.cfg.Git, "archive", "--format=tar.gz", commit)
	cmd.Dir = repo
	cmd.Env = append(gitEnv(), env...)
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return "", err
	}
	st, perr := s.cfg.Blobs.Put(ctx, "source", pipe, "")
	werr := cmd.Wait()
	if werr != nil {
		return "", fmt.Errorf("Archiving the pushed commit failed: %v: %s", werr, strings.TrimSpace(stderr.String()))
	}
	if perr != nil {
		return "", fmt.Errorf("Storing the source failed: %v", perr)
	}
	return st.Digest, nil
}

func (l *lease) lost() error {
	l.lostMu.Lock()
	defer l.lostMu.Unlock()
	if l.lostErr != nil {
		return errors.New("the push lease was lost: another push took over")
	}
	return nil
}
