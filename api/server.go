package api

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	metrics "github.com/armon/go-metrics"
	"github.com/google/uuid"
	"github.com/gorilla/mux"

	"github.com/slipwayhq/slipway/cluster"
	"github.com/slipwayhq/slipway/fsm"
	"github.com/slipwayhq/slipway/logplex"
)

// Backend is what the API needs from its node.
type Backend interface {
	// Snap returns the local replica's current state.
	Snap() *fsm.Snap
	// Submit replicates cmd and returns its result once the local replica
	// reflects it.
	Submit(ctx context.Context, cmd fsm.Command) (*fsm.Result, error)
	// Linearize waits until the local replica has every write committed
	// before the call.
	Linearize(ctx context.Context) error
	// Cluster describes the node's cluster.
	Cluster() Cluster
}

// Cluster is the part of cluster.Node the admin endpoints read.
type Cluster interface {
	Name() string
	Region() string
	Members() []cluster.Member
	Status() (cluster.RaftStatus, error)
	Regions() []string
}

// Options configure the API.
type Options struct {
	// Domain is the cluster domain: apps are APP.<Domain>.
	Domain string
	// APIURL is this node's API base URL (for git_url).
	APIURL string
	// RouterURL is the base URL of the routers (for web_url); its host is
	// replaced by APP.<Domain>.
	RouterURL string
	Version   string
	Logger    *slog.Logger
	Now       func() time.Time
	// Metrics serves /metrics (Prometheus text); nil disables it.
	Metrics http.Handler
	// MaxBodyBytes bounds request bodies (default 1 MiB).
	MaxBodyBytes int64
	// RendezvousAddr is this node's attach endpoint (host:port) for
	// attached one-off dynos; empty disables attach.
	RendezvousAddr string
	// Events receives platform events (app[api] lines); nil: none.
	Events logplex.Sink
	// Logs serves log sessions, drain health and the log-input rate; nil:
	// log sessions are unavailable.
	Logs Logs
	// Blobs stores slug tarballs (api/slugs.go); nil: uploads answer 503.
	Blobs BlobStore
	// BlobURLKey signs slug blob URLs; nodes sharing it accept each other's
	// URLs. Empty: a random key (URLs then work on this node until restart).
	BlobURLKey []byte
	// MaxSlugBytes bounds slug tarballs (default 500 MB, as Heroku's);
	// BlobURLTTL is how long blob URLs last (default 1 h).
	MaxSlugBytes int64
	BlobURLTTL   time.Duration
}

// Server is the HTTP API.
type Server struct {
	b    Backend
	opts Options
	log  *slog.Logger
	r    *mux.Router
	// deployer serves builds and git (api/builds.go).
	deployer deployerSlot
}

type ctxKey int

const userKey ctxKey = 1

// New builds the API handler.
func New(b Backend, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = 1 << 20
	}
	if opts.Domain == "" {
		opts.Domain = "localhost"
	}
	s := &Server{b: b, opts: opts, log: opts.Logger, r: mux.NewRouter()}
	s.routes()
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.r.ServeHTTP(w, r) }

// handler is an API handler that returns an error to be rendered.
type handler func(w http.ResponseWriter, r *http.Request) error

func (s *Server) routes() {
	r := s.r
	r.NotFoundHandler = s.wrap("not_found", public, func(w http.ResponseWriter, r *http.Request) error {
		return apiErr(http.StatusNotFound, "not_found", "The requested API endpoint was not found. Are you using the right HTTP verb (i.e. `GET` vs. `POST`), and did you specify your intended version with the `Accept` header?")
	})
	r.MethodNotAllowedHandler = r.NotFoundHandler
	// Paths are matched as sent: a log drain's URL travels percent-encoded
	// in the path (heroku drains:remove), and cleaning "//" would mangle it.
	r.SkipClean(true)
	r.Handle("/health", s.wrap("health", public, s.health)).Methods("GET")
	if s.opts.Metrics != nil {
		// Scrapers send their own Accept header, so no Platform API check.
		r.Handle("/metrics", s.wrap("metrics", tokenOnly, func(w http.ResponseWriter, r *http.Request) error {
			s.opts.Metrics.ServeHTTP(w, r)
			return nil
		})).Methods("GET")
	}
	add := func(method, path, name string, h handler) {
		r.Handle(path, s.wrap(name, platform, h)).Methods(method)
	}
	add("GET", "/account", "account.info", s.accountInfo)

	add("GET", "/account/features", "account-feature.list", s.accountFeatureList)
	add("GET", "/account/features/{feature}", "account-feature.info", s.accountFeatureInfo)

	add("GET", "/apps", "app.list", s.appList)
	add("GET", "/users/{user}/apps", "app.list-owned", s.appListOwned)
	add("POST", "/apps", "app.create", s.appCreate)
	add("GET", "/apps/{app}", "app.info", s.appInfo)
	add("PATCH", "/apps/{app}", "app.update", s.appUpdate)
	add("DELETE", "/apps/{app}", "app.delete", s.appDelete)

	add("GET", "/apps/{app}/config-vars", "config-vars.info", s.configInfo)
	add("PATCH", "/apps/{app}/config-vars", "config-vars.update", s.configUpdate)
	add("GET", "/apps/{app}/releases/{release}/config-vars", "config-vars.release", s.configForRelease)

	add("GET", "/apps/{app}/releases", "release.list", s.releaseList)
	add("POST", "/apps/{app}/releases", "release.create", s.releaseCreate)
	add("GET", "/apps/{app}/releases/{release}", "release.info", s.releaseInfo)

	add("GET", "/apps/{app}/formation", "formation.list", s.formationList)
	add("PATCH", "/apps/{app}/formation", "formation.batch-update", s.formationBatch)
	add("GET", "/apps/{app}/formation/{type}", "formation.info", s.formationInfo)
	add("PATCH", "/apps/{app}/formation/{type}", "formation.update", s.formationUpdate)

	add("GET", "/apps/{app}/addons", "add-on.list", s.addonList)
	add("GET", "/apps/{app}/sni-endpoints", "sni-endpoint.list", s.sniEndpointList)
	add("POST", "/apps/{app}/sni-endpoints", "sni-endpoint.create", s.sniEndpointCreate)
	add("GET", "/apps/{app}/sni-endpoints/{sni}", "sni-endpoint.info", s.sniEndpointInfo)
	add("PATCH", "/apps/{app}/sni-endpoints/{sni}", "sni-endpoint.update", s.sniEndpointUpdate)
	add("DELETE", "/apps/{app}/sni-endpoints/{sni}", "sni-endpoint.delete", s.sniEndpointDelete)

	add("GET", "/apps/{app}/dynos", "dyno.list", s.dynoList)
	add("POST", "/apps/{app}/dynos", "dyno.create", s.dynoCreate)
	add("DELETE", "/apps/{app}/dynos", "dyno.restart-all", s.restartDynos)
	add("GET", "/apps/{app}/dynos/{dyno}", "dyno.info", s.dynoInfo)
	add("DELETE", "/apps/{app}/dynos/{dyno}", "dyno.restart", s.restartDynos)
	add("POST", "/apps/{app}/dynos/{dyno}/actions/stop", "dyno.stop", s.stopDynos)
	add("DELETE", "/apps/{app}/formations/{type}", "dyno.restart-type", s.restartDynos)
	add("POST", "/apps/{app}/formations/{type}/actions/stop", "dyno.stop-type", s.stopDynos)

	add("GET", "/apps/{app}/domains", "domain.list", s.domainList)
	add("POST", "/apps/{app}/domains", "domain.create", s.domainCreate)
	add("GET", "/apps/{app}/domains/{domain}", "domain.info", s.domainInfo)
	add("DELETE", "/apps/{app}/domains/{domain}", "domain.delete", s.domainDelete)

	add("GET", "/apps/{app}/features", "app-feature.list", s.featureList)
	add("GET", "/apps/{app}/features/{feature}", "app-feature.info", s.featureInfo)
	add("PATCH", "/apps/{app}/features/{feature}", "app-feature.update", s.featureUpdate)

	add("GET", "/regions", "region.list", s.regionList)
	add("GET", "/regions/{region}", "region.info", s.regionInfo)
	add("GET", "/stacks", "stack.list", s.stackList)
	add("GET", "/stacks/{stack}", "stack.info", s.stackInfo)

	add("GET", "/cluster/nodes", "cluster.nodes", s.clusterNodes)
	add("POST", "/cluster/nodes/{name}/drain", "cluster.drain", s.clusterDrain)
	add("GET", "/cluster/raft", "cluster.raft", s.clusterRaft)
	add("GET", "/cluster/dynos", "cluster.dynos", s.clusterDynos)
	add("GET", "/cluster/dynos/{id}", "cluster.dyno", s.clusterDyno)
	s.logRoutes(add)
	s.slugRoutes(r, add)
	s.buildRoutes(r, add)
	r.Handle("/cluster/ca", s.wrap("cluster.ca", tokenOnly, s.clusterCA)).Methods("GET")
}

// statusWriter records the status for logs and metrics.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Route kinds: what a request must bring.
type access int

const (
	public    access = iota // nothing
	tokenOnly               // a token
	platform                // a token and a Platform API v3 Accept header
)

// wrap adds request ids, auth, panic recovery, error rendering, logging and
// metrics to a handler.
func (s *Server) wrap(name string, mode access, h handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		start := time.Now()
		w := &statusWriter{ResponseWriter: rw}
		reqID := r.Header.Get("X-Request-Id")
		if reqID == "" || len(reqID) > 200 {
			reqID = uuid.NewString()
		}
		w.Header().Set("Request-Id", reqID)
		err := func() (err error) {
			defer func() {
				if p := recover(); p != nil {
					s.log.Error("api: handler panicked", "route", name, "panic", p)
					err = apiErr(http.StatusInternalServerError, "internal_server_error", "Internal server error.")
				}
			}()
			if mode == platform {
				if err := checkAccept(r); err != nil {
					return err
				}
			}
			if mode != public {
				u, err := s.authenticate(r)
				if err != nil {
					return err
				}
				r = r.WithContext(context.WithValue(r.Context(), userKey, u))
				if r.Header.Get("X-Slipway-Consistency") == "linearizable" {
					if err := s.b.Linearize(r.Context()); err != nil {
						return unavailable(err)
					}
				}
			}
			return h(w, r)
		}()
		if err != nil {
			s.renderError(w, r, name, err)
		}
		labels := []metrics.Label{{Name: "route", Value: name}, {Name: "method", Value: r.Method}, {Name: "status", Value: strconv.Itoa(w.status)}}
		metrics.MeasureSinceWithLabels([]string{"slipway", "api", "request"}, start, labels)
		metrics.IncrCounterWithLabels([]string{"slipway", "api", "requests"}, 1, labels)
		s.log.Debug("api request", "method", r.Method, "path", r.URL.Path, "route", name, "status", w.status, "dur", time.Since(start), "request_id", reqID)
	})
}

// httpError is an error with an HTTP status and a Heroku error id.
type httpError struct {
	status int
	id     string
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func apiErr(status int, id, format string, args ...any) error {
	return &httpError{status: status, id: id, msg: fmt.Sprintf(format, args...)}
}

func invalidParams(format string, args ...any) error {
	return apiErr(http.StatusUnprocessableEntity, fsm.CodeInvalidParams, format, args...)
}

func notFound(what string) error {
	return apiErr(http.StatusNotFound, fsm.CodeNotFound, "Couldn't find that %s.", what)
}

func unavailable(err error) error {
	return apiErr(http.StatusServiceUnavailable, "unavailable", "The cluster cannot take writes right now: %v", err)
}

func codeStatus(code string) (int, bool) {
	switch code {
	case fsm.CodeBadRequest:
		return http.StatusBadRequest, true
	case fsm.CodeNotFound:
		return http.StatusNotFound, true
	case fsm.CodeConflict:
		return http.StatusConflict, true
	case fsm.CodeInvalidParams:
		return http.StatusUnprocessableEntity, true
	case fsm.CodeForbidden:
		return http.StatusForbidden, true
	}
	return http.StatusInternalServerError, false
}

func (s *Server) renderError(w http.ResponseWriter, r *http.Request, route string, err error) {
	var he *httpError
	if e, ok := fsm.AsError(err); ok {
		status, _ := codeStatus(e.Code)
		he = &httpError{status: status, id: e.Code, msg: e.Message}
	} else if !errors.As(err, &he) {
		if errors.Is(err, cluster.ErrNoLeader) {
			he = unavailable(err).(*httpError)
		} else {
			s.log.Error("api: request failed", "route", route, "err", err)
			he = &httpError{status: http.StatusInternalServerError, id: "internal_server_error", msg: "Internal server error."}
		}
	}
	if he.status >= 500 {
		s.log.Warn("api: server error", "route", route, "status", he.status, "id", he.id, "message", he.msg)
	}
	writeJSON(w, he.status, Error{ID: he.id, Message: he.msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// checkAccept enforces the Platform API's Accept header: a client that asks
// for another version gets 406, like Heroku. Clients that send no Accept
// header at all (curl) are served version 3.
func checkAccept(r *http.Request) error {
	acc := r.Header.Get("Accept")
	if acc == "" || strings.Contains(acc, "*/*") || strings.Contains(acc, "application/json") {
		return nil
	}
	if !strings.Contains(acc, "application/vnd.heroku+json") {
		return apiErr(http.StatusNotAcceptable, "not_acceptable", "Please specify a version along with Heroku's API MIME type. For example, `Accept: application/vnd.heroku+json; version=3`.")
	}
	for _, part := range strings.Split(acc, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok && strings.TrimSpace(k) == "version" {
			v = strings.TrimSpace(v)
			if v == "3" || strings.HasPrefix(v, "3.") {
				return nil
			}
			return apiErr(http.StatusNotAcceptable, "not_acceptable", "API version %s is not supported; this server speaks version 3.", v)
		}
	}
	return apiErr(http.StatusNotAcceptable, "not_acceptable", "Please specify a version along with Heroku's API MIME type. For example, `Accept: application/vnd.heroku+json; version=3`.")
}

// HashToken is how tokens are stored: hex SHA-256 of the secret. Tokens are
// 256-bit random values, so a plain hash is enough.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// TokenFromRequest extracts the API token: a Bearer token, or the password
// of HTTP basic auth (what git and the heroku CLI's netrc use).
func TokenFromRequest(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if t, ok := strings.CutPrefix(h, "Bearer "); ok {
		return strings.TrimSpace(t)
	}
	if b, ok := strings.CutPrefix(h, "Basic "); ok {
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b))
		if err == nil {
			if _, pw, ok := strings.Cut(string(raw), ":"); ok {
				return pw
			}
		}
	}
	return ""
}

// Authenticate resolves a request's token to a user (for other handlers
// mounted beside the API, e.g. git).
func (s *Server) Authenticate(r *http.Request) (*fsm.User, error) { return s.authenticate(r) }

func (s *Server) authenticate(r *http.Request) (*fsm.User, error) {
	tok := TokenFromRequest(r)
	if tok == "" {
		return nil, apiErr(http.StatusUnauthorized, "unauthorized", "No credentials provided: send an API token as `Authorization: Bearer TOKEN`.")
	}
	snap := s.b.Snap()
	t, ok := snap.TokenByHash(HashToken(tok))
	if !ok {
		// This replica may not have the token yet (a node that just
		// restarted replays its state): confirm with the leader before
		// refusing, and say "unavailable", not "unauthorized", if that
		// cannot be done.
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		err := s.b.Linearize(ctx)
		cancel()
		if err != nil {
			return nil, apiErr(http.StatusServiceUnavailable, "unavailable", "This node cannot check credentials right now (it is catching up with the cluster); retry shortly.")
		}
		snap = s.b.Snap()
		t, ok = snap.TokenByHash(HashToken(tok))
	}
	if !ok || (t.ExpiresAt != nil && s.opts.Now().After(*t.ExpiresAt)) {
		return nil, apiErr(http.StatusUnauthorized, "unauthorized", "Invalid credentials provided.")
	}
	u, ok := snap.User(t.UserID)
	if !ok {
		return nil, apiErr(http.StatusUnauthorized, "unauthorized", "Invalid credentials provided.")
	}
	return u, nil
}

func currentUser(r *http.Request) *fsm.User {
	u, _ := r.Context().Value(userKey).(*fsm.User)
	return u
}

// decode reads a JSON body strictly: unknown fields, trailing data and
// oversized bodies are errors.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) error {
	body := http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
	raw, err := io.ReadAll(body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return apiErr(http.StatusRequestEntityTooLarge, "request_too_large", "Request body is larger than %d bytes.", s.opts.MaxBodyBytes)
		}
		return apiErr(http.StatusBadRequest, "bad_request", "Could not read the request body: %v", err)
	}
	if len(strings.TrimSpace(string(raw))) == 0 {
		raw = []byte("{}")
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return apiErr(http.StatusBadRequest, "bad_request", "Invalid JSON body: %s", jsonErrText(err))
	}
	if dec.More() {
		return apiErr(http.StatusBadRequest, "bad_request", "Invalid JSON body: unexpected data after the JSON value.")
	}
	return nil
}

func jsonErrText(err error) string {
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) && ute.Field != "" {
		return fmt.Sprintf("field %q must be %s, not %s", ute.Field, ute.Type.String(), ute.Value)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// submit proposes a command built from payload and returns its result.
func (s *Server) submit(r *http.Request, typ string, payload any) (*fsm.Result, error) {
	by := ""
	if u := currentUser(r); u != nil {
		by = u.ID
	}
	cmd, err := fsm.NewCommand(typ, uuid.NewString(), s.opts.Now(), by, payload)
	if err != nil {
		return nil, err
	}
	res, err := s.b.Submit(r.Context(), cmd)
	if err != nil {
		if errors.Is(err, cluster.ErrNoLeader) || errors.Is(err, context.DeadlineExceeded) {
			return nil, unavailable(err)
		}
		if e, ok := fsm.AsError(err); ok {
			return nil, e
		}
		return nil, fmt.Errorf("submitting %s: %w", typ, err)
	}
	if res.Err != nil {
		return nil, res.Err
	}
	return res, nil
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) error {
	c := s.b.Cluster()
	st, _ := c.Status()
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "node": c.Name(), "region": c.Region(),
		"leader": st.Leader, "applied_index": s.b.Snap().Index(), "version": s.opts.Version})
	return nil
}
