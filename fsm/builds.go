package fsm

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-memdb"
)

// Deploy state: builds (Heroku's build resource), each app's git
// repository and build cache (blobs in the blob store, with the push lease
// that serializes pushes), uploaded sources (POST /sources) and the
// buildpacks set on an app. Build and release-phase dynos are one-off dynos
// (fsm/dynos.go) whose end is recorded here: a build dyno that ends before
// its build reported a result fails the build, and the end of a release
// phase dyno decides its release (succeeded: it becomes current; failed: the
// running release stays).

// Build statuses, as Heroku's.
const (
	BuildPending   = "pending"
	BuildSucceeded = "succeeded"
	BuildFailed    = "failed"
)

// Build origins.
const (
	BuildFromGit = "git" // a git push
	BuildFromAPI = "api" // POST /apps/{app}/builds with a source tarball
)

// Dyno types of the deploy system's one-off dynos.
const (
	DynoTypeBuild   = "build"
	DynoTypeRelease = "release"
)

// Build is one compilation of an app's source into a slug.
type Build struct {
	ID     string `json:"id"`
	AppID  string `json:"app_id"`
	Number int    `json:"number"` // per app, from 1: names the build dyno build.N
	Status string `json:"status"`
	Origin string `json:"origin"`
	// Source, as given: a tarball URL (API builds) and the version
	// (commit) it is of.
	SourceURL         string `json:"source_url,omitempty"`
	SourceChecksum    string `json:"source_checksum,omitempty"`
	SourceVersion     string `json:"source_version,omitempty"`
	SourceDescription string `json:"source_description,omitempty"`
	// SourceDigest is the source tarball in the blob store, once fetched.
	SourceDigest string `json:"source_digest,omitempty"`
	// Buildpacks asked for by the build request (empty: the app's, else
	// detection).
	Buildpacks []string `json:"buildpacks,omitempty"`
	Stack      string   `json:"stack"`
	UserID     string   `json:"user_id"`
	// DynoID is the build dyno; TokenHash the SHA-256 (hex) of the token it
	// talks to the cluster with.
	DynoID    string `json:"dyno_id,omitempty"`
	TokenHash string `json:"token_hash,omitempty"`
	// OutputNode holds the live output while the build runs; OutputDigest
	// is the whole output in the blob store once it ended.
	OutputNode   string `json:"output_node,omitempty"`
	OutputDigest string `json:"output_digest,omitempty"`
	SlugID       string `json:"slug_id,omitempty"`
	ReleaseID    string `json:"release_id,omitempty"`
	// Message says why a build failed.
	Message    string     `json:"message,omitempty"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
}

// RepoLease serializes the pushes (and builds) of one app: whoever holds an
// unexpired lease is the only one that may replace the app's repository.
type RepoLease struct {
	ID        string    `json:"id"`
	Holder    string    `json:"holder"` // node name
	Purpose   string    `json:"purpose,omitempty"`
	UserID    string    `json:"user_id,omitempty"`
	At        time.Time `json:"at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Repo is an app's git repository (a tarball of the bare repository in the
// blob store) and build cache.
type Repo struct {
	AppID       string     `json:"app_id"`
	Digest      string     `json:"digest,omitempty"`
	Size        int64      `json:"size,omitempty"`
	Head        string     `json:"head,omitempty"` // commit of the deployed branch
	CacheDigest string     `json:"cache_digest,omitempty"`
	CacheSize   int64      `json:"cache_size,omitempty"`
	Lease       *RepoLease `json:"lease,omitempty"`
	UpdatedAt   time.Time  `json:"updated_at"`
}

// Source is a tarball uploaded through a POST /sources URL.
type Source struct {
	ID        string    `json:"id"`
	Digest    string    `json:"digest"`
	Size      int64     `json:"size"`
	UserID    string    `json:"user_id,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

const (
	tBuilds  = "builds"
	tRepos   = "repos"
	tSources = "sources"
)

// Limits.
const (
	// MaxBuildsPerApp: older finished builds are forgotten beyond this.
	MaxBuildsPerApp = 100
	// MaxBuildpacks is how many buildpacks an app or a build may list.
	MaxBuildpacks = 16
	// MaxBuildpackLen bounds one buildpack name or URL.
	MaxBuildpackLen = 1024
)

func buildTables() map[string]table {
	return map[string]table{
		tBuilds: {decode: decodeAs[Build], schema: &memdb.TableSchema{Indexes: map[string]*memdb.IndexSchema{
			indexID:     idx(indexID, true, false, str("ID")),
			indexApp:    byApp(),
			indexAppKey: idx(indexAppKey, true, false, compound(str("AppID"), &memdb.IntFieldIndex{Field: "Number"})),
		}}},
		tRepos: {decode: decodeAs[Repo], schema: &memdb.TableSchema{Indexes: map[string]*memdb.IndexSchema{
			indexID:  idx(indexID, true, false, str("AppID")),
			indexApp: byApp(),
		}}},
		tSources: {decode: decodeAs[Source], schema: &memdb.TableSchema{Indexes: map[string]*memdb.IndexSchema{
			indexID: idx(indexID, true, false, str("ID")),
		}}},
	}
}

// Deploy commands.
const (
	CmdBuildCreate     = "build.create"
	CmdBuildStart      = "build.start"
	CmdBuildRunning    = "build.running"
	CmdBuildFinish     = "build.finish"
	CmdBuildOutput     = "build.output"
	CmdBuildCachePurge = "build.cache-purge"
	CmdAppBuildpacks   = "app.buildpacks"
	CmdRepoLease       = "repo.lease"
	CmdRepoUnlease     = "repo.unlease"
	CmdRepoUpdate      = "repo.update"
	CmdSourcePut       = "source.put"
	CmdSourceDelete    = "source.delete"
)

func buildHandler(typ string) handler {
	switch typ {
	case CmdBuildCreate:
		return applyBuildCreate
	case CmdBuildStart:
		return applyBuildStart
	case CmdBuildRunning:
		return applyBuildRunning
	case CmdBuildFinish:
		return applyBuildFinish
	case CmdBuildOutput:
		return applyBuildOutput
	case CmdBuildCachePurge:
		return applyBuildCachePurge
	case CmdAppBuildpacks:
		return applyAppBuildpacks
	case CmdRepoLease:
		return applyRepoLease
	case CmdRepoUnlease:
		return applyRepoUnlease
	case CmdRepoUpdate:
		return applyRepoUpdate
	case CmdSourcePut:
		return applySourcePut
	case CmdSourceDelete:
		return applySourceDelete
	}
	return nil
}

// ValidBuildpacks checks a list of buildpack names or URLs.
func ValidBuildpacks(bps []string) *Error {
	if len(bps) > MaxBuildpacks {
		return invalid("Too many buildpacks: at most %d.", MaxBuildpacks)
	}
	seen := map[string]bool{}
	for _, b := range bps {
		switch {
		case strings.TrimSpace(b) == "":
			return invalid("Buildpack can't be blank.")
		case len(b) > MaxBuildpackLen:
			return invalid("Buildpack %.40q... is too long (maximum is %d characters).", b, MaxBuildpackLen)
		case strings.ContainsAny(b, " \t\r\n\x00"):
			return invalid("Buildpack %q contains white space.", b)
		case seen[b]:
			return invalid("Buildpack %s is listed twice.", b)
		}
		seen[b] = true
	}
	return nil
}

// BuildCreate records a new pending build.
type BuildCreate struct {
	Build Build `json:"build"`
}

func txBuild(tx *memdb.Txn, id string) (*Build, bool) {
	return txFirst[Build](tx, tBuilds, indexID, id)
}

func applyBuildCreate(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[BuildCreate](c)
	if e != nil {
		return nil, e
	}
	b := p.Build
	if e := requireID("build", b.ID); e != nil {
		return nil, e
	}
	app, e := lookupApp(tx, b.AppID)
	if e != nil {
		return nil, e
	}
	if _, ok := txBuild(tx, b.ID); ok {
		return nil, Errorf(CodeConflict, "A build with id %s already exists.", b.ID)
	}
	if b.Origin != BuildFromGit && b.Origin != BuildFromAPI {
		return nil, invalid("Unknown build origin %q.", b.Origin)
	}
	if e := ValidBuildpacks(b.Buildpacks); e != nil {
		return nil, e
	}
	if len(b.SourceVersion) > 255 || len(b.SourceURL) > 4096 || len(b.SourceDescription) > MaxDescriptionLen {
		return nil, invalid("Build source fields are too long.")
	}
	if b.Stack == "" {
		b.Stack = app.BuildStack
	}
	b.Number = 1
	it, err := tx.GetReverse(tBuilds, indexAppKey+"_prefix", app.ID)
	if err == nil {
		if raw := it.Next(); raw != nil {
			b.Number = raw.(*Build).Number + 1
		}
	}
	b.Status, b.UserID = BuildPending, c.By
	b.SourceDigest, b.DynoID, b.TokenHash, b.OutputNode, b.OutputDigest, b.SlugID, b.ReleaseID, b.Message = "", "", "", "", "", "", "", ""
	b.StartedAt, b.FinishedAt = nil, nil
	b.CreatedAt, b.UpdatedAt = c.At, c.At
	if e := insert(tx, tBuilds, &b); e != nil {
		return nil, e
	}
	if e := pruneBuilds(tx, app.ID); e != nil {
		return nil, e
	}
	return &b, nil
}

// pruneBuilds forgets an app's oldest finished builds beyond MaxBuildsPerApp.
func pruneBuilds(tx *memdb.Txn, appID string) *Error {
	all := txAll[Build](tx, tBuilds, indexAppKey+"_prefix", appID)
	extra := len(all) - MaxBuildsPerApp
	for _, b := range all {
		if extra <= 0 {
			break
		}
		if b.Status == BuildPending {
			continue
		}
		if err := tx.Delete(tBuilds, b); err != nil {
			return Errorf("internal", "deleting build: %v", err)
		}
		extra--
	}
	return nil
}

// BuildStart records a build's fetched source and creates its build dyno,
// which the scheduler places on a node with capacity. Dyno carries the
// command, size, environment, slug (SlugDigest: the builder) and expiry
// chosen by the proposer; its name (build.N) and bookkeeping are set here.
type BuildStart struct {
	BuildID      string `json:"build_id"`
	SourceDigest string `json:"source_digest"`
	TokenHash    string `json:"token_hash"`
	Dyno         Dyno   `json:"dyno"`
}

// pendingBuild is a build that has not finished yet.
func pendingBuild(tx *memdb.Txn, id string) (*Build, *Error) {
	b, ok := txBuild(tx, id)
	if !ok {
		return nil, notFound("build")
	}
	if b.Status != BuildPending {
		return nil, Errorf(CodeConflict, "Build %s has already %s.", b.ID, b.Status)
	}
	return b, nil
}

func applyBuildStart(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[BuildStart](c)
	if e != nil {
		return nil, e
	}
	b, e := pendingBuild(tx, p.BuildID)
	if e != nil {
		return nil, e
	}
	if b.DynoID != "" {
		return nil, Errorf(CodeConflict, "Build %s has already started.", b.ID)
	}
	if e := ValidDigest(p.SourceDigest); e != nil {
		return nil, e
	}
	if len(p.TokenHash) != 64 {
		return nil, invalid("token_hash must be a hex SHA-256.")
	}
	d := p.Dyno
	if e := requireID("dyno", d.ID); e != nil {
		return nil, e
	}
	if _, ok := getDyno(tx, d.ID); ok {
		return nil, Errorf(CodeConflict, "A dyno with id %s already exists.", d.ID)
	}
	if strings.TrimSpace(d.Command) == "" {
		return nil, invalid("The build dyno's command can't be blank.")
	}
	if e := ValidDigest(d.SlugDigest); e != nil {
		return nil, e
	}
	if _, ok := LookupDynoSize(d.Size); !ok {
		return nil, invalid("No such size as %s. Use %s.", d.Size, sizeNames())
	}
	if ConfigSize(d.Env) > MaxOneOffEnv {
		return nil, invalid("env is too large (maximum %d bytes).", MaxOneOffEnv)
	}
	d.AppID, d.Name, d.Type, d.BuildID, d.OneOff, d.Attach = b.AppID, fmt.Sprintf("build.%d", b.Number), DynoTypeBuild, b.ID, true, false
	d.ReleaseID, d.Version = "", 0
	d.State, d.Stop, d.Node, d.Zone, d.Addr, d.Port, d.Instance = DynoStarting, false, "", "", "", 0, ""
	d.CreatedAt, d.UpdatedAt, d.StateAt = c.At, c.At, c.At
	if e := putDyno(tx, &d); e != nil {
		return nil, e
	}
	nb := *b
	nb.SourceDigest, nb.TokenHash, nb.DynoID, nb.UpdatedAt = p.SourceDigest, p.TokenHash, d.ID, c.At
	if e := insert(tx, tBuilds, &nb); e != nil {
		return nil, e
	}
	return &nb, nil
}

// BuildRunning records that a build's compiler started and which node
// holds its live output.
type BuildRunning struct {
	BuildID    string `json:"build_id"`
	OutputNode string `json:"output_node"`
}

func applyBuildRunning(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[BuildRunning](c)
	if e != nil {
		return nil, e
	}
	b, e := pendingBuild(tx, p.BuildID)
	if e != nil {
		return nil, e
	}
	if p.OutputNode == "" {
		return nil, invalid("output_node can't be blank.")
	}
	nb := *b
	nb.OutputNode, nb.UpdatedAt = p.OutputNode, c.At
	if nb.StartedAt == nil {
		at := c.At
		nb.StartedAt = &at
	}
	if e := insert(tx, tBuilds, &nb); e != nil {
		return nil, e
	}
	return &nb, nil
}

// BuildFinish ends a build. A succeeded build brings its slug (already in
// the blob store) and makes the release of it, with the app's current
// config: a slug with a release process type gets a pending release and a
// release-phase dyno (ReleaseDynoID) that decides it; otherwise the release
// succeeds at once.
type BuildFinish struct {
	BuildID string `json:"build_id"`
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
	// Success only.
	Slug          *Slug  `json:"slug,omitempty"`
	ReleaseID     string `json:"release_id,omitempty"`
	ReleaseDynoID string `json:"release_dyno_id,omitempty"`
	CacheDigest   string `json:"cache_digest,omitempty"`
	CacheSize     int64  `json:"cache_size,omitempty"`
	// Any status.
	OutputDigest string `json:"output_digest,omitempty"`
}

// BuildFinishResult is what build.finish returns.
type BuildFinishResult struct {
	Build   *Build   `json:"build"`
	Release *Release `json:"release,omitempty"`
	Slug    *Slug    `json:"slug,omitempty"`
}

// ReleasePhaseTimeout is how long a release-phase dyno may run (Heroku: 1 h).
const ReleasePhaseTimeout = time.Hour

func applyBuildFinish(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[BuildFinish](c)
	if e != nil {
		return nil, e
	}
	b, e := pendingBuild(tx, p.BuildID)
	if e != nil {
		return nil, e
	}
	app, e := lookupApp(tx, b.AppID)
	if e != nil {
		return nil, e
	}
	if p.OutputDigest != "" {
		if e := ValidDigest(p.OutputDigest); e != nil {
			return nil, e
		}
	}
	nb := *b
	nb.UpdatedAt, nb.OutputDigest = c.At, p.OutputDigest
	at := c.At
	nb.FinishedAt = &at
	out := &BuildFinishResult{Build: &nb}
	switch p.Status {
	case BuildFailed:
		nb.Status, nb.Message = BuildFailed, truncate(p.Message, 1024)
		if nb.Message == "" {
			nb.Message = "Build failed."
		}
		// A build failed from outside (a timeout, a lost node) stops its dyno.
		if d, ok := getDyno(tx, b.DynoID); ok && !d.Stop && d.State != DynoDown && d.State != DynoCrashed {
			nd := *d
			nd.Stop, nd.UpdatedAt = true, c.At
			if nd.Node == "" {
				nd.State, nd.StateAt = DynoDown, c.At
			}
			if e := putDyno(tx, &nd); e != nil {
				return nil, e
			}
		}
	case BuildSucceeded:
		if p.Slug == nil {
			return nil, invalid("A succeeded build needs its slug.")
		}
		sl := *p.Slug
		if e := requireID("slug", sl.ID); e != nil {
			return nil, e
		}
		if _, ok := txFirst[Slug](tx, tSlugs, indexID, sl.ID); ok {
			return nil, Errorf(CodeConflict, "A slug with id %s already exists.", sl.ID)
		}
		if e := ValidProcessTypes(sl.ProcessTypes); e != nil {
			return nil, e
		}
		if e := ValidDigest(sl.BlobDigest); e != nil {
			return nil, e
		}
		if e := requireID("release", p.ReleaseID); e != nil {
			return nil, e
		}
		sl.AppID = app.ID
		if sl.Stack == "" {
			sl.Stack = b.Stack
		}
		if sl.Commit == "" {
			sl.Commit = b.SourceVersion
		}
		sl.CreatedAt, sl.UpdatedAt = c.At, c.At
		if e := insert(tx, tSlugs, &sl); e != nil {
			return nil, e
		}
		desc := "Deploy"
		if sl.Commit != "" {
			desc = fmt.Sprintf("Deploy %.7s", sl.Commit)
		}
		var cfg map[string]string
		if cv, ok := txFirst[ConfigVars](tx, tConfig, indexID, app.ID); ok {
			cfg = cv.Vars
		}
		if sl.ProcessTypes[DynoTypeRelease] != "" {
			if e := requireID("release dyno", p.ReleaseDynoID); e != nil {
				return nil, e
			}
		}
		rel, e := releaseWithPhase(tx, app, p.ReleaseID, sl.ID, cfg, desc, p.ReleaseDynoID, c)
		if e != nil {
			return nil, e
		}
		nb.Status, nb.SlugID, nb.ReleaseID, nb.Message = BuildSucceeded, sl.ID, rel.ID, ""
		out.Release, out.Slug = rel, &sl
		if p.CacheDigest != "" {
			if e := ValidDigest(p.CacheDigest); e != nil {
				return nil, e
			}
			r := txRepo(tx, app.ID)
			r.CacheDigest, r.CacheSize, r.UpdatedAt = p.CacheDigest, p.CacheSize, c.At
			if e := insert(tx, tRepos, r); e != nil {
				return nil, e
			}
		}
	default:
		return nil, invalid("A build finishes as %s or %s.", BuildSucceeded, BuildFailed)
	}
	if e := insert(tx, tBuilds, &nb); e != nil {
		return nil, e
	}
	return out, nil
}

// BuildOutput records where a build's whole output is stored (the node
// that kept it stores it once the build has ended).
type BuildOutput struct {
	BuildID      string `json:"build_id"`
	OutputDigest string `json:"output_digest"`
}

func applyBuildOutput(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[BuildOutput](c)
	if e != nil {
		return nil, e
	}
	b, ok := txBuild(tx, p.BuildID)
	if !ok {
		return nil, notFound("build")
	}
	if e := ValidDigest(p.OutputDigest); e != nil {
		return nil, e
	}
	nb := *b
	nb.OutputDigest, nb.UpdatedAt = p.OutputDigest, c.At
	if e := insert(tx, tBuilds, &nb); e != nil {
		return nil, e
	}
	return &nb, nil
}

// phaseDynoEnded records the end of a build or release-phase dyno: a build
// still pending fails; a pending release succeeds when its command exited
// 0, and fails otherwise. Called by every command that ends or forgets a
// dyno (a supervisor's report, a stop of an unplaced dyno, a removal).
func phaseDynoEnded(tx *memdb.Txn, d *Dyno, c *Command) *Error {
	if !d.OneOff {
		return nil
	}
	exitOK := d.State == DynoDown && d.ExitStatus != nil && *d.ExitStatus == 0
	timedOut := d.ExpiresAt != nil && !c.At.Before(*d.ExpiresAt)
	switch d.Type {
	case DynoTypeBuild:
		b, ok := txBuild(tx, d.BuildID)
		if !ok || b.Status != BuildPending || b.DynoID != d.ID {
			return nil
		}
		nb := *b
		nb.Status, nb.UpdatedAt = BuildFailed, c.At
		at := c.At
		nb.FinishedAt = &at
		switch {
		case timedOut:
			nb.Message = "Build exceeded the time limit and was stopped."
		case d.Node == "" && d.PendingReason != "":
			nb.Message = "The build could not start: " + d.PendingReason
		case exitOK:
			nb.Message = "The build ended without reporting a result."
		default:
			nb.Message = "The build dyno ended unexpectedly: " + dynoEndReason(d)
		}
		return insert(tx, tBuilds, &nb)
	case DynoTypeRelease:
		rel, ok := txFirst[Release](tx, tReleases, indexID, d.ReleaseID)
		if !ok || rel.Status != ReleasePending {
			return nil
		}
		if exitOK {
			return succeedRelease(tx, rel, c)
		}
		nr := *rel
		nr.Status, nr.UpdatedAt = ReleaseFailed, c.At
		return insert(tx, tReleases, &nr)
	}
	return nil
}

func dynoEndReason(d *Dyno) string {
	switch {
	case d.Reason != "":
		return d.Reason
	case d.ExitStatus != nil:
		return fmt.Sprintf("exited with status %d", *d.ExitStatus)
	case d.Node != "":
		return "its node was lost"
	}
	return "it was stopped"
}

// succeedRelease marks a pending release succeeded; if it is newer than the
// app's current release it becomes current: its formation is synced and the
// scheduler rolls the dynos.
func succeedRelease(tx *memdb.Txn, rel *Release, c *Command) *Error {
	cur := txCurrentRelease(tx, rel.AppID)
	nr := *rel
	nr.Status, nr.UpdatedAt = ReleaseSucceeded, c.At
	if e := insert(tx, tReleases, &nr); e != nil {
		return e
	}
	if cur != nil && cur.Version > rel.Version {
		return nil
	}
	app, e := lookupApp(tx, rel.AppID)
	if e != nil {
		return e
	}
	na := *app
	at := c.At
	na.ReleasedAt, na.UpdatedAt = &at, c.At
	if e := insert(tx, tApps, &na); e != nil {
		return e
	}
	return syncFormation(tx, rel.AppID, rel.SlugID, c)
}

// BuildCachePurge forgets an app's build cache (the next build starts
// without one).
type BuildCachePurge struct {
	AppID string `json:"app_id"`
}

func applyBuildCachePurge(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[BuildCachePurge](c)
	if e != nil {
		return nil, e
	}
	if _, e := lookupApp(tx, p.AppID); e != nil {
		return nil, e
	}
	r := txRepo(tx, p.AppID)
	r.CacheDigest, r.CacheSize, r.UpdatedAt = "", 0, c.At
	if e := insert(tx, tRepos, r); e != nil {
		return nil, e
	}
	return r, nil
}

// AppBuildpacks sets the buildpacks an app's builds use, in order (empty:
// detect).
type AppBuildpacks struct {
	AppID      string   `json:"app_id"`
	Buildpacks []string `json:"buildpacks"`
}

func applyAppBuildpacks(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[AppBuildpacks](c)
	if e != nil {
		return nil, e
	}
	app, e := lookupApp(tx, p.AppID)
	if e != nil {
		return nil, e
	}
	if e := ValidBuildpacks(p.Buildpacks); e != nil {
		return nil, e
	}
	na := *app
	na.Buildpacks = append([]string(nil), p.Buildpacks...)
	if len(na.Buildpacks) == 0 {
		na.Buildpacks = nil
	}
	na.UpdatedAt = c.At
	if e := insert(tx, tApps, &na); e != nil {
		return nil, e
	}
	return &na, nil
}

// txRepo returns a copy of an app's repo record (a new one if it has none).
func txRepo(tx *memdb.Txn, appID string) *Repo {
	if r, ok := txFirst[Repo](tx, tRepos, indexID, appID); ok {
		cp := *r
		return &cp
	}
	return &Repo{AppID: appID}
}

// MaxLeaseTTL bounds how long a lease lasts without renewal.
const MaxLeaseTTL = 10 * time.Minute

// RepoLeaseTake takes or renews an app's push lease. It fails with conflict
// while another unexpired lease is held.
type RepoLeaseTake struct {
	AppID   string        `json:"app_id"`
	LeaseID string        `json:"lease_id"`
	Holder  string        `json:"holder"`
	Purpose string        `json:"purpose,omitempty"`
	TTL     time.Duration `json:"ttl"`
}

func applyRepoLease(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[RepoLeaseTake](c)
	if e != nil {
		return nil, e
	}
	app, e := lookupApp(tx, p.AppID)
	if e != nil {
		return nil, e
	}
	if e := requireID("lease", p.LeaseID); e != nil {
		return nil, e
	}
	if p.TTL <= 0 || p.TTL > MaxLeaseTTL || p.Holder == "" {
		return nil, invalid("A lease needs a holder and a ttl of at most %s.", MaxLeaseTTL)
	}
	r := txRepo(tx, app.ID)
	if l := r.Lease; l != nil && l.ID != p.LeaseID && c.At.Before(l.ExpiresAt) {
		return nil, Errorf(CodeConflict, "Another %s of %s is in progress (on node %s since %s).",
			orDefault(l.Purpose, "push"), app.Name, l.Holder, l.At.UTC().Format(time.RFC3339))
	}
	if l := r.Lease; l != nil && l.ID == p.LeaseID {
		nl := *l
		nl.ExpiresAt = c.At.Add(p.TTL)
		r.Lease = &nl
	} else {
		r.Lease = &RepoLease{ID: p.LeaseID, Holder: p.Holder, Purpose: p.Purpose, UserID: c.By, At: c.At, ExpiresAt: c.At.Add(p.TTL)}
	}
	r.UpdatedAt = c.At
	if e := insert(tx, tRepos, r); e != nil {
		return nil, e
	}
	return r, nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// RepoUnlease gives a lease up.
type RepoUnlease struct {
	AppID   string `json:"app_id"`
	LeaseID string `json:"lease_id"`
}

func applyRepoUnlease(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[RepoUnlease](c)
	if e != nil {
		return nil, e
	}
	if _, e := lookupApp(tx, p.AppID); e != nil {
		return nil, e
	}
	r := txRepo(tx, p.AppID)
	if r.Lease == nil || r.Lease.ID != p.LeaseID {
		return r, nil // already gone, or taken over after it expired
	}
	r.Lease, r.UpdatedAt = nil, c.At
	if e := insert(tx, tRepos, r); e != nil {
		return nil, e
	}
	return r, nil
}

// RepoUpdate replaces an app's repository. Only the holder of the lease may
// (so a pusher whose lease expired and was taken over cannot overwrite a
// newer push).
type RepoUpdate struct {
	AppID   string `json:"app_id"`
	LeaseID string `json:"lease_id"`
	Digest  string `json:"digest"`
	Size    int64  `json:"size"`
	Head    string `json:"head,omitempty"`
}

func applyRepoUpdate(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[RepoUpdate](c)
	if e != nil {
		return nil, e
	}
	if _, e := lookupApp(tx, p.AppID); e != nil {
		return nil, e
	}
	if e := ValidDigest(p.Digest); e != nil {
		return nil, e
	}
	r := txRepo(tx, p.AppID)
	if r.Lease == nil || r.Lease.ID != p.LeaseID {
		return nil, Errorf(CodeConflict, "The push lease was lost (another push took over after it expired); the repository was not updated.")
	}
	r.Digest, r.Size, r.Head, r.UpdatedAt = p.Digest, p.Size, p.Head, c.At
	if e := insert(tx, tRepos, r); e != nil {
		return nil, e
	}
	return r, nil
}

// SourcePut records a tarball uploaded to a POST /sources URL.
type SourcePut struct {
	Source Source `json:"source"`
}

func applySourcePut(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[SourcePut](c)
	if e != nil {
		return nil, e
	}
	s := p.Source
	if e := requireID("source", s.ID); e != nil {
		return nil, e
	}
	if e := ValidDigest(s.Digest); e != nil {
		return nil, e
	}
	if old, ok := txFirst[Source](tx, tSources, indexID, s.ID); ok {
		if old.Digest != s.Digest {
			return nil, Errorf(CodeConflict, "Source %s was already uploaded with different content.", s.ID)
		}
		return old, nil
	}
	s.UserID, s.CreatedAt = c.By, c.At
	if e := insert(tx, tSources, &s); e != nil {
		return nil, e
	}
	return &s, nil
}

// SourceDelete forgets uploaded sources (expired ones).
type SourceDelete struct {
	IDs []string `json:"ids"`
}

func applySourceDelete(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[SourceDelete](c)
	if e != nil {
		return nil, e
	}
	n := 0
	for _, id := range p.IDs {
		if s, ok := txFirst[Source](tx, tSources, indexID, id); ok {
			if err := tx.Delete(tSources, s); err != nil {
				return nil, Errorf("internal", "deleting source: %v", err)
			}
			n++
		}
	}
	return map[string]int{"deleted": n}, nil
}

// Build finds a build by id.
func (s *Snap) Build(id string) (*Build, bool) { return first[Build](s, tBuilds, indexID, id) }

// Builds lists an app's builds, oldest first.
func (s *Snap) Builds(appID string) []*Build {
	return all[Build](s, tBuilds, indexAppKey+"_prefix", appID)
}

// AllBuilds lists every build (for the blob collector and the deploy loop).
func (s *Snap) AllBuilds() []*Build { return all[Build](s, tBuilds, indexID) }

// Repo is an app's repository record (a zero record if it has none yet).
func (s *Snap) Repo(appID string) *Repo {
	if r, ok := first[Repo](s, tRepos, indexID, appID); ok {
		return r
	}
	return &Repo{AppID: appID}
}

// Repos lists every repository record.
func (s *Snap) Repos() []*Repo { return all[Repo](s, tRepos, indexID) }

// Source finds an uploaded source.
func (s *Snap) Source(id string) (*Source, bool) { return first[Source](s, tSources, indexID, id) }

// Sources lists the uploaded sources.
func (s *Snap) Sources() []*Source {
	out := all[Source](s, tSources, indexID)
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out
}
