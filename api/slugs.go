package api

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/mux"

	"github.com/slipwayhq/slipway/blob"
	"github.com/slipwayhq/slipway/fsm"
)

// BlobStore is what the slug endpoints need from the node's blob store
// (*blob.Store; blob.Memory in tests).
type BlobStore interface {
	Put(ctx context.Context, kind string, r io.Reader, want string) (*blob.Stored, error)
	Open(ctx context.Context, digest string) (io.ReadCloser, int64, error)
}

// Slug limits.
const (
	// DefaultMaxSlugBytes is Heroku's limit on a compressed slug.
	DefaultMaxSlugBytes = 500 << 20
	// DefaultBlobURLTTL is how long a slug's blob URL may be used.
	DefaultBlobURLTTL = time.Hour
	maxCommitLen      = 255
	maxSlugTextLen    = 1024
)

// Slug is a slug resource (Heroku's schema).
type Slug struct {
	Blob                         SlugBlob          `json:"blob"`
	BuildpackProvidedDescription *string           `json:"buildpack_provided_description"`
	Checksum                     *string           `json:"checksum"`
	Commit                       *string           `json:"commit"`
	CommitDescription            *string           `json:"commit_description"`
	CreatedAt                    time.Time         `json:"created_at"`
	ID                           string            `json:"id"`
	ProcessTypes                 map[string]string `json:"process_types"`
	Size                         *int64            `json:"size"`
	Stack                        Ref               `json:"stack"`
	UpdatedAt                    time.Time         `json:"updated_at"`
}

// SlugBlob says where the slug's tarball goes (method "put", before it is
// uploaded) or comes from ("get"): a signed URL on the cluster that needs
// no Authorization header.
type SlugBlob struct {
	Method string `json:"method"`
	URL    string `json:"url"`
}

// SlugCreateRequest is POST /apps/{app}/slugs.
type SlugCreateRequest struct {
	ProcessTypes                 map[string]string `json:"process_types"`
	BuildpackProvidedDescription *string           `json:"buildpack_provided_description"`
	Checksum                     *string           `json:"checksum"`
	Commit                       *string           `json:"commit"`
	CommitDescription            *string           `json:"commit_description"`
	Stack                        *string           `json:"stack"`
}

// BlobInfo is an entry of GET /cluster/blobs.
type BlobInfo struct {
	Digest     string        `json:"digest"`
	Size       int64         `json:"size"`
	Kind       string        `json:"kind"`
	Replicas   []BlobReplica `json:"replicas"`
	Zones      []string      `json:"zones"`
	Referenced bool          `json:"referenced"`
	CreatedAt  time.Time     `json:"created_at"`
	UpdatedAt  time.Time     `json:"updated_at"`
}

// BlobReplica is a node holding a copy of a blob.
type BlobReplica struct {
	Node        string `json:"node"`
	Zone        string `json:"zone"`
	GossipState string `json:"gossip_state"`
}

// slugRoutes mounts the slug endpoints, the signed blob URLs (no token, no
// Accept header: plain curl works) and GET /cluster/blobs.
func (s *Server) slugRoutes(r *mux.Router, add func(method, path, name string, h handler)) {
	if len(s.opts.BlobURLKey) == 0 {
		// No cluster key: URLs signed here only work here, until restart.
		key := make([]byte, 32)
		_, _ = rand.Read(key)
		s.opts.BlobURLKey = key
	}
	if s.opts.MaxSlugBytes <= 0 {
		s.opts.MaxSlugBytes = DefaultMaxSlugBytes
	}
	if s.opts.BlobURLTTL <= 0 {
		s.opts.BlobURLTTL = DefaultBlobURLTTL
	}
	add("GET", "/apps/{app}/slugs", "slug.list", s.slugList)
	add("POST", "/apps/{app}/slugs", "slug.create", s.slugCreate)
	add("GET", "/apps/{app}/slugs/{slug}", "slug.info", s.slugInfo)
	add("GET", "/cluster/blobs", "cluster.blobs", s.clusterBlobs)
	r.Handle(slugBlobPath("{slug}"), s.wrap("slug.blob-put", public, s.slugBlobPut)).Methods("PUT")
	r.Handle(slugBlobPath("{slug}"), s.wrap("slug.blob-get", public, s.slugBlobGet)).Methods("GET", "HEAD")
}

func slugBlobPath(id string) string { return "/slugs/" + id + "/blob" }

var checksumRE = regexp.MustCompile(`^(?i:sha256):([0-9a-fA-F]{64})$`)

// parseChecksum turns Heroku's "SHA256:<hex>" into a blob digest.
func parseChecksum(c string) (digest string, ok bool) {
	m := checksumRE.FindStringSubmatch(c)
	if m == nil {
		return "", false
	}
	return "sha256:" + strings.ToLower(m[1]), true
}

func checksumOf(digest string) string { return "SHA256:" + strings.TrimPrefix(digest, "sha256:") }

func (s *Server) slugCreate(w http.ResponseWriter, r *http.Request) error {
	_, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	var req SlugCreateRequest
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	if req.ProcessTypes == nil {
		return invalidParams("process_types can't be blank: give a command for each process type, e.g. {\"web\": \"./bin/web\"}.")
	}
	if e := fsm.ValidProcessTypes(req.ProcessTypes); e != nil {
		return e
	}
	sl := fsm.Slug{ID: uuid.NewString(), AppID: a.ID, ProcessTypes: req.ProcessTypes, Stack: a.Stack}
	if req.Stack != nil && *req.Stack != "" {
		st, ok := lookupStack(*req.Stack)
		if !ok {
			return notFound("stack")
		}
		sl.Stack = st
	}
	if req.Checksum != nil && *req.Checksum != "" {
		d, ok := parseChecksum(*req.Checksum)
		if !ok {
			return invalidParams("checksum %q is not of the form SHA256:<64 hex digits>.", *req.Checksum)
		}
		sl.Checksum = checksumOf(d)
	}
	for _, f := range []struct {
		name string
		v    *string
		max  int
		dst  *string
	}{
		{"commit", req.Commit, maxCommitLen, &sl.Commit},
		{"commit_description", req.CommitDescription, maxSlugTextLen, &sl.CommitDescription},
		{"buildpack_provided_description", req.BuildpackProvidedDescription, maxSlugTextLen, &sl.BuildpackProvided},
	} {
		if f.v == nil {
			continue
		}
		if len(*f.v) > f.max {
			return invalidParams("%s is too long (maximum is %d characters).", f.name, f.max)
		}
		*f.dst = *f.v
	}
	res, err := s.submit(r, fsm.CmdSlugCreate, fsm.SlugCreate{Slug: sl})
	if err != nil {
		return err
	}
	var out fsm.Slug
	if err := res.Decode(&out); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, s.renderSlug(r, &out))
	return nil
}

// lookupStack finds a stack by name or catalog id.
func lookupStack(key string) (string, bool) {
	for _, st := range fsm.Stacks() {
		if st.Name == key || catalogID("stack", st.Name) == key {
			return st.Name, true
		}
	}
	return "", false
}

func (s *Server) lookupSlug(r *http.Request) (*fsm.App, *fsm.Slug, error) {
	snap, a, err := s.lookupApp(r)
	if err != nil {
		return nil, nil, err
	}
	id := mux.Vars(r)["slug"]
	sl, ok := snap.Slug(id)
	if !ok {
		if err := s.b.Linearize(r.Context()); err == nil {
			sl, ok = s.b.Snap().Slug(id)
		}
	}
	if !ok || sl.AppID != a.ID {
		return nil, nil, notFound("slug")
	}
	return a, sl, nil
}

func (s *Server) slugInfo(w http.ResponseWriter, r *http.Request) error {
	_, sl, err := s.lookupSlug(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.renderSlug(r, sl))
	return nil
}

// slugTimeKey is a created_at Range key that sorts as text.
const slugTimeKey = "2006-01-02T15:04:05.000000000Z"

// slugList is GET /apps/{app}/slugs, a Slipway extension (Heroku has no
// slug list): every slug of the app, ranged by created_at or id.
func (s *Server) slugList(w http.ResponseWriter, r *http.Request) error {
	snap, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	slugs := snap.Slugs(a.ID)
	items := make([]pageItem, len(slugs))
	for i, sl := range slugs {
		items[i] = pageItem{keys: map[string]string{"id": sl.ID, "created_at": sl.CreatedAt.UTC().Format(slugTimeKey)}, v: s.renderSlug(r, sl)}
	}
	return writePage(w, r, items, "created_at", "id")
}

func (s *Server) renderSlug(r *http.Request, sl *fsm.Slug) Slug {
	out := Slug{ID: sl.ID, ProcessTypes: sl.ProcessTypes, CreatedAt: sl.CreatedAt, UpdatedAt: sl.UpdatedAt,
		Stack: Ref{ID: catalogID("stack", sl.Stack), Name: sl.Stack}}
	if out.ProcessTypes == nil {
		out.ProcessTypes = map[string]string{}
	}
	opt := func(v string) *string {
		if v == "" {
			return nil
		}
		return &v
	}
	out.Commit, out.CommitDescription, out.BuildpackProvidedDescription = opt(sl.Commit), opt(sl.CommitDescription), opt(sl.BuildpackProvided)
	out.Checksum = opt(sl.Checksum)
	method := http.MethodPut
	if sl.BlobDigest != "" {
		size := sl.Size
		out.Size = &size
		if out.Checksum == nil {
			out.Checksum = opt(checksumOf(sl.BlobDigest))
		}
		method = http.MethodGet
	}
	out.Blob = SlugBlob{Method: strings.ToLower(method), URL: s.signedBlobURL(r, method, sl.ID)}
	return out
}

// Signed blob URLs: {base}/slugs/{id}/blob?expires=UNIX&signature=SIG with
// SIG = base64url(HMAC-SHA256(key, METHOD "\n" slug id "\n" expires)). Every
// node of a cluster derives the same key from the cluster's encrypt key, so
// a URL works on any node; it is the node that answered that is named.

func (s *Server) blobSignature(method, slugID string, expires int64) string {
	m := hmac.New(sha256.New, s.opts.BlobURLKey)
	fmt.Fprintf(m, "%s\n%s\n%d", method, slugID, expires)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (s *Server) signedBlobURL(r *http.Request, method, slugID string) string {
	exp := s.opts.Now().Add(s.opts.BlobURLTTL).Unix()
	q := url.Values{"expires": {strconv.FormatInt(exp, 10)}, "signature": {s.blobSignature(method, slugID, exp)}}
	return s.blobBaseURL(r) + slugBlobPath(slugID) + "?" + q.Encode()
}

// blobBaseURL is this node as the client reached it (honouring
// X-Forwarded-Proto from a TLS-terminating proxy).
func (s *Server) blobBaseURL(r *http.Request) string {
	if r == nil || r.Host == "" {
		return strings.TrimSuffix(s.opts.APIURL, "/")
	}
	scheme := "http"
	if r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// verifyBlobURL checks a blob URL's signature and expiry and returns its
// slug.
func (s *Server) verifyBlobURL(r *http.Request, method string) (*fsm.Slug, error) {
	id := mux.Vars(r)["slug"]
	q := r.URL.Query()
	exp, err := strconv.ParseInt(q.Get("expires"), 10, 64)
	forbidden := apiErr(http.StatusForbidden, fsm.CodeForbidden, "This blob URL is not valid: get a fresh one from GET /apps/{app}/slugs/{id}.")
	if err != nil || !hmac.Equal([]byte(q.Get("signature")), []byte(s.blobSignature(method, id, exp))) {
		return nil, forbidden
	}
	if s.opts.Now().Unix() > exp {
		return nil, apiErr(http.StatusForbidden, fsm.CodeForbidden, "This blob URL expired at %s: get a fresh one from GET /apps/{app}/slugs/{id}.", time.Unix(exp, 0).UTC().Format(time.RFC3339))
	}
	sl, ok := s.b.Snap().Slug(id)
	if !ok {
		if err := s.b.Linearize(r.Context()); err == nil {
			sl, ok = s.b.Snap().Slug(id)
		}
	}
	if !ok {
		return nil, notFound("slug")
	}
	return sl, nil
}

// errSlugTooLarge ends an upload over the size limit.
var errSlugTooLarge = errors.New("slug too large")

type maxReader struct {
	r    io.Reader
	left int64
}

func (m *maxReader) Read(p []byte) (int, error) {
	if m.left < 0 {
		return 0, errSlugTooLarge
	}
	if int64(len(p)) > m.left+1 {
		p = p[:m.left+1]
	}
	n, err := m.r.Read(p)
	m.left -= int64(n)
	if m.left < 0 {
		return 0, errSlugTooLarge
	}
	return n, err
}

func sizeMB(n int64) string { return fmt.Sprintf("%dM", n>>20) }

// slugBlobPut receives a slug's tarball (PUT to the signed URL): it is
// streamed into the blob store while the archive is checked, refused if its
// checksum or contents are bad, and recorded with slug.uploaded only once
// it is stored in two zones.
func (s *Server) slugBlobPut(w http.ResponseWriter, r *http.Request) error {
	sl, err := s.verifyBlobURL(r, http.MethodPut)
	if err != nil {
		return err
	}
	if s.opts.Blobs == nil {
		return apiErr(http.StatusServiceUnavailable, "unavailable", "This node has no blob store.")
	}
	max := s.opts.MaxSlugBytes
	if r.ContentLength > max {
		return apiErr(http.StatusRequestEntityTooLarge, "request_too_large", "Slug size %s is too large (max is %s).", sizeMB(r.ContentLength), sizeMB(max))
	}
	want := ""
	if sl.Checksum != "" {
		want, _ = parseChecksum(sl.Checksum)
	}
	cr := blob.NewCheckedReader(&maxReader{r: r.Body, left: max}, blob.ArchiveLimits{})
	defer cr.Close()
	st, err := s.opts.Blobs.Put(r.Context(), "slug", cr, want)
	if err != nil {
		var ae *blob.ArchiveError
		var me *blob.MismatchError
		switch {
		case errors.Is(err, errSlugTooLarge):
			return apiErr(http.StatusRequestEntityTooLarge, "request_too_large", "Slug size is too large (max is %s).", sizeMB(max))
		case errors.As(err, &ae):
			return invalidParams("The slug archive was refused: %s. A slug is a gzip-compressed tarball of the app directory (./app) with no absolute paths, no \"..\", no links out of the tree and no device files.", ae.Error())
		case errors.As(err, &me):
			return invalidParams("Slug checksum mismatch: the upload has checksum %s, but slug %s was created with checksum %s.", checksumOf(me.Got), sl.ID, sl.Checksum)
		case errors.Is(err, blob.ErrNotReplicated):
			return apiErr(http.StatusServiceUnavailable, "unavailable", "The slug could not be stored on enough nodes: %v", err)
		case r.Context().Err() != nil:
			return apiErr(http.StatusBadRequest, "bad_request", "The upload was interrupted: %v", err)
		}
		return fmt.Errorf("storing slug %s: %w", sl.ID, err)
	}
	if st.Note != "" {
		s.log.Warn("slug stored in fewer zones than wanted", "slug", sl.ID, "note", st.Note)
		w.Header().Set("Warning", "199 slipway "+strconv.Quote(st.Note))
	}
	res, err := s.submit(r, fsm.CmdSlugUploaded, fsm.SlugUploaded{SlugID: sl.ID, Digest: st.Digest, Size: st.Size})
	if err != nil {
		return err
	}
	var out fsm.Slug
	if err := res.Decode(&out); err != nil {
		return err
	}
	w.Header().Set("X-Slipway-Blob-Replicas", strings.Join(st.Replicas, ","))
	w.Header().Set("X-Slipway-Blob-Zones", strings.Join(st.Zones, ","))
	writeJSON(w, http.StatusOK, s.renderSlug(r, &out))
	return nil
}

// slugBlobGet streams an uploaded slug's tarball (GET to the signed URL).
func (s *Server) slugBlobGet(w http.ResponseWriter, r *http.Request) error {
	sl, err := s.verifyBlobURL(r, http.MethodGet)
	if err != nil {
		return err
	}
	if sl.BlobDigest == "" {
		return apiErr(http.StatusNotFound, fsm.CodeNotFound, "Slug %s has not been uploaded yet.", sl.ID)
	}
	if s.opts.Blobs == nil {
		return apiErr(http.StatusServiceUnavailable, "unavailable", "This node has no blob store.")
	}
	rc, size, err := s.opts.Blobs.Open(r.Context(), sl.BlobDigest)
	if err != nil {
		if errors.Is(err, blob.ErrNotFound) {
			return apiErr(http.StatusServiceUnavailable, "unavailable", "No live node holds slug %s right now.", sl.ID)
		}
		return fmt.Errorf("opening slug %s: %w", sl.ID, err)
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	if size >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	}
	w.Header().Set("ETag", strconv.Quote(sl.BlobDigest))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	if _, err := io.Copy(w, rc); err != nil {
		s.log.Warn("streaming a slug failed", "slug", sl.ID, "err", err)
	}
	return nil
}

// clusterBlobs is GET /cluster/blobs: every blob record, where its copies
// are and whether anything refers to it.
func (s *Server) clusterBlobs(w http.ResponseWriter, r *http.Request) error {
	if err := requireAdmin(r); err != nil {
		return err
	}
	snap := s.b.Snap()
	refs := blob.References(snap)
	members := map[string]BlobReplica{}
	for _, m := range s.b.Cluster().Members() {
		members[m.Name] = BlobReplica{Node: m.Name, Zone: m.Meta.Zone, GossipState: m.State}
	}
	out := []BlobInfo{}
	for _, b := range snap.Blobs() {
		bi := BlobInfo{Digest: b.Digest, Size: b.Size, Kind: b.Kind, Referenced: refs[b.Digest], CreatedAt: b.CreatedAt, UpdatedAt: b.UpdatedAt,
			Replicas: []BlobReplica{}, Zones: []string{}}
		zones := map[string]bool{}
		for _, name := range b.Replicas {
			rep, ok := members[name]
			if !ok {
				rep = BlobReplica{Node: name, GossipState: "unknown"}
				if n, ok := snap.Node(name); ok {
					rep.Zone = n.Zone
				}
			}
			bi.Replicas = append(bi.Replicas, rep)
			if rep.Zone != "" {
				zones[rep.Zone] = true
			}
		}
		for z := range zones {
			bi.Zones = append(bi.Zones, z)
		}
		sort.Strings(bi.Zones)
		out = append(out, bi)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
