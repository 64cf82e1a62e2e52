package deploy

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/slipwayhq/slipway/blob"
	"github.com/slipwayhq/slipway/cluster"
	"github.com/slipwayhq/slipway/fsm"
	"github.com/slipwayhq/slipway/logplex"
)

// Blobs is the node's blob store (*blob.Store; blob.Memory in tests).
type Blobs interface {
	Put(ctx context.Context, kind string, r io.Reader, want string) (*blob.Stored, error)
	Open(ctx context.Context, digest string) (io.ReadCloser, int64, error)
}

// Cluster is what the service needs from its node (*cluster.Node); nil in
// single-node tests.
type Cluster interface {
	Name() string
	Members() []cluster.Member
	RPCAddr(name string) (string, bool)
	RPCRequest(ctx context.Context, method, addr, path string, body io.Reader) (*http.Response, error)
	HandleRPC(pattern string, h http.Handler)
	AddLeaderHook(f func(ctx context.Context))
}

// Defaults.
const (
	DefaultBuildSize    = "Performance-M"
	DefaultMaxPushBytes = 1 << 30
	DefaultLeaseTTL     = time.Minute
	DefaultLeaseWait    = 2 * time.Minute
	DefaultSourceTTL    = 24 * time.Hour
	// buildGrace is how long past its time limit a build dyno may run
	// before the scheduler stops it (the compiler stops itself first).
	buildGrace = 2 * time.Minute
)

// Config wires a Service to its node.
type Config struct {
	// Node is this node's name.
	Node string
	// Snap and Submit read and write the replicated state.
	Snap   func() *fsm.Snap
	Submit func(ctx context.Context, cmd fsm.Command) (*fsm.Result, error)
	Blobs  Blobs
	// Cluster reaches the other nodes (output of builds streaming elsewhere).
	Cluster Cluster
	// Events receives app[api] lines.
	Events logplex.Sink
	// Authenticate resolves a request's token (git pushes).
	Authenticate func(*http.Request) (*fsm.User, error)
	// APIURL is this node's API URL as build dynos reach it; APIURLs lists
	// every node's (the build dyno falls back to them).
	APIURL  string
	APIURLs func() []string
	// WebURL is an app's URL.
	WebURL func(app string) string
	// Binary is the slipway executable put in the builder slug.
	Binary string
	// WorkDir holds temporary repositories and pushes.
	WorkDir string
	// BuildSize is the build dyno's size; BuildTimeout the build time limit.
	BuildSize    string
	BuildTimeout time.Duration
	// MaxPushBytes bounds one git push (the pack sent); MaxSlugBytes a
	// compressed slug.
	MaxPushBytes int64
	MaxSlugBytes int64
	// LeaseTTL is how long a push lease lasts between renewals; LeaseWait
	// how long a push waits for another to finish before it is refused.
	LeaseTTL  time.Duration
	LeaseWait time.Duration
	// BuildEnv is added to the build dyno's environment (GOPROXY, proxies).
	BuildEnv map[string]string
	// Git is the git program (default "git").
	Git string
	// HTTP fetches source URLs (default: a client with a 10-minute timeout).
	HTTP   *http.Client
	Logger *slog.Logger
	Now    func() time.Time
}

// Service is one node's deployment system.
type Service struct {
	cfg Config
	log *slog.Logger
	hub *outputHub

	builderMu     sync.Mutex
	builderDigest string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New checks the configuration and mounts the internal RPC handler.
func New(cfg Config) (*Service, error) {
	if cfg.Node == "" || cfg.Snap == nil || cfg.Submit == nil || cfg.Blobs == nil || cfg.WorkDir == "" {
		return nil, errors.New("deploy: Node, Snap, Submit, Blobs and WorkDir are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.BuildSize == "" {
		cfg.BuildSize = DefaultBuildSize
	}
	if cfg.BuildTimeout <= 0 {
		cfg.BuildTimeout = DefaultBuildTimeout
	}
	if cfg.MaxPushBytes <= 0 {
		cfg.MaxPushBytes = DefaultMaxPushBytes
	}
	if cfg.MaxSlugBytes <= 0 {
		cfg.MaxSlugBytes = DefaultMaxSlugBytes
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.LeaseWait <= 0 {
		cfg.LeaseWait = DefaultLeaseWait
	}
	if cfg.Git == "" {
		cfg.Git = "git"
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 10 * time.Minute}
	}
	if cfg.WebURL == nil {
		cfg.WebURL = func(app string) string { return "http://" + app + ".localhost/" }
	}
	if cfg.Events == nil {
		cfg.Events = logplex.SlogSink{Log: cfg.Logger}
	}
	if err := os.MkdirAll(cfg.WorkDir, 0o700); err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	// Leftovers of a previous run (pushes in flight when the node stopped).
	if ents, err := os.ReadDir(cfg.WorkDir); err == nil {
		for _, e := range ents {
			_ = os.RemoveAll(filepath.Join(cfg.WorkDir, e.Name()))
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{cfg: cfg, log: cfg.Logger.With("component", "deploy"), hub: newOutputHub(DefaultMaxOutputBytes), ctx: ctx, cancel: cancel}
	if cfg.Cluster != nil {
		cfg.Cluster.HandleRPC(rpcOutputPrefix, http.HandlerFunc(s.handleRPCOutput))
		cfg.Cluster.AddLeaderHook(s.lead)
	}
	return s, nil
}

// Close stops the service's background work (source fetches, lease
// renewals); pushes in flight end with an error.
func (s *Service) Close() {
	s.cancel()
	s.wg.Wait()
}

func (s *Service) submit(ctx context.Context, by, typ string, payload any) (*fsm.Result, error) {
	cmd, err := fsm.NewCommand(typ, uuid.NewString(), s.cfg.Now(), by, payload)
	if err != nil {
		return nil, err
	}
	res, err := s.cfg.Submit(ctx, cmd)
	if err != nil {
		return nil, err
	}
	if res.Err != nil {
		return res, res.Err
	}
	return res, nil
}

// event writes an app[api] line ("... by user EMAIL").
func (s *Service) event(appID, userID, format string, args ...any) {
	snap := s.cfg.Snap()
	name := ""
	if a, ok := snap.App(appID); ok {
		name = a.Name
	}
	text := fmt.Sprintf(format, args...)
	if u, ok := snap.User(userID); ok && userID != "" {
		text += " by user " + u.Email
	}
	s.cfg.Events.Emit(logplex.Line{AppID: appID, AppName: name, Time: s.cfg.Now(), Source: logplex.SourceApp, Proc: "api", Text: text})
}

// lead runs on the region leader: it forgets uploaded sources after a day.
func (s *Service) lead(ctx context.Context) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		var old []string
		cutoff := s.cfg.Now().Add(-DefaultSourceTTL)
		for _, src := range s.cfg.Snap().Sources() {
			if src.CreatedAt.Before(cutoff) {
				old = append(old, src.ID)
			}
		}
		if len(old) > 0 {
			if _, err := s.submit(ctx, "", fsm.CmdSourceDelete, fsm.SourceDelete{IDs: old}); err != nil && ctx.Err() == nil {
				s.log.Warn("forgetting expired sources", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// builder returns the digest of the builder slug: the slipway binary at
// ./app/bin/slipway, stored in the blob store (once per process, again if
// it was collected).
func (s *Service) builder(ctx context.Context) (string, error) {
	s.builderMu.Lock()
	defer s.builderMu.Unlock()
	if s.builderDigest != "" {
		if _, ok := s.cfg.Snap().Blob(s.builderDigest); ok {
			return s.builderDigest, nil
		}
	}
	if s.cfg.Binary == "" {
		return "", errors.New("no slipway binary to build with")
	}
	f, err := os.CreateTemp(s.cfg.WorkDir, "builder-*.tgz")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := writeBuilder(f, s.cfg.Binary); err != nil {
		return "", fmt.Errorf("making the builder slug: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	st, err := s.cfg.Blobs.Put(ctx, "builder", f, "")
	if err != nil {
		return "", fmt.Errorf("storing the builder slug: %w", err)
	}
	s.builderDigest = st.Digest
	return st.Digest, nil
}

func writeBuilder(w io.Writer, binary string) error {
	bin, err := os.Open(binary)
	if err != nil {
		return err
	}
	defer bin.Close()
	st, err := bin.Stat()
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	for _, d := range []string{"./app/", "./app/bin/"} {
		if err := tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
			return err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: "./app/bin/slipway", Typeflag: tar.TypeReg, Mode: 0o755, Size: st.Size()}); err != nil {
		return err
	}
	if _, err := io.Copy(tw, bin); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

// BuildRequest is a build from the Builds API.
type BuildRequest struct {
	App        *fsm.App
	User       *fsm.User
	URL        string
	Checksum   string // "SHA256:<hex>" (optional)
	Version    string
	Buildpacks []string
}

// CreateBuild records an API build and, in the background, fetches its
// source and starts its build dyno. It returns the pending build.
func (s *Service) CreateBuild(ctx context.Context, req BuildRequest) (*fsm.Build, error) {
	u, err := url.Parse(req.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fsm.Errorf(fsm.CodeInvalidParams, "source_blob.url must be an http or https URL of a tarball.")
	}
	want := ""
	if req.Checksum != "" {
		d, ok := parseChecksum(req.Checksum)
		if !ok {
			return nil, fsm.Errorf(fsm.CodeInvalidParams, "source_blob.checksum %q is not of the form SHA256:<64 hex digits>.", req.Checksum)
		}
		want = d
	}
	if e := fsm.ValidBuildpacks(req.Buildpacks); e != nil {
		return nil, e
	}
	b := fsm.Build{ID: uuid.NewString(), AppID: req.App.ID, Origin: fsm.BuildFromAPI, SourceURL: req.URL,
		SourceChecksum: req.Checksum, SourceVersion: req.Version, Buildpacks: req.Buildpacks}
	res, err := s.submit(ctx, req.User.ID, fsm.CmdBuildCreate, fsm.BuildCreate{Build: b})
	if err != nil {
		return nil, err
	}
	var out fsm.Build
	if err := res.Decode(&out); err != nil {
		return nil, err
	}
	s.event(out.AppID, out.UserID, "Build started")
	buf := s.hub.get(out.ID, true)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		// Fetching the source and starting the dyno (which may store the
		// builder slug first) are not part of the build's time limit.
		ctx, cancel := context.WithTimeout(s.ctx, 10*time.Minute)
		defer cancel()
		digest, err := s.fetchSource(ctx, req.URL, want, buf)
		if err == nil {
			err = s.startBuild(ctx, &out, digest)
		}
		if err != nil {
			fmt.Fprintf(buf, " !     %v\n", err)
			s.failBuild(ctx, &out, err.Error(), buf)
		}
	}()
	return &out, nil
}

func parseChecksum(c string) (string, bool) {
	algo, hexs, ok := strings.Cut(c, ":")
	if !ok || !strings.EqualFold(algo, "sha256") || len(hexs) != 64 {
		return "", false
	}
	if _, err := hex.DecodeString(hexs); err != nil {
		return "", false
	}
	return "sha256:" + strings.ToLower(hexs), true
}

// maxSourceBytes bounds a source tarball fetched for a build.
const maxSourceBytes = 1 << 30

// fetchSource downloads a source tarball into the blob store, checking that
// it unpacks safely.
func (s *Service) fetchSource(ctx context.Context, u, want string, out io.Writer) (string, error) {
	fmt.Fprintf(out, "-----> Fetching source from %s\n", redactURL(u))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", fmt.Errorf("Unable to fetch source: %v", err)
	}
	resp, err := s.cfg.HTTP.Do(req)
	if err != nil {
		return "", fmt.Errorf("Unable to fetch source from %s: %v", redactURL(u), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("Unable to fetch source from %s: the server answered %s", redactURL(u), resp.Status)
	}
	cr := blob.NewCheckedReader(&limitReader{r: resp.Body, left: maxSourceBytes}, blob.ArchiveLimits{MaxUncompressed: DefaultMaxSourceBytes})
	defer cr.Close()
	st, err := s.cfg.Blobs.Put(ctx, "source", cr, want)
	if err != nil {
		var ae *blob.ArchiveError
		var me *blob.MismatchError
		switch {
		case errors.Is(err, errTooLarge):
			return "", fmt.Errorf("The source tarball is larger than %s.", humanSize(maxSourceBytes))
		case errors.As(err, &ae):
			return "", fmt.Errorf("The source tarball was refused: %s. Give a gzip-compressed tarball of the app with no absolute paths, no \"..\" and no links out of it.", ae.Error())
		case errors.As(err, &me):
			return "", fmt.Errorf("Source checksum mismatch: the tarball has checksum SHA256:%s, not the one given.", strings.TrimPrefix(me.Got, "sha256:"))
		}
		return "", fmt.Errorf("Storing the source failed: %v", err)
	}
	fmt.Fprintf(out, "       Fetched %s\n", humanSize(st.Size))
	return st.Digest, nil
}

// redactURL hides a URL's query (signatures) and credentials.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "the given URL"
	}
	p.User, p.RawQuery = nil, ""
	return p.String()
}

var errTooLarge = errors.New("too large")

type limitReader struct {
	r    io.Reader
	left int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left < 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return 0, errTooLarge
	}
	return n, err
}

// startBuild records the build's source and creates its build dyno.
func (s *Service) startBuild(ctx context.Context, b *fsm.Build, sourceDigest string) error {
	builder, err := s.builder(ctx)
	if err != nil {
		return fmt.Errorf("Preparing the build failed: %v", err)
	}
	tok := make([]byte, 32)
	if _, err := rand.Read(tok); err != nil {
		return err
	}
	token := hex.EncodeToString(tok)
	sum := sha256.Sum256([]byte(token))
	urls := []string{strings.TrimSuffix(s.cfg.APIURL, "/")}
	if s.cfg.APIURLs != nil {
		for _, u := range s.cfg.APIURLs() {
			if u = strings.TrimSuffix(u, "/"); u != "" && u != urls[0] {
				urls = append(urls, u)
			}
		}
	}
	env := map[string]string{}
	for k, v := range s.cfg.BuildEnv {
		env[k] = v
	}
	env["SLIPWAY_BUILD_ID"], env["SLIPWAY_BUILD_TOKEN"], env["SLIPWAY_BUILD_URLS"] = b.ID, token, strings.Join(urls, ",")
	exp := s.cfg.Now().Add(s.cfg.BuildTimeout + buildGrace)
	d := fsm.Dyno{ID: uuid.NewString(), Command: "bin/slipway slug-compile", Size: s.cfg.BuildSize, SlugDigest: builder, Env: env, ExpiresAt: &exp}
	_, err = s.submit(ctx, b.UserID, fsm.CmdBuildStart, fsm.BuildStart{BuildID: b.ID, SourceDigest: sourceDigest, TokenHash: hex.EncodeToString(sum[:]), Dyno: d})
	if err != nil {
		return fmt.Errorf("Starting the build failed: %v", err)
	}
	return nil
}

// failBuild records a build that failed before (or outside) its dyno.
func (s *Service) failBuild(ctx context.Context, b *fsm.Build, msg string, buf *outputBuf) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if _, err := s.submit(fctx, b.UserID, fsm.CmdBuildFinish, fsm.BuildFinish{BuildID: b.ID, Status: fsm.BuildFailed, Message: msg}); err != nil {
		s.log.Warn("recording a failed build", "build", b.ID, "err", err)
		return
	}
	s.event(b.AppID, b.UserID, "Build failed")
	if buf != nil {
		buf.Close()
		s.storeOutput(fctx, b.ID, buf)
	}
}

// storeOutput stores a build's ended output and records it.
func (s *Service) storeOutput(ctx context.Context, buildID string, buf *outputBuf) {
	data, _ := buf.Bytes()
	st, err := s.cfg.Blobs.Put(ctx, "output", strings.NewReader(string(data)), "")
	if err != nil {
		s.log.Warn("storing build output", "build", buildID, "err", err)
		return
	}
	if _, err := s.submit(ctx, "", fsm.CmdBuildOutput, fsm.BuildOutput{BuildID: buildID, OutputDigest: st.Digest}); err != nil {
		s.log.Warn("recording build output", "build", buildID, "err", err)
	}
}

// waitBuild waits until a build is no longer pending (or ctx ends).
func (s *Service) waitBuild(ctx context.Context, id string) (*fsm.Build, error) {
	for {
		snap := s.cfg.Snap()
		ws := snap.Watch("builds")
		b, ok := snap.Build(id)
		if !ok {
			return nil, fsm.Errorf(fsm.CodeNotFound, "Couldn't find that build.")
		}
		if b.Status != fsm.BuildPending {
			return b, nil
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = ws.WatchCtx(wctx)
		cancel()
		if ctx.Err() != nil {
			return b, ctx.Err()
		}
	}
}
