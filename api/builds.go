package api

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/mux"

	"github.com/slipwayhq/slipway/blob"
	"github.com/slipwayhq/slipway/buildpacks"
	"github.com/slipwayhq/slipway/deploy"
	"github.com/slipwayhq/slipway/fsm"
)

// Deployer is the node's deployment system (*deploy.Service): builds from
// source tarballs, their output, git's smart HTTP and the endpoints build
// dynos talk to.
type Deployer interface {
	CreateBuild(ctx context.Context, req deploy.BuildRequest) (*fsm.Build, error)
	Follow(ctx context.Context, buildID string, w io.Writer, flush func()) error
	GitHandler() http.Handler
	InternalHandler() http.Handler
}

// deployers holds the Deployer of each Server (set after New, once the
// agent has made it).
type deployerSlot struct {
	mu sync.RWMutex
	d  Deployer
}

// SetDeployer plugs in the deployment system: the builds endpoints, git
// pushes and build dynos answer 503 until it is set.
func (s *Server) SetDeployer(d Deployer) {
	s.deployer.mu.Lock()
	s.deployer.d = d
	s.deployer.mu.Unlock()
}

func (s *Server) deploys() (Deployer, error) {
	s.deployer.mu.RLock()
	defer s.deployer.mu.RUnlock()
	if s.deployer.d == nil {
		return nil, apiErr(http.StatusServiceUnavailable, "unavailable", "This node cannot build right now (its deployment system is not running).")
	}
	return s.deployer.d, nil
}

// Build is a build resource (Heroku's schema).
type Build struct {
	App             IDRef             `json:"app"`
	Buildpacks      []BuildpackRef    `json:"buildpacks"`
	CreatedAt       time.Time         `json:"created_at"`
	ID              string            `json:"id"`
	OutputStreamURL string            `json:"output_stream_url"`
	SourceBlob      BuildSource       `json:"source_blob"`
	Release         *IDRef            `json:"release"`
	Slug            *IDRef            `json:"slug"`
	Stack           string            `json:"stack"`
	Status          string            `json:"status"`
	UpdatedAt       time.Time         `json:"updated_at"`
	User            UserRef           `json:"user"`
	Extra           map[string]string `json:"slipway,omitempty"`
}

// BuildpackRef names a buildpack (in builds and buildpack installations).
type BuildpackRef struct {
	URL  string `json:"url"`
	Name string `json:"name"`
}

// BuildSource is a build's source_blob.
type BuildSource struct {
	Checksum           *string `json:"checksum"`
	URL                string  `json:"url"`
	Version            *string `json:"version"`
	VersionDescription *string `json:"version_description"`
}

// BuildCreateRequest is POST /apps/{app}/builds.
type BuildCreateRequest struct {
	SourceBlob struct {
		URL                string  `json:"url"`
		Checksum           *string `json:"checksum"`
		Version            *string `json:"version"`
		VersionDescription *string `json:"version_description"`
	} `json:"source_blob"`
	Buildpacks []struct {
		URL  string `json:"url"`
		Name string `json:"name"`
	} `json:"buildpacks"`
}

// BuildpackInstallation is an entry of an app's buildpack list.
type BuildpackInstallation struct {
	Buildpack BuildpackRef `json:"buildpack"`
	Ordinal   int          `json:"ordinal"`
}

// BuildpackInstallationsUpdate is PUT /apps/{app}/buildpack-installations.
type BuildpackInstallationsUpdate struct {
	Updates []struct {
		Buildpack string `json:"buildpack"`
	} `json:"updates"`
}

// SourceCreated is POST /sources: where to upload a tarball and where
// builds then read it.
type SourceCreated struct {
	SourceBlob struct {
		GetURL string `json:"get_url"`
		PutURL string `json:"put_url"`
	} `json:"source_blob"`
}

// Build output URLs stay valid this long.
const buildOutputTTL = 7 * 24 * time.Hour

// buildRoutes mounts the Builds API, sources, build output, the git
// endpoint (/{app}.git/...) and the build dynos' internal endpoints.
func (s *Server) buildRoutes(r *mux.Router, add func(method, path, name string, h handler)) {
	add("POST", "/apps/{app}/builds", "build.create", s.buildCreate)
	add("GET", "/apps/{app}/builds", "build.list", s.buildList)
	add("GET", "/apps/{app}/builds/{build}", "build.info", s.buildInfo)
	add("DELETE", "/apps/{app}/build-cache", "build-cache.delete", s.buildCacheDelete)
	add("GET", "/apps/{app}/buildpack-installations", "buildpack-installation.list", s.buildpackList)
	add("PUT", "/apps/{app}/buildpack-installations", "buildpack-installation.update", s.buildpackUpdate)
	add("POST", "/sources", "source.create", s.sourceCreate)
	r.Handle("/sources/{source}/blob", s.wrap("source.blob-put", public, s.sourceBlobPut)).Methods("PUT")
	r.Handle("/sources/{source}/blob", s.wrap("source.blob-get", public, s.sourceBlobGet)).Methods("GET", "HEAD")
	r.Handle("/builds/{build}/output", s.wrap("build.output", public, s.buildOutput)).Methods("GET")
	git := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, err := s.deploys()
		if err != nil {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, err.Error())
			return
		}
		d.GitHandler().ServeHTTP(w, r)
	})
	r.Handle("/{app}.git/info/refs", git).Methods("GET")
	r.Handle("/{app}.git/git-upload-pack", git).Methods("POST")
	r.Handle("/{app}.git/git-receive-pack", git).Methods("POST")
	r.PathPrefix(deploy.InternalPrefix).Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, err := s.deploys()
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, Error{ID: "unavailable", Message: err.Error()})
			return
		}
		d.InternalHandler().ServeHTTP(w, r)
	}))
}

func (s *Server) outputURL(r *http.Request, buildID string) string {
	exp := s.opts.Now().Add(buildOutputTTL).Unix()
	q := url.Values{"expires": {strconv.FormatInt(exp, 10)}, "signature": {s.blobSignature(http.MethodGet, "build-output/"+buildID, exp)}}
	return s.blobBaseURL(r) + "/builds/" + buildID + "/output?" + q.Encode()
}

func bpRefs(names []string) []BuildpackRef {
	out := []BuildpackRef{}
	for _, n := range names {
		out = append(out, BuildpackRef{URL: n, Name: n})
	}
	return out
}

func (s *Server) renderBuild(r *http.Request, snap *fsm.Snap, b *fsm.Build) Build {
	opt := func(v string) *string {
		if v == "" {
			return nil
		}
		return &v
	}
	out := Build{App: IDRef{ID: b.AppID}, Buildpacks: bpRefs(b.Buildpacks), CreatedAt: b.CreatedAt, ID: b.ID,
		OutputStreamURL: s.outputURL(r, b.ID), Stack: b.Stack, Status: b.Status, UpdatedAt: b.UpdatedAt,
		User:       s.userRef(snap, b.UserID),
		SourceBlob: BuildSource{Checksum: opt(b.SourceChecksum), URL: b.SourceURL, Version: opt(b.SourceVersion), VersionDescription: opt(b.SourceDescription)}}
	if b.ReleaseID != "" {
		out.Release = &IDRef{ID: b.ReleaseID}
	}
	if b.SlugID != "" {
		out.Slug = &IDRef{ID: b.SlugID}
	}
	if b.Message != "" || b.Origin != "" {
		out.Extra = map[string]string{"origin": b.Origin}
		if b.Message != "" {
			out.Extra["message"] = b.Message
		}
	}
	return out
}

func (s *Server) buildCreate(w http.ResponseWriter, r *http.Request) error {
	snap, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	var req BuildCreateRequest
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	if strings.TrimSpace(req.SourceBlob.URL) == "" {
		return invalidParams("source_blob.url can't be blank: give the URL of a gzip-compressed tarball of the app (POST /sources makes one on the cluster).")
	}
	d, err := s.deploys()
	if err != nil {
		return err
	}
	br := deploy.BuildRequest{App: a, User: currentUser(r), URL: req.SourceBlob.URL}
	if req.SourceBlob.Checksum != nil {
		br.Checksum = *req.SourceBlob.Checksum
	}
	if req.SourceBlob.Version != nil {
		br.Version = *req.SourceBlob.Version
	}
	for _, bp := range req.Buildpacks {
		n := bp.URL
		if n == "" {
			n = bp.Name
		}
		br.Buildpacks = append(br.Buildpacks, n)
	}
	b, err := d.CreateBuild(r.Context(), br)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, s.renderBuild(r, snap, b))
	return nil
}

func (s *Server) lookupBuild(r *http.Request) (*fsm.Snap, *fsm.Build, error) {
	_, a, err := s.lookupApp(r)
	if err != nil {
		return nil, nil, err
	}
	id := mux.Vars(r)["build"]
	b, ok := s.b.Snap().Build(id)
	if !ok {
		if err := s.b.Linearize(r.Context()); err == nil {
			b, ok = s.b.Snap().Build(id)
		}
	}
	if !ok || b.AppID != a.ID {
		return nil, nil, notFound("build")
	}
	return s.b.Snap(), b, nil
}

func (s *Server) buildInfo(w http.ResponseWriter, r *http.Request) error {
	snap, b, err := s.lookupBuild(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.renderBuild(r, snap, b))
	return nil
}

func (s *Server) buildList(w http.ResponseWriter, r *http.Request) error {
	snap, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	bs := snap.Builds(a.ID)
	items := make([]pageItem, len(bs))
	for i, b := range bs {
		items[i] = pageItem{keys: map[string]string{"id": b.ID, "created_at": b.CreatedAt.UTC().Format(slugTimeKey)}, v: s.renderBuild(r, snap, b)}
	}
	return writePage(w, r, items, "created_at", "id")
}

func (s *Server) buildCacheDelete(w http.ResponseWriter, r *http.Request) error {
	_, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	if _, err := s.submit(r, fsm.CmdBuildCachePurge, fsm.BuildCachePurge{AppID: a.ID}); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, map[string]any{})
	return nil
}

func installations(names []string) []BuildpackInstallation {
	out := []BuildpackInstallation{}
	for i, n := range names {
		out = append(out, BuildpackInstallation{Buildpack: BuildpackRef{URL: n, Name: n}, Ordinal: i})
	}
	return out
}

func (s *Server) buildpackList(w http.ResponseWriter, r *http.Request) error {
	_, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, installations(a.Buildpacks))
	return nil
}

func (s *Server) buildpackUpdate(w http.ResponseWriter, r *http.Request) error {
	_, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	var req BuildpackInstallationsUpdate
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	names := []string{}
	for _, u := range req.Updates {
		n := strings.TrimSpace(u.Buildpack)
		if _, shipped := buildpacks.Lookup(n); !shipped {
			pu, err := url.Parse(n)
			if err != nil || (pu.Scheme != "http" && pu.Scheme != "https" && pu.Scheme != "git") || pu.Host == "" {
				return invalidParams("Buildpack %q is not one shipped with Slipway (%s) and is not a URL (https://... of a git repository or a .tgz).", n, strings.Join(buildpacks.Names(), ", "))
			}
		}
		names = append(names, n)
	}
	res, err := s.submit(r, fsm.CmdAppBuildpacks, fsm.AppBuildpacks{AppID: a.ID, Buildpacks: names})
	if err != nil {
		return err
	}
	var out fsm.App
	if err := res.Decode(&out); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, installations(out.Buildpacks))
	return nil
}

func (s *Server) sourceCreate(w http.ResponseWriter, r *http.Request) error {
	id := uuid.NewString()
	exp := s.opts.Now().Add(s.opts.BlobURLTTL).Unix()
	sign := func(method string) string {
		q := url.Values{"expires": {strconv.FormatInt(exp, 10)}, "signature": {s.blobSignature(method, "source/"+id, exp)}}
		return s.blobBaseURL(r) + "/sources/" + id + "/blob?" + q.Encode()
	}
	var out SourceCreated
	out.SourceBlob.GetURL, out.SourceBlob.PutURL = sign(http.MethodGet), sign(http.MethodPut)
	writeJSON(w, http.StatusCreated, out)
	return nil
}

// verifySigned checks a signed URL for subject.
func (s *Server) verifySigned(r *http.Request, method, subject string) error {
	q := r.URL.Query()
	exp, err := strconv.ParseInt(q.Get("expires"), 10, 64)
	if err != nil || !hmac.Equal([]byte(q.Get("signature")), []byte(s.blobSignature(method, subject, exp))) {
		return apiErr(http.StatusForbidden, fsm.CodeForbidden, "This URL is not valid (its signature does not match).")
	}
	if s.opts.Now().Unix() > exp {
		return apiErr(http.StatusForbidden, fsm.CodeForbidden, "This URL expired at %s.", time.Unix(exp, 0).UTC().Format(time.RFC3339))
	}
	return nil
}

func (s *Server) sourceBlobPut(w http.ResponseWriter, r *http.Request) error {
	id := mux.Vars(r)["source"]
	if err := s.verifySigned(r, http.MethodPut, "source/"+id); err != nil {
		return err
	}
	if s.opts.Blobs == nil {
		return apiErr(http.StatusServiceUnavailable, "unavailable", "This node has no blob store.")
	}
	const max = 1 << 30
	if r.ContentLength > max {
		return apiErr(http.StatusRequestEntityTooLarge, "request_too_large", "The source is larger than %s.", sizeMB(max))
	}
	cr := blob.NewCheckedReader(&maxReader{r: r.Body, left: max}, blob.ArchiveLimits{MaxUncompressed: deploy.DefaultMaxSourceBytes})
	defer cr.Close()
	st, err := s.opts.Blobs.Put(r.Context(), "source", cr, "")
	if err != nil {
		var ae *blob.ArchiveError
		switch {
		case errors.Is(err, errSlugTooLarge):
			return apiErr(http.StatusRequestEntityTooLarge, "request_too_large", "The source is larger than %s.", sizeMB(max))
		case errors.As(err, &ae):
			return invalidParams("The source tarball was refused: %s. A source is a gzip-compressed tarball of the app with no absolute paths, no \"..\" and no links out of it.", ae.Error())
		case errors.Is(err, blob.ErrNotReplicated):
			return apiErr(http.StatusServiceUnavailable, "unavailable", "The source could not be stored on enough nodes: %v", err)
		}
		return fmt.Errorf("storing source %s: %w", id, err)
	}
	if _, err := s.submit(r, fsm.CmdSourcePut, fsm.SourcePut{Source: fsm.Source{ID: id, Digest: st.Digest, Size: st.Size}}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) sourceBlobGet(w http.ResponseWriter, r *http.Request) error {
	id := mux.Vars(r)["source"]
	if err := s.verifySigned(r, http.MethodGet, "source/"+id); err != nil {
		return err
	}
	src, ok := s.b.Snap().Source(id)
	if !ok {
		if err := s.b.Linearize(r.Context()); err == nil {
			src, ok = s.b.Snap().Source(id)
		}
	}
	if !ok {
		return apiErr(http.StatusNotFound, fsm.CodeNotFound, "Nothing was uploaded to this source yet.")
	}
	if s.opts.Blobs == nil {
		return apiErr(http.StatusServiceUnavailable, "unavailable", "This node has no blob store.")
	}
	rc, size, err := s.opts.Blobs.Open(r.Context(), src.Digest)
	if err != nil {
		return apiErr(http.StatusServiceUnavailable, "unavailable", "The source cannot be read right now: %v", err)
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	if size >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = io.Copy(w, rc)
	}
	return nil
}

// buildOutput streams a build's output (its output_stream_url): live while
// it runs, then the stored output.
func (s *Server) buildOutput(w http.ResponseWriter, r *http.Request) error {
	id := mux.Vars(r)["build"]
	if err := s.verifySigned(r, http.MethodGet, "build-output/"+id); err != nil {
		return err
	}
	d, err := s.deploys()
	if err != nil {
		return err
	}
	if _, ok := s.b.Snap().Build(id); !ok {
		if err := s.b.Linearize(r.Context()); err != nil {
			return notFound("build")
		}
		if _, ok := s.b.Snap().Build(id); !ok {
			return notFound("build")
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	flush := func() {
		if fl != nil {
			fl.Flush()
		}
	}
	flush()
	if err := d.Follow(r.Context(), id, w, flush); err != nil && r.Context().Err() == nil {
		fmt.Fprintf(w, "\n !     The build output could not be read: %v\n", err)
	}
	return nil
}

// WebURL is an app's URL (for the deployment system's output).
func (s *Server) WebURL(app string) string { return s.webURL(app) }
