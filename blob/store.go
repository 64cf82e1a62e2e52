package blob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/slipwayhq/slipway/cluster"
	"github.com/slipwayhq/slipway/fsm"
)

// Cluster is what the store needs from its node; *cluster.Node implements it.
type Cluster interface {
	Name() string
	Region() string
	Zone() string
	// Members lists the region's nodes as gossip sees them.
	Members() []cluster.Member
	// RPCRequest sends an authenticated internal request to addr.
	RPCRequest(ctx context.Context, method, addr, path string, body io.Reader) (*http.Response, error)
	// HandleRPC mounts an internal RPC handler.
	HandleRPC(pattern string, h http.Handler)
	// AddLeaderHook runs f each time the node becomes leader, with a
	// context that ends when leadership is lost.
	AddLeaderHook(f func(ctx context.Context))
}

// State is the replicated state: local reads and writes through Raft. The
// agent implements it.
type State interface {
	Snap() *fsm.Snap
	// Submit replicates cmd and returns its result once the local replica
	// has applied it.
	Submit(ctx context.Context, cmd fsm.Command) (*fsm.Result, error)
}

// Clock tells the time (cluster.Clock satisfies it).
type Clock interface{ Now() time.Time }

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

// Defaults.
const (
	DefaultZones          = 2
	DefaultCopies         = 2
	DefaultGCGrace        = time.Hour
	DefaultGCInterval     = time.Minute
	DefaultRepairInterval = 15 * time.Second
	DefaultRepairDelay    = 10 * time.Second
	DefaultMinFreeBytes   = 256 << 20
)

// Config tunes a store. Zero values take the defaults above.
type Config struct {
	// Dir holds the blobs (<data_dir>/blobs).
	Dir string
	// Zones is how many zones a blob is written to before a Put returns
	// (fewer when the region has fewer alive zones); Copies how many nodes.
	Zones  int
	Copies int
	// GCGrace is how long a blob must stay unreferenced before it is
	// deleted, and how old a local file the state does not list on this
	// node must be before it is removed.
	GCGrace time.Duration
	// GCInterval is how often the collectors run (leader and every node).
	GCInterval time.Duration
	// RepairInterval is how often the leader checks every blob's replicas;
	// RepairDelay is how long a new leader waits before its first check
	// (so that gossip has settled).
	RepairInterval time.Duration
	RepairDelay    time.Duration
	// MinFreeBytes is the free space a node keeps when it accepts a copy
	// from another node (it refuses the copy otherwise). Negative: no check.
	MinFreeBytes int64
	// NoFetchedCopies stops Open from keeping (and recording) a local copy
	// of a blob it streamed from another node.
	NoFetchedCopies bool
	// References lists the digests the state refers to (default References).
	References func(*fsm.Snap) map[string]bool
	Clock      Clock
	Logger     *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.Dir == "" {
		return errors.New("blob store: no directory configured")
	}
	if c.Zones <= 0 {
		c.Zones = DefaultZones
	}
	if c.Copies <= 0 {
		c.Copies = DefaultCopies
	}
	if c.GCGrace <= 0 {
		c.GCGrace = DefaultGCGrace
	}
	if c.GCInterval <= 0 {
		c.GCInterval = DefaultGCInterval
	}
	if c.RepairInterval <= 0 {
		c.RepairInterval = DefaultRepairInterval
	}
	if c.RepairDelay < 0 {
		c.RepairDelay = 0
	} else if c.RepairDelay == 0 {
		c.RepairDelay = DefaultRepairDelay
	}
	if c.MinFreeBytes == 0 {
		c.MinFreeBytes = DefaultMinFreeBytes
	}
	if c.References == nil {
		c.References = References
	}
	if c.Clock == nil {
		c.Clock = wallClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Errors.
var (
	// ErrNotFound: no such blob (in the state, or on any live node).
	ErrNotFound = errors.New("blob not found")
	// ErrNotReplicated: the blob could not be copied to enough zones.
	ErrNotReplicated = errors.New("blob could not be replicated to enough zones")
	// ErrCorrupt: a blob's content does not match its digest.
	ErrCorrupt = errors.New("blob content does not match its digest")
)

// MismatchError is a Put whose content does not have the expected digest.
type MismatchError struct{ Want, Got string }

func (e *MismatchError) Error() string {
	return fmt.Sprintf("content has digest %s, not the expected %s", e.Got, e.Want)
}

// Stored is the result of a Put: the blob's record and the zones its copies
// are in. Note is set when the copies span fewer zones than configured
// because the region has fewer alive zones.
type Stored struct {
	fsm.Blob
	Zones []string `json:"zones"`
	Note  string   `json:"note,omitempty"`
}

// Store is one node's blob store.
type Store struct {
	cfg   Config
	c     Cluster
	st    State
	log   *slog.Logger
	blobs string // <dir>/sha256
	tmp   string // <dir>/tmp

	locks keyedMutex

	gcMu       sync.Mutex
	unrefSince map[string]time.Time // leader: when each blob was first seen unreferenced
}

// New opens (creating) the store's directory and mounts its internal RPC
// handlers and leader hook on c. Call Run to start the node's collector.
func New(cfg Config, c Cluster, st State) (*Store, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Store{cfg: cfg, c: c, st: st, log: cfg.Logger, blobs: filepath.Join(cfg.Dir, "sha256"), tmp: filepath.Join(cfg.Dir, "tmp"),
		unrefSince: map[string]time.Time{}}
	for _, d := range []string{s.blobs, s.tmp} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("blob store directory: %w", err)
		}
	}
	s.mount()
	c.AddLeaderHook(s.lead)
	return s, nil
}

// Run deletes, every GC interval until ctx ends, the local files the state
// does not list on this node (see CollectLocal).
func (s *Store) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.GCInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := s.CollectLocal(); err != nil {
			s.log.Warn("blob: collecting local files", "err", err)
		}
	}
}

// path is where a blob's file lives: <dir>/sha256/<2 hex>/<64 hex>.
func (s *Store) path(digest string) string {
	h := strings.TrimPrefix(digest, "sha256:")
	return filepath.Join(s.blobs, h[:2], h)
}

// Has reports whether this node has a local copy of a blob.
func (s *Store) Has(digest string) bool {
	if fsm.ValidDigest(digest) != nil {
		return false
	}
	_, err := os.Stat(s.path(digest))
	return err == nil
}

// copyBufSize is the streaming buffer: large enough for disk and network
// throughput, small enough that RAM does not grow with the blob.
const copyBufSize = 256 << 10

// writeTemp streams r into a new temporary file, hashing it, and syncs it.
// The caller removes the file (or renames it into place).
func (s *Store) writeTemp(r io.Reader) (path, digest string, size int64, err error) {
	f, err := os.CreateTemp(s.tmp, "put-*")
	if err != nil {
		return "", "", 0, fmt.Errorf("creating temporary file: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	h := sha256.New()
	size, err = io.CopyBuffer(hashWriter{f, h}, r, make([]byte, copyBufSize))
	if err != nil {
		return "", "", 0, err
	}
	if err = f.Sync(); err != nil {
		return "", "", 0, fmt.Errorf("syncing %s: %w", f.Name(), err)
	}
	if err = f.Close(); err != nil {
		return "", "", 0, fmt.Errorf("closing %s: %w", f.Name(), err)
	}
	return f.Name(), "sha256:" + hex.EncodeToString(h.Sum(nil)), size, nil
}

// hashWriter writes to a file and a hash (io.MultiWriter without the
// per-call allocation of its error handling).
type hashWriter struct {
	f *os.File
	h hash.Hash
}

func (w hashWriter) Write(p []byte) (int, error) {
	w.h.Write(p)
	return w.f.Write(p)
}

// install moves a synced temporary file into place, atomically, and syncs
// the directory so the rename survives a crash.
func (s *Store) install(tmp, digest string) error {
	dst := s.path(digest)
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("installing blob %s: %w", digest, err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fmt.Errorf("installing blob %s: %w", digest, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("installing blob %s: %w", digest, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// receive stores a copy streamed from another node, verifying the digest.
func (s *Store) receive(r io.Reader, digest string, size int64) error {
	if size >= 0 {
		if err := s.checkFree(size); err != nil {
			return err
		}
	}
	tmp, got, n, err := s.writeTemp(r)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if got != digest {
		return fmt.Errorf("%w: received %s for %s", ErrCorrupt, got, digest)
	}
	if size >= 0 && n != size {
		return fmt.Errorf("%w: received %d bytes of %s, expected %d", ErrCorrupt, n, digest, size)
	}
	unlock := s.locks.lock(digest)
	defer unlock()
	return s.install(tmp, digest)
}

// ErrNoSpace: a node refused a copy because its disk is too full.
var ErrNoSpace = errors.New("not enough free disk space")

func (s *Store) checkFree(size int64) error {
	if s.cfg.MinFreeBytes < 0 {
		return nil
	}
	free, err := freeBytes(s.cfg.Dir)
	if err != nil {
		return nil // cannot tell: try
	}
	if free-size < s.cfg.MinFreeBytes {
		return fmt.Errorf("%w: %d bytes free, a %d-byte blob would leave less than %d", ErrNoSpace, free, size, s.cfg.MinFreeBytes)
	}
	return nil
}

// Put stores a blob: it streams r to disk computing its digest and size,
// refuses content that does not have the digest want (when not empty),
// copies it to other nodes until the copies span Config.Zones zones (or
// every alive zone of the region, when there are fewer: Stored.Note says
// so) and Config.Copies nodes, and records the replicas in the state before
// returning. Storing content that is already stored only adds this node's
// copy (and refreshes the record, which restarts its GC grace period).
//
// On failure nothing is recorded and the copies this call made locally are
// removed; the copies already pushed to other nodes are removed by those
// nodes' collectors after the grace period.
func (s *Store) Put(ctx context.Context, kind string, r io.Reader, want string) (*Stored, error) {
	if want != "" {
		if e := fsm.ValidDigest(want); e != nil {
			return nil, fmt.Errorf("storing blob: %w", e)
		}
	}
	tmp, digest, size, err := s.writeTemp(r)
	if err != nil {
		return nil, fmt.Errorf("storing blob: %w", err)
	}
	defer os.Remove(tmp)
	if want != "" && digest != want {
		return nil, &MismatchError{Want: want, Got: digest}
	}
	unlock := s.locks.lock(digest)
	defer unlock()
	if err := s.install(tmp, digest); err != nil {
		return nil, err
	}
	st, err := s.replicate(ctx, digest, size, kind)
	if err != nil {
		if !s.listedHere(digest) {
			os.Remove(s.path(digest))
		}
		return nil, err
	}
	return st, nil
}

// listedHere reports whether the state records a copy on this node.
func (s *Store) listedHere(digest string) bool {
	b, ok := s.st.Snap().Blob(digest)
	return ok && slices.Contains(b.Replicas, s.c.Name())
}

// aliveMembers returns the region's alive members by name, this node
// included.
func (s *Store) aliveMembers() map[string]cluster.Member {
	out := map[string]cluster.Member{}
	for _, m := range s.c.Members() {
		if (m.State == cluster.StateAlive || m.State == cluster.StateSuspect) && m.Meta.Region == s.c.Region() {
			out[m.Name] = m
		}
	}
	if _, ok := out[s.c.Name()]; !ok {
		out[s.c.Name()] = cluster.Member{Name: s.c.Name(), State: cluster.StateAlive, Meta: cluster.Meta{Region: s.c.Region(), Zone: s.c.Zone()}}
	}
	return out
}

// replicate copies a local blob to other nodes until the goal is met and
// records the copies. The caller holds the digest's lock.
func (s *Store) replicate(ctx context.Context, digest string, size int64, kind string) (*Stored, error) {
	alive := s.aliveMembers()
	self := s.c.Name()
	holders := map[string]cluster.Member{self: alive[self]}
	if b, ok := s.st.Snap().Blob(digest); ok {
		for _, r := range b.Replicas {
			if m, ok := alive[r]; ok {
				holders[r] = m
			}
		}
	}
	g := goalFor(alive, s.cfg.Zones, s.cfg.Copies)
	added := []string{self}
	failed := map[string]bool{}
	var errs []error
	for !g.met(holders) {
		t, ok := nextTarget(digest, alive, holders, failed, g)
		if !ok {
			break
		}
		if err := s.push(ctx, t, digest, size, kind); err != nil {
			s.log.Warn("blob: copy to another node failed", "digest", digest, "peer", t.Name, "zone", t.Meta.Zone, "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", t.Name, err))
			failed[t.Name] = true
			if ctx.Err() != nil {
				break
			}
			continue
		}
		holders[t.Name] = t
		added = append(added, t.Name)
	}
	if !g.met(holders) {
		return nil, fmt.Errorf("%w: %s is on %d node(s) in zone(s) %s, the goal is %d node(s) in %d zone(s): %w",
			ErrNotReplicated, digest, len(holders), strings.Join(zonesOf(holders), ", "), g.copies, g.zones, errors.Join(errs...))
	}
	res, err := s.submit(ctx, fsm.CmdBlobReplicas, fsm.BlobReplicas{Digest: digest, Size: size, Kind: kind, Add: added})
	if err != nil {
		return nil, fmt.Errorf("recording blob %s: %w", digest, err)
	}
	out := &Stored{Zones: zonesOf(holders)}
	if err := res.Decode(&out.Blob); err != nil {
		return nil, fmt.Errorf("recording blob %s: %w", digest, err)
	}
	if len(out.Zones) < s.cfg.Zones {
		out.Note = fmt.Sprintf("stored in %d zone(s) (%s), fewer than %d: the region has only %d alive zone(s)",
			len(out.Zones), strings.Join(out.Zones, ", "), s.cfg.Zones, g.aliveZones)
		s.log.Warn("blob: "+out.Note, "digest", digest)
	}
	s.log.Info("blob stored", "digest", digest, "size", size, "kind", kind, "replicas", out.Replicas, "zones", out.Zones)
	return out, nil
}

func zonesOf(ms map[string]cluster.Member) []string {
	set := map[string]bool{}
	for _, m := range ms {
		set[m.Meta.Zone] = true
	}
	out := make([]string, 0, len(set))
	for z := range set {
		out = append(out, z)
	}
	sort.Strings(out)
	return out
}

// submit proposes a command and returns its result, or its rejection as an
// error.
func (s *Store) submit(ctx context.Context, typ string, payload any) (*fsm.Result, error) {
	cmd, err := fsm.NewCommand(typ, uuid.NewString(), s.cfg.Clock.Now(), "", payload)
	if err != nil {
		return nil, err
	}
	res, err := s.st.Submit(ctx, cmd)
	if err != nil {
		return nil, err
	}
	if res.Err != nil {
		return res, res.Err
	}
	return res, nil
}

// Open returns a blob's content and size: the local copy if there is one,
// else a stream from a live node holding it (same zone first). Unless
// Config.NoFetchedCopies, a blob streamed from elsewhere is also kept here
// and recorded as a replica once it has been read to the end. The reader
// checks the digest: instead of io.EOF it returns an error wrapping
// ErrCorrupt when the content does not match.
func (s *Store) Open(ctx context.Context, digest string) (io.ReadCloser, int64, error) {
	if e := fsm.ValidDigest(digest); e != nil {
		return nil, 0, fmt.Errorf("opening blob: %w", e)
	}
	if f, err := os.Open(s.path(digest)); err == nil {
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("opening blob %s: %w", digest, err)
		}
		return &verifier{r: f, c: f, h: sha256.New(), digest: digest}, st.Size(), nil
	}
	alive := s.aliveMembers()
	var sources []cluster.Member
	var replicas []string
	if b, ok := s.st.Snap().Blob(digest); ok {
		replicas = b.Replicas
	} else {
		// This replica may lag behind a Put made through another node:
		// ask every node.
		for name := range alive {
			replicas = append(replicas, name)
		}
		sort.Strings(replicas)
	}
	for _, r := range replicas {
		if m, ok := alive[r]; ok && r != s.c.Name() {
			sources = append(sources, m)
		}
	}
	sort.SliceStable(sources, func(i, j int) bool {
		return (sources[i].Meta.Zone == s.c.Zone()) && (sources[j].Meta.Zone != s.c.Zone())
	})
	var errs []error
	for _, m := range sources {
		body, size, err := s.get(ctx, m, digest)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.Name, err))
			continue
		}
		v := &verifier{r: body, c: body, h: sha256.New(), digest: digest}
		if !s.cfg.NoFetchedCopies {
			s.keepCopy(v, digest, size)
		}
		return v, size, nil
	}
	if len(errs) == 0 {
		return nil, 0, fmt.Errorf("%w: no live node holds %s (replicas: %s)", ErrNotFound, digest, strings.Join(replicas, ", "))
	}
	allMissing := true
	for _, e := range errs {
		allMissing = allMissing && errors.Is(e, ErrNotFound)
	}
	if allMissing {
		return nil, 0, fmt.Errorf("%w: %s: %w", ErrNotFound, digest, errors.Join(errs...))
	}
	return nil, 0, fmt.Errorf("opening blob %s: %w", digest, errors.Join(errs...))
}

// keepCopy makes v also write what it reads to a temporary file, which is
// installed and recorded when v has read everything and the digest matched.
func (s *Store) keepCopy(v *verifier, digest string, size int64) {
	if s.checkFree(size) != nil {
		return
	}
	f, err := os.CreateTemp(s.tmp, "fetch-*")
	if err != nil {
		return
	}
	v.copy = f
	v.done = func(ok bool) {
		name := f.Name()
		defer os.Remove(name)
		if !ok || f.Sync() != nil {
			f.Close()
			return
		}
		if f.Close() != nil {
			return
		}
		unlock := s.locks.lock(digest)
		defer unlock()
		if err := s.install(name, digest); err != nil {
			s.log.Warn("blob: keeping a fetched copy", "digest", digest, "err", err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if _, err := s.submit(ctx, fsm.CmdBlobReplicas, fsm.BlobReplicas{Digest: digest, Add: []string{s.c.Name()}}); err != nil {
			// Unrecorded: the local collector removes it after the grace.
			s.log.Warn("blob: recording a fetched copy", "digest", digest, "err", err)
		}
	}
}

// verifier hashes what is read through it and, at the end, turns io.EOF
// into ErrCorrupt when the digest does not match.
type verifier struct {
	r      io.Reader
	c      io.Closer
	h      hash.Hash
	digest string
	copy   *os.File
	done   func(ok bool)
	err    error
	closed bool
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	if n > 0 {
		v.h.Write(p[:n])
		if v.copy != nil {
			if _, werr := v.copy.Write(p[:n]); werr != nil {
				v.copy.Close()
				os.Remove(v.copy.Name())
				v.copy, v.done = nil, nil
			}
		}
	}
	if err == io.EOF {
		if got := "sha256:" + hex.EncodeToString(v.h.Sum(nil)); got != v.digest {
			err = fmt.Errorf("%w: read %s for %s", ErrCorrupt, got, v.digest)
		}
		v.finish(err == io.EOF)
	} else if err != nil {
		v.finish(false)
	}
	v.err = err
	return n, err
}

func (v *verifier) finish(ok bool) {
	if v.done != nil {
		d := v.done
		v.done = nil
		d(ok)
	}
}

func (v *verifier) Close() error {
	if v.closed {
		return nil
	}
	v.closed = true
	v.finish(false)
	return v.c.Close()
}

// Remove deletes this node's copy of a blob and takes the node out of the
// blob's replicas (forgetting the blob when no copy is left and nothing
// refers to it is left to the garbage collector).
func (s *Store) Remove(ctx context.Context, digest string) error {
	if e := fsm.ValidDigest(digest); e != nil {
		return e
	}
	unlock := s.locks.lock(digest)
	defer unlock()
	if s.listedHere(digest) {
		if _, err := s.submit(ctx, fsm.CmdBlobReplicas, fsm.BlobReplicas{Digest: digest, Remove: []string{s.c.Name()}}); err != nil {
			return fmt.Errorf("removing blob %s: %w", digest, err)
		}
	}
	if err := os.Remove(s.path(digest)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing blob %s: %w", digest, err)
	}
	return nil
}

// LocalBlobs lists the digests this node has files for.
func (s *Store) LocalBlobs() ([]string, error) {
	var out []string
	shards, err := os.ReadDir(s.blobs)
	if err != nil {
		return nil, fmt.Errorf("listing blobs: %w", err)
	}
	for _, sh := range shards {
		if !sh.IsDir() {
			continue
		}
		files, err := os.ReadDir(filepath.Join(s.blobs, sh.Name()))
		if err != nil {
			return nil, fmt.Errorf("listing blobs: %w", err)
		}
		for _, f := range files {
			d := "sha256:" + f.Name()
			if fsm.ValidDigest(d) == nil {
				out = append(out, d)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// keyedMutex serializes work on one digest (a Put and the collector, two
// Puts of the same content).
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
