package deploy

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/slipwayhq/slipway/blob"
	"github.com/slipwayhq/slipway/fsm"
)

// InternalPrefix is where the build dynos' compilers reach their node, on
// the API port: /internal/builds/{id}/{job,source,cache,output,slug,finish},
// authenticated by the build's token (Bearer).
const InternalPrefix = "/internal/builds/"

// InternalHandler serves the compilers of build dynos.
func (s *Service) InternalHandler() http.Handler { return http.HandlerFunc(s.serveInternal) }

func internalError(w http.ResponseWriter, status int, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"id": http.StatusText(status), "message": fmt.Sprintf(format, args...)})
}

func (s *Service) serveInternal(w http.ResponseWriter, r *http.Request) {
	id, op, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, InternalPrefix), "/")
	b, ok := s.cfg.Snap().Build(id)
	if !ok {
		internalError(w, http.StatusNotFound, "Couldn't find that build.")
		return
	}
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	if b.TokenHash == "" || subtle.ConstantTimeCompare([]byte(hex.EncodeToString(sum[:])), []byte(b.TokenHash)) != 1 {
		internalError(w, http.StatusUnauthorized, "Invalid build token.")
		return
	}
	if b.Status != fsm.BuildPending {
		internalError(w, http.StatusConflict, "Build %s has already %s.", b.ID, b.Status)
		return
	}
	switch {
	case op == "job" && r.Method == http.MethodGet:
		s.internalJob(w, r, b)
	case op == "source" && r.Method == http.MethodGet:
		s.internalBlob(w, r, b.SourceDigest)
	case op == "cache" && r.Method == http.MethodGet:
		s.internalBlob(w, r, s.cfg.Snap().Repo(b.AppID).CacheDigest)
	case op == "output" && r.Method == http.MethodPost:
		s.internalOutput(w, r, b)
	case (op == "slug" || op == "cache") && r.Method == http.MethodPut:
		s.internalPut(w, r, b, op)
	case op == "finish" && r.Method == http.MethodPost:
		s.internalFinish(w, r, b)
	default:
		internalError(w, http.StatusNotFound, "No such build endpoint.")
	}
}

func (s *Service) internalJob(w http.ResponseWriter, r *http.Request, b *fsm.Build) {
	snap := s.cfg.Snap()
	app, ok := snap.App(b.AppID)
	if !ok {
		internalError(w, http.StatusNotFound, "Couldn't find that app.")
		return
	}
	bps := b.Buildpacks
	if len(bps) == 0 {
		bps = app.Buildpacks
	}
	cfg := snap.Config(app.ID)
	if len(bps) == 0 {
		// The legacy way: a BUILDPACK_URL config var.
		if u := cfg["BUILDPACK_URL"]; u != "" {
			bps = []string{u}
		}
	}
	start := b.CreatedAt
	if b.StartedAt != nil {
		start = *b.StartedAt
	}
	job := Job{BuildID: b.ID, AppID: app.ID, AppName: app.Name, Stack: b.Stack, Buildpacks: bps, Config: cfg,
		SourceVersion: b.SourceVersion, HasCache: snap.Repo(app.ID).CacheDigest != "",
		Deadline: s.cfg.Now().Add(s.cfg.BuildTimeout), TimeLimit: s.cfg.BuildTimeout, MaxSlugBytes: s.cfg.MaxSlugBytes, WebURL: s.cfg.WebURL(app.Name)}
	if d := start.Add(s.cfg.BuildTimeout); d.Before(job.Deadline) && b.StartedAt != nil {
		job.Deadline = d
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(job)
}

func (s *Service) internalBlob(w http.ResponseWriter, r *http.Request, digest string) {
	if digest == "" {
		internalError(w, http.StatusNotFound, "Nothing stored.")
		return
	}
	rc, size, err := s.cfg.Blobs.Open(r.Context(), digest)
	if err != nil {
		internalError(w, http.StatusServiceUnavailable, "Opening %s: %v", digest, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	if size >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	}
	if _, err := io.Copy(w, rc); err != nil {
		s.log.Warn("streaming a blob to a build dyno", "digest", digest, "err", err)
	}
}

// internalOutput receives the compiler's output stream. It records this
// node as the one holding the output (build.running) first.
func (s *Service) internalOutput(w http.ResponseWriter, r *http.Request, b *fsm.Build) {
	if _, err := s.submit(r.Context(), "", fsm.CmdBuildRunning, fsm.BuildRunning{BuildID: b.ID, OutputNode: s.cfg.Node}); err != nil {
		internalError(w, http.StatusServiceUnavailable, "Recording the build: %v", err)
		return
	}
	buf := s.hub.get(b.ID, true)
	_, err := io.Copy(buf, r.Body)
	if err != nil {
		// The compiler is gone: its output is complete as it is.
		buf.Close()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.storeOutput(s.ctx, b.ID, buf)
		}()
		return
	}
	// The finish closes the output (after adding the release's lines);
	// if it never comes, close it after a while.
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-s.ctx.Done():
		case <-time.After(2 * time.Minute):
			if _, closed := buf.Bytes(); !closed {
				buf.Close()
				s.storeOutput(s.ctx, b.ID, buf)
			}
		}
	}()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Service) internalPut(w http.ResponseWriter, r *http.Request, b *fsm.Build, what string) {
	var body io.Reader = r.Body
	kind := "cache"
	if what == "slug" {
		kind = "slug"
		if r.ContentLength > s.cfg.MaxSlugBytes {
			internalError(w, http.StatusRequestEntityTooLarge, "Compiled slug size: %s is too large (max is %s).", sizeM(r.ContentLength), sizeM(s.cfg.MaxSlugBytes))
			return
		}
		cr := blob.NewCheckedReader(&limitReader{r: r.Body, left: s.cfg.MaxSlugBytes}, blob.ArchiveLimits{})
		defer cr.Close()
		body = cr
	}
	st, err := s.cfg.Blobs.Put(r.Context(), kind, body, "")
	if err != nil {
		var ae *blob.ArchiveError
		switch {
		case errors.Is(err, errTooLarge):
			internalError(w, http.StatusRequestEntityTooLarge, "Compiled slug size is too large (max is %s).", sizeM(s.cfg.MaxSlugBytes))
		case errors.As(err, &ae):
			internalError(w, http.StatusUnprocessableEntity, "The slug archive was refused: %s", ae.Error())
		case errors.Is(err, blob.ErrNotReplicated):
			internalError(w, http.StatusServiceUnavailable, "The %s could not be stored in enough zones: %v", kind, err)
		default:
			internalError(w, http.StatusInternalServerError, "Storing the %s failed: %v", kind, err)
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(Stored{Digest: st.Digest, Size: st.Size})
}

// internalFinish records the compiler's result: build.finish (which makes
// the release), the release's lines in the output, then the output stored.
func (s *Service) internalFinish(w http.ResponseWriter, r *http.Request, b *fsm.Build) {
	var res Result
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&res); err != nil {
		internalError(w, http.StatusBadRequest, "Invalid result: %v", err)
		return
	}
	buf := s.hub.get(b.ID, true)
	ctx := r.Context()
	fin := fsm.BuildFinish{BuildID: b.ID, Status: fsm.BuildFailed, Message: res.Message}
	if res.Status == fsm.BuildSucceeded {
		if res.Slug == nil {
			internalError(w, http.StatusBadRequest, "A succeeded build needs its slug.")
			return
		}
		fin.Status = fsm.BuildSucceeded
		fin.Slug = &fsm.Slug{ID: uuid.NewString(), ProcessTypes: res.ProcessTypes, BlobDigest: res.Slug.Digest, Size: res.Slug.Size,
			Stack: b.Stack, Commit: b.SourceVersion, BuildpackProvided: truncateText(res.Buildpack, 200),
			Checksum: "SHA256:" + strings.TrimPrefix(res.Slug.Digest, "sha256:")}
		if fin.Slug.ProcessTypes == nil {
			fin.Slug.ProcessTypes = map[string]string{}
		}
		fin.ReleaseID, fin.ReleaseDynoID = uuid.NewString(), uuid.NewString()
		if res.Cache != nil {
			fin.CacheDigest, fin.CacheSize = res.Cache.Digest, res.Cache.Size
		}
	}
	out, err := s.submit(ctx, b.UserID, fsm.CmdBuildFinish, fin)
	if err != nil {
		if e, ok := fsm.AsError(err); ok {
			fmt.Fprintf(buf, " !     %s\n", e.Message)
			internalError(w, http.StatusUnprocessableEntity, "%s", e.Message)
		} else {
			internalError(w, http.StatusServiceUnavailable, "Recording the build failed: %v", err)
		}
		return
	}
	var fr fsm.BuildFinishResult
	if err := out.Decode(&fr); err != nil {
		internalError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	app, _ := s.cfg.Snap().App(b.AppID)
	appName := ""
	if app != nil {
		appName = app.Name
	}
	var rel Released
	if fr.Release != nil {
		rel = Released{Version: fr.Release.Version, WebURL: s.cfg.WebURL(appName), ReleasePhase: fr.Release.Status == fsm.ReleasePending}
		fmt.Fprintln(buf, "-----> Launching...")
		if rel.ReleasePhase {
			fmt.Fprintln(buf, " !     Release command declared: this new release will not be available until the command succeeds.")
		}
		fmt.Fprintf(buf, "       Released v%d\n", rel.Version)
		fmt.Fprintf(buf, "       %s deployed to Heroku\n", rel.WebURL)
		fmt.Fprintln(buf)
		s.event(b.AppID, b.UserID, "Build succeeded")
		s.event(b.AppID, b.UserID, "%s", fr.Release.Description)
		s.event(b.AppID, b.UserID, "Release v%d created", fr.Release.Version)
	} else {
		s.event(b.AppID, b.UserID, "Build failed")
	}
	buf.Close()
	s.storeOutput(ctx, b.ID, buf)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(rel)
}
