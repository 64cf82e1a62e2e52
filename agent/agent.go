package agent

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/slipwayhq/slipway/api"
	"github.com/slipwayhq/slipway/blob"
	"github.com/slipwayhq/slipway/cluster"
	"github.com/slipwayhq/slipway/dyno"
	"github.com/slipwayhq/slipway/fsm"
	"github.com/slipwayhq/slipway/logplex"
)

// Agent is a running node.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	fsm     *fsm.FSM
	node    *cluster.Node
	api     *api.Server
	httpSrv *http.Server
	apiLn   net.Listener
	metrics *Metrics
	blobs   *blob.Store       // the node's blob store (agent/blob.go)
	logs    *logplex.Pipeline // the node's log Sink (agent/logs.go)
	dynos   *dyno.Supervisor  // the node's dyno supervisor (agent/dynos.go)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Options are the parts of an agent that tests replace.
type Options struct {
	Logger  *slog.Logger
	Version string
	// Network replaces the host network (in-process tests).
	Network cluster.Network
	// Timing overrides Raft/gossip timing (in-process tests).
	Timing *cluster.Timing
	// Metrics, when nil, is created (and installed as go-metrics' global
	// sink, which is what hashicorp/raft reports to).
	Metrics *Metrics
}

// Start brings a node up. It returns once the node listens on every port;
// joining and electing a leader continue in the background.
func Start(cfg Config, opts Options) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("node", cfg.NodeName)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	key, err := cfg.encryptKey()
	if err != nil {
		return nil, err
	}
	portFirst, portLast, err := cfg.dynoPorts()
	if err != nil {
		return nil, err
	}
	f, err := fsm.New(log.With("component", "fsm"))
	if err != nil {
		return nil, err
	}
	m := opts.Metrics
	if m == nil {
		if m, err = NewMetrics(true); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Agent{cfg: cfg, log: log, fsm: f, metrics: m, ctx: ctx, cancel: cancel}

	cc := cluster.Config{
		NodeName: cfg.NodeName, Region: cfg.Region, Zone: cfg.Zone, DataDir: cfg.DataDir,
		BindAddr: cfg.BindAddr, AdvertiseAddr: cfg.AdvertiseAddr,
		RaftPort: cfg.Ports.Raft, GossipPort: cfg.Ports.Gossip, WANPort: cfg.Ports.WAN, RPCPort: cfg.Ports.RPC,
		APIURL: cfg.apiURL(), RouterURL: cfg.routerURL(), Join: cfg.Join, JoinWAN: cfg.JoinWAN,
		Rendezvous: cfg.rendezvousAddr(), DynoMemoryMB: cfg.dynoMemoryMB(), DynoPortFirst: portFirst, DynoPortLast: portLast,
		BootstrapExpect: cfg.BootstrapExpect, Voters: cfg.Voters,
		DeadServerGrace: cfg.DeadServerGrace.Duration, ServerStabilization: cfg.ServerStabilization.Duration,
		EncryptKey: key, Version: opts.Version, CommandVersion: fsm.CommandVersion,
		Network: opts.Network, Logger: log,
	}
	if opts.Timing != nil {
		cc.Timing = *opts.Timing
	} else {
		mult := cfg.RaftMultiplier
		cc.Timing = cluster.Timing{
			RaftHeartbeat: time.Duration(mult * float64(time.Second)), RaftElection: time.Duration(mult * float64(time.Second)),
			RaftLeaderLease: time.Duration(mult * float64(500*time.Millisecond)), GossipFast: cfg.FastGossip,
			// Followers learn the commit index from the leader's next
			// append; without a new entry that is CommitTimeout (raft's
			// default 50 ms, up to twice that) away. A write forwarded by
			// a follower waits for its own replica to apply it, so a
			// short commit timeout is what makes such writes fast when
			// nothing else is being written (an idle leader sends an
			// empty pipelined append every 5-10 ms per follower).
			RaftCommit: 5 * time.Millisecond,
		}
	}
	node, err := cluster.New(cc, f)
	if err != nil {
		cancel()
		return nil, err
	}
	a.node = node
	a.startLogs(opts.Version)
	node.AddLeaderHook(a.bootstrapAdmin)
	node.AddLeaderHook(a.bootstrapCA)
	node.AddLeaderHook(a.syncNodeRecords)
	if err := a.startBlobs(); err != nil {
		a.stop(context.Background(), false)
		return nil, err
	}
	if err := a.startScheduler(); err != nil {
		a.stop(context.Background(), false)
		return nil, err
	}
	if err := a.startDynos(); err != nil {
		a.stop(context.Background(), false)
		return nil, err
	}
	if err := a.startRendezvous(opts.Network); err != nil {
		a.stop(context.Background(), false)
		return nil, fmt.Errorf("rendezvous listener: %w", err)
	}

	a.startRouter(opts.Network)
	a.api = api.New(a, api.Options{Domain: cfg.Domain, APIURL: cfg.apiURL(), RouterURL: cfg.routerURL(), RendezvousAddr: cfg.rendezvousAddr(),
		Version: opts.Version, Logger: log.With("component", "api"), Metrics: m.Handler(), Events: a.logs, Logs: a.logs,
		Blobs: a.blobs, BlobURLKey: blobURLKey(key)})
	a.startDeploy()
	ln, err := listen(opts.Network, net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.Ports.API)))
	if err != nil {
		a.stop(context.Background(), false)
		return nil, fmt.Errorf("API listener: %w", err)
	}
	a.apiLn = ln
	a.httpSrv = &http.Server{Handler: a.api, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	a.httpSrv.RegisterOnShutdown(a.logs.CloseSessions)
	a.wg.Add(3)
	go func() {
		defer a.wg.Done()
		if err := a.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("API server stopped", "err", err)
		}
	}()
	go func() { defer a.wg.Done(); a.watchDraining() }()
	go func() { defer a.wg.Done(); a.metrics.reportFSM(a.ctx, a.fsm) }()
	log.Info("node started", "region", cfg.Region, "zone", cfg.Zone, "api", cfg.apiURL(), "data_dir", cfg.DataDir)
	return a, nil
}

func listen(n cluster.Network, addr string) (net.Listener, error) {
	if n != nil {
		return n.Listen(addr)
	}
	return net.Listen("tcp", addr)
}

// Node is the agent's cluster node.
func (a *Agent) Node() *cluster.Node { return a.node }

// FSM is the agent's replicated state.
func (a *Agent) FSM() *fsm.FSM { return a.fsm }

// APIURL is the agent's API base URL.
func (a *Agent) APIURL() string { return a.cfg.apiURL() }

// Handler is the agent's API handler (for in-process tests).
func (a *Agent) Handler() http.Handler { return a.api }

// Shutdown stops the node gracefully (leadership transfer, gossip leave).
func (a *Agent) Shutdown(ctx context.Context) error { return a.stop(ctx, true) }

// Kill stops the node as a crash would (for tests).
func (a *Agent) Kill() { _ = a.stop(context.Background(), false) }

func (a *Agent) stop(ctx context.Context, graceful bool) error {
	var errs []error
	if a.httpSrv != nil {
		if graceful {
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := a.httpSrv.Shutdown(sctx); err != nil {
				errs = append(errs, err)
			}
			cancel()
		} else {
			_ = a.httpSrv.Close()
		}
	}
	a.cancel()
	if a.node != nil {
		if graceful {
			errs = append(errs, a.node.Shutdown(ctx))
		} else {
			a.node.Kill()
		}
	}
	a.wg.Wait()
	return errors.Join(errs...)
}

// api.Backend implementation.

// Snap implements api.Backend.
func (a *Agent) Snap() *fsm.Snap { return a.fsm.Snap() }

// Cluster implements api.Backend.
func (a *Agent) Cluster() api.Cluster { return a.node }

// Linearize implements api.Backend.
func (a *Agent) Linearize(ctx context.Context) error { return a.node.WaitForLinearizable(ctx) }

// Submit implements api.Backend: replicate, then wait until the local
// replica has applied the command so the caller reads its own write.
func (a *Agent) Submit(ctx context.Context, cmd fsm.Command) (*fsm.Result, error) {
	b, err := cmd.Encode()
	if err != nil {
		return nil, err
	}
	idx, raw, err := a.node.Apply(ctx, b)
	if err != nil {
		return nil, err
	}
	var res fsm.Result
	if err := json.Unmarshal(raw, &res); err != nil {
		return nil, fmt.Errorf("decoding command result: %w", err)
	}
	if res.Index == 0 {
		res.Index = idx
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := a.fsm.WaitForIndex(wctx, res.Index); err != nil {
		// The write is committed; only this replica lags. Say so rather
		// than pretend it failed.
		a.log.Warn("write committed but local replica is behind", "index", res.Index, "err", err)
	}
	return &res, nil
}

func (a *Agent) propose(ctx context.Context, typ string, payload any) (*fsm.Result, error) {
	cmd, err := fsm.NewCommand(typ, uuid.NewString(), time.Now(), "", payload)
	if err != nil {
		return nil, err
	}
	return a.Submit(ctx, cmd)
}

// bootstrapAdmin runs on the leader: when the cluster has no admin yet it
// registers the initial admin token (from the configured file, or a new one
// written to <data_dir>/admin-token with mode 0600).
func (a *Agent) bootstrapAdmin(ctx context.Context) {
	for _, u := range a.fsm.Snap().Users() {
		if u.Admin {
			return
		}
	}
	token, path, generated, err := a.initialToken()
	if err != nil {
		a.log.Error("cannot create the initial admin token", "err", err)
		return
	}
	email := a.cfg.AdminEmail
	if email == "" {
		email = "admin@" + a.cfg.Domain
	}
	payload := fsm.AdminBootstrap{
		User:  fsm.User{ID: uuid.NewString(), Email: email, Name: "Administrator"},
		Token: fsm.Token{ID: uuid.NewString(), Hash: api.HashToken(token), Description: "initial admin token"},
	}
	for {
		res, err := a.propose(ctx, fsm.CmdAdminBootstrap, payload)
		if err == nil && res.Err == nil {
			a.log.Info("created the admin user and its API token", "email", email, "token_file", path)
			return
		}
		if err == nil && res.Err.Code == fsm.CodeConflict {
			if generated {
				_ = os.Remove(path)
			}
			return
		}
		a.log.Warn("registering the admin token failed, retrying", "err", errors.Join(err, resErr(res)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func resErr(r *fsm.Result) error {
	if r == nil || r.Err == nil {
		return nil
	}
	return r.Err
}

func (a *Agent) initialToken() (token, path string, generated bool, err error) {
	if p := a.cfg.InitialAdminTokenFile; p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", "", false, fmt.Errorf("reading initial admin token file: %w", err)
		}
		t := strings.TrimSpace(string(b))
		if len(t) < 16 {
			return "", "", false, fmt.Errorf("initial admin token in %s is too short (need 16+ characters)", p)
		}
		return t, p, false, nil
	}
	path = filepath.Join(a.cfg.DataDir, "admin-token")
	t, err := NewToken()
	if err != nil {
		return "", "", false, err
	}
	if err := WriteSecretFile(path, t+"\n"); err != nil {
		return "", "", false, err
	}
	return t, path, true, nil
}

// NewToken returns a new random API token.
func NewToken() (string, error) {
	b := make([]byte, 32)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		return "", fmt.Errorf("generating token: %w", err)
	}
	return "slw_" + base64.RawURLEncoding.EncodeToString(b), nil
}

// NewEncryptKey returns a new random base64 gossip/RPC key.
func NewEncryptKey() (string, error) {
	b := make([]byte, 32)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		return "", fmt.Errorf("generating key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// WriteSecretFile writes data to path with mode 0600, atomically.
func WriteSecretFile(path, data string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := tmp.WriteString(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// syncNodeRecords runs on the leader: it keeps a replicated record for every
// region member gossip has seen (region, zone, version), which is where
// operators' settings such as draining live.
func (a *Agent) syncNodeRecords(ctx context.Context) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		snap := a.fsm.Snap()
		for _, m := range a.node.Members() {
			if m.State != cluster.StateAlive || m.Meta.Region != a.cfg.Region {
				continue
			}
			rec, ok := snap.Node(m.Name)
			if ok && rec.Zone == m.Meta.Zone && rec.Region == m.Meta.Region && rec.Version == m.Meta.Version {
				continue
			}
			if _, err := a.propose(ctx, fsm.CmdNodeUpsert, fsm.NodeUpsert{Name: m.Name, Region: m.Meta.Region, Zone: m.Meta.Zone, Version: m.Meta.Version}); err != nil {
				a.log.Debug("recording node", "peer", m.Name, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// watchDraining advertises this node's draining flag (set through the API
// and replicated) in gossip.
func (a *Agent) watchDraining() {
	for {
		snap := a.fsm.Snap()
		ws := snap.Watch("nodes")
		if rec, ok := snap.Node(a.cfg.NodeName); ok {
			a.node.SetDraining(rec.Draining)
		}
		if err := ws.WatchCtx(a.ctx); err != nil {
			return
		}
	}
}
