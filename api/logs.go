package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/mux"

	"github.com/slipwayhq/slipway/fsm"
	"github.com/slipwayhq/slipway/logplex"
)

// Logs is what the log endpoints need from the node's log pipeline
// (*logplex.Pipeline).
type Logs interface {
	// NewSession creates a log session; its token goes into logplex_url.
	NewSession(appID string, req logplex.SessionRequest) (logplex.Session, error)
	// ServeSession serves a session's text/event-stream.
	ServeSession(w http.ResponseWriter, r *http.Request, token string)
	// DrainHealth reports an app's drains' delivery state, region-wide.
	DrainHealth(ctx context.Context, appID string) map[string]logplex.DrainHealth
	// InputRate is the log-input rate in force on this node.
	InputRate() logplex.RateInfo
	// Emit accepts a line on this node (the admin injection endpoint).
	Emit(logplex.Line)
}

// LogSessionPath is where log session streams are served (no auth: the
// signed, expiring token in the path is the credential).
const LogSessionPath = "/log-stream/"

// LogSession is a log-session resource.
type LogSession struct {
	ID         string    `json:"id"`
	LogplexURL string    `json:"logplex_url"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// LogSessionCreateRequest is POST /apps/{app}/log-sessions. The heroku CLI
// sends dyno (a dyno name or a process type), lines, source and tail; the
// schema also has dyno_name and type.
type LogSessionCreateRequest struct {
	Dyno     *string `json:"dyno,omitempty"`
	DynoName *string `json:"dyno_name,omitempty"`
	Type     *string `json:"type,omitempty"`
	Lines    *int    `json:"lines,omitempty"`
	Source   *string `json:"source,omitempty"`
	Tail     *bool   `json:"tail,omitempty"`
}

// LogDrain is a log-drain resource. Status through Buffered are a Slipway
// extension: the drain's delivery health summed over the region's nodes
// (each node delivers the lines born on it).
type LogDrain struct {
	Addon     *Ref      `json:"addon"`
	App       Ref       `json:"app"`
	CreatedAt time.Time `json:"created_at"`
	ID        string    `json:"id"`
	Token     string    `json:"token"`
	UpdatedAt time.Time `json:"updated_at"`
	URL       string    `json:"url"`

	// Status is ok (last delivery succeeded), failing (retrying), idle
	// (nothing to deliver yet) or unknown (no node reported).
	Status          string     `json:"status"`
	LastError       *string    `json:"last_error"`
	LastErrorAt     *time.Time `json:"last_error_at"`
	LastDeliveredAt *time.Time `json:"last_delivered_at"`
	// Delivered, Dropped (buffer overflow, each reported by an L10 line),
	// Rejected (4xx answers) and Buffered count lines.
	Delivered uint64 `json:"delivered"`
	Dropped   uint64 `json:"dropped"`
	Rejected  uint64 `json:"rejected"`
	Buffered  int    `json:"buffered"`
	// Nodes is how many nodes reported.
	Nodes int `json:"nodes"`
}

// LogDrainCreateRequest is POST /apps/{app}/log-drains.
type LogDrainCreateRequest struct {
	URL string `json:"url"`
}

// RateUpdateRequest is PUT /cluster/rates/{name}.
type RateUpdateRequest struct {
	Value *float64 `json:"value"`
}

// LogLinesRequest is POST /cluster/log-lines/{app} (admin): lines to emit
// on the node handling the request, as if a process printed them.
type LogLinesRequest struct {
	Lines  []string `json:"lines"`
	Source string   `json:"source,omitempty"` // app (default) or heroku
	Dyno   string   `json:"dyno,omitempty"`   // default: test.1
}

// logRoutes registers the log endpoints (called from routes).
func (s *Server) logRoutes(add func(method, path, name string, h handler)) {
	add("POST", "/apps/{app}/log-sessions", "log-session.create", s.logSessionCreate)
	add("GET", "/apps/{app}/log-drains", "log-drain.list", s.logDrainList)
	add("POST", "/apps/{app}/log-drains", "log-drain.create", s.logDrainCreate)
	// A drain is named by id, token or URL; the heroku CLI sends the URL
	// percent-encoded, so the name may hold slashes once decoded.
	add("GET", "/apps/{app}/log-drains/{drain:.+}", "log-drain.info", s.logDrainInfo)
	add("DELETE", "/apps/{app}/log-drains/{drain:.+}", "log-drain.delete", s.logDrainDelete)
	add("GET", "/cluster/rates/"+logplex.RateLogInput, "cluster.rate-info", s.rateInfo)
	add("PUT", "/cluster/rates/"+logplex.RateLogInput, "cluster.rate-update", s.rateUpdate)
	add("POST", "/cluster/log-lines/{app}", "cluster.log-lines", s.logLinesInject)
	s.r.Handle(LogSessionPath+"{token}", http.HandlerFunc(s.logStream)).Methods("GET")
}

func (s *Server) logs() (Logs, error) {
	if s.opts.Logs == nil {
		return nil, apiErr(http.StatusServiceUnavailable, "unavailable", "Logs are not available on this node.")
	}
	return s.opts.Logs, nil
}

// baseURL is the URL the client reached this node by (for logplex_url).
func (s *Server) baseURL(r *http.Request) string {
	if r.Host == "" {
		return strings.TrimSuffix(s.opts.APIURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (s *Server) logSessionCreate(w http.ResponseWriter, r *http.Request) error {
	_, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	var req LogSessionCreateRequest
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	logs, err := s.logs()
	if err != nil {
		return err
	}
	sr := logplex.SessionRequest{Lines: 100}
	if req.Lines != nil {
		if *req.Lines < 0 {
			return invalidParams("lines must be 0 or more.")
		}
		sr.Lines = min(*req.Lines, logplex.MaxSessionLines)
	}
	if req.Tail != nil {
		sr.Tail = *req.Tail
	}
	if req.Source != nil {
		sr.Filter.Source = *req.Source
	}
	for _, d := range []*string{req.Type, req.DynoName, req.Dyno} {
		if d != nil && *d != "" {
			sr.Filter.Dyno = *d
		}
	}
	if err := sr.Filter.Validate(); err != nil {
		return invalidParams("%s.", capitalize(err.Error()))
	}
	sess, err := logs.NewSession(a.ID, sr)
	if err != nil {
		return invalidParams("%s.", capitalize(err.Error()))
	}
	writeJSON(w, http.StatusCreated, LogSession{ID: sess.ID, LogplexURL: s.baseURL(r) + LogSessionPath + sess.Token,
		CreatedAt: sess.CreatedAt.UTC(), UpdatedAt: sess.CreatedAt.UTC()})
	return nil
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// logStream serves a log session's stream. It is public: the heroku CLI
// fetches logplex_url without credentials.
func (s *Server) logStream(w http.ResponseWriter, r *http.Request) {
	if s.opts.Logs == nil {
		writeJSON(w, http.StatusNotFound, Error{ID: "not_found", Message: "Logs are not available on this node."})
		return
	}
	s.opts.Logs.ServeSession(w, r, mux.Vars(r)["token"])
}

func (s *Server) renderDrain(a *fsm.App, d *fsm.LogDrain, health map[string]logplex.DrainHealth) LogDrain {
	out := LogDrain{App: Ref{ID: a.ID, Name: a.Name}, CreatedAt: d.CreatedAt, ID: d.ID, Token: d.Token,
		UpdatedAt: d.UpdatedAt, URL: d.URL, Status: "unknown"}
	if h, ok := health[d.ID]; ok {
		out.Status, out.LastErrorAt, out.LastDeliveredAt = h.Status, h.LastErrorAt, h.LastDeliveredAt
		out.Delivered, out.Dropped, out.Rejected, out.Buffered, out.Nodes = h.Delivered, h.Dropped, h.Rejected, h.Buffered, h.Nodes
		if h.LastError != "" {
			e := h.LastError
			out.LastError = &e
		}
	}
	return out
}

func (s *Server) drainHealth(r *http.Request, appID string) map[string]logplex.DrainHealth {
	if s.opts.Logs == nil {
		return nil
	}
	return s.opts.Logs.DrainHealth(r.Context(), appID)
}

func (s *Server) logDrainList(w http.ResponseWriter, r *http.Request) error {
	snap, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	ds := snap.Drains(a.ID)
	health := map[string]logplex.DrainHealth{}
	if len(ds) > 0 {
		health = s.drainHealth(r, a.ID)
	}
	out := make([]LogDrain, len(ds))
	for i, d := range ds {
		out[i] = s.renderDrain(a, d, health)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) lookupDrain(r *http.Request) (*fsm.App, *fsm.LogDrain, error) {
	snap, a, err := s.lookupApp(r)
	if err != nil {
		return nil, nil, err
	}
	d, ok := snap.Drain(a.ID, mux.Vars(r)["drain"])
	if !ok {
		return nil, nil, notFound("log drain")
	}
	return a, d, nil
}

func (s *Server) logDrainInfo(w http.ResponseWriter, r *http.Request) error {
	a, d, err := s.lookupDrain(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.renderDrain(a, d, s.drainHealth(r, a.ID)))
	return nil
}

func (s *Server) logDrainCreate(w http.ResponseWriter, r *http.Request) error {
	_, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	var req LogDrainCreateRequest
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	raw := strings.TrimSpace(req.URL)
	if _, err := logplex.ParseDrainURL(raw); err != nil {
		return invalidParams("%s", err.Error())
	}
	d := fsm.LogDrain{ID: uuid.NewString(), AppID: a.ID, URL: raw, Token: "d." + uuid.NewString()}
	res, err := s.submit(r, fsm.CmdDrainCreate, fsm.DrainCreate{Drain: d})
	if err != nil {
		return err
	}
	var out fsm.LogDrain
	if err := res.Decode(&out); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, s.renderDrain(a, &out, nil))
	return nil
}

func (s *Server) logDrainDelete(w http.ResponseWriter, r *http.Request) error {
	a, d, err := s.lookupDrain(r)
	if err != nil {
		return err
	}
	if _, err := s.submit(r, fsm.CmdDrainDelete, fsm.DrainDelete{AppID: a.ID, DrainID: d.ID}); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.renderDrain(a, d, nil))
	return nil
}

func (s *Server) rateInfo(w http.ResponseWriter, r *http.Request) error {
	if err := requireAdmin(r); err != nil {
		return err
	}
	logs, err := s.logs()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, logs.InputRate())
	return nil
}

// rateUpdate sets the log-input rate cluster-wide (replicated); a node's
// rate file, when present, still wins on that node.
func (s *Server) rateUpdate(w http.ResponseWriter, r *http.Request) error {
	if err := requireAdmin(r); err != nil {
		return err
	}
	var req RateUpdateRequest
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	if req.Value == nil {
		return invalidParams("value can't be blank.")
	}
	if err := logplex.ParseRate(*req.Value); err != nil {
		return invalidParams("%s.", capitalize(err.Error()))
	}
	raw, err := json.Marshal(*req.Value)
	if err != nil {
		return err
	}
	if _, err := s.submit(r, fsm.CmdMetaSet, fsm.MetaSet{Key: logplex.RateMetaKey(logplex.RateLogInput), Value: raw}); err != nil {
		return err
	}
	info := logplex.RateInfo{Name: logplex.RateLogInput, Value: *req.Value, Unit: "lines/s per app per node", Source: "cluster", Node: s.b.Cluster().Name()}
	if s.opts.Logs != nil {
		// The node applies the new value when it sees the write; report
		// what is in force once it has (a rate file may override it).
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			if cur := s.opts.Logs.InputRate(); cur.Value == *req.Value || cur.Source == "file" {
				info = cur
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

// logLinesInject emits lines on this node (admin only): for tests and
// diagnostics, before dynos produce output.
func (s *Server) logLinesInject(w http.ResponseWriter, r *http.Request) error {
	if err := requireAdmin(r); err != nil {
		return err
	}
	_, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	var req LogLinesRequest
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	logs, err := s.logs()
	if err != nil {
		return err
	}
	if req.Source == "" {
		req.Source = logplex.SourceApp
	}
	if req.Dyno == "" {
		req.Dyno = "test.1"
	}
	if err := (logplex.Filter{Source: req.Source, Dyno: req.Dyno}).Validate(); err != nil {
		return invalidParams("%s.", capitalize(err.Error()))
	}
	if len(req.Lines) > 10000 {
		return invalidParams("At most 10000 lines per request.")
	}
	for _, l := range req.Lines {
		logs.Emit(logplex.Line{AppID: a.ID, AppName: a.Name, Time: s.opts.Now(), Source: req.Source, Proc: req.Dyno, Text: l})
	}
	writeJSON(w, http.StatusOK, map[string]any{"emitted": len(req.Lines), "node": s.b.Cluster().Name()})
	return nil
}
