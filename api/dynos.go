package api

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/mux"

	"github.com/slipwayhq/slipway/fsm"
)

// Dyno is a dyno resource. Node, Zone, PendingReason, ExitStatus and Reason
// are Slipway extensions.
type Dyno struct {
	AttachURL     *string   `json:"attach_url"`
	Command       string    `json:"command"`
	CreatedAt     time.Time `json:"created_at"`
	ID            string    `json:"id"`
	Name          string    `json:"name"`
	Release       Release0  `json:"release"`
	App           Ref       `json:"app"`
	Size          string    `json:"size"`
	State         string    `json:"state"`
	Type          string    `json:"type"`
	UpdatedAt     time.Time `json:"updated_at"`
	Node          string    `json:"node,omitempty"`
	Zone          string    `json:"zone,omitempty"`
	PendingReason string    `json:"pending_reason,omitempty"`
	ExitStatus    *int      `json:"exit_status,omitempty"`
	Reason        string    `json:"reason,omitempty"`
}

// Release0 is a release reference with its version.
type Release0 struct {
	ID      string `json:"id"`
	Version int    `json:"version"`
}

// DynoCreateRequest is POST /apps/{app}/dynos (a one-off dyno).
type DynoCreateRequest struct {
	Command    string            `json:"command"`
	Attach     *bool             `json:"attach"`
	Env        map[string]string `json:"env"`
	ForceNoTTY *bool             `json:"force_no_tty"`
	Size       *string           `json:"size"`
	Type       *string           `json:"type"`
	TimeToLive *int              `json:"time_to_live"`
}

func renderDyno(app *fsm.App, d *fsm.Dyno) Dyno {
	return Dyno{Command: d.Command, CreatedAt: d.CreatedAt, ID: d.ID, Name: d.Name, Release: Release0{ID: d.ReleaseID, Version: d.Version},
		App: Ref{ID: app.ID, Name: app.Name}, Size: d.Size, State: d.State, Type: d.Type, UpdatedAt: d.StateAt,
		Node: d.Node, Zone: d.Zone, PendingReason: d.PendingReason, ExitStatus: d.ExitStatus, Reason: d.Reason}
}

// visible: a stopped dyno that is down is gone as far as users can tell.
func visible(d *fsm.Dyno) bool { return !(d.Stop && d.State == fsm.DynoDown) }

func (s *Server) dynoList(w http.ResponseWriter, r *http.Request) error {
	snap, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	out := []Dyno{}
	for _, d := range snap.Dynos(a.ID) {
		if visible(d) {
			out = append(out, renderDyno(a, d))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) dynoInfo(w http.ResponseWriter, r *http.Request) error {
	snap, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	d, ok := snap.Dyno(a.ID, mux.Vars(r)["dyno"])
	if !ok || !visible(d) {
		return notFound("dyno")
	}
	writeJSON(w, http.StatusOK, renderDyno(a, d))
	return nil
}

// restartDynos: DELETE /apps/{app}/dynos[/{dyno}] and DELETE
// /apps/{app}/formations/{type}: each selected dyno starts a new instance.
func (s *Server) restartDynos(w http.ResponseWriter, r *http.Request) error {
	snap, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	typ, name := mux.Vars(r)["type"], mux.Vars(r)["dyno"]
	ds, err := snap.SelectDynos(a.ID, typ, name)
	if err != nil {
		return err
	}
	inst := map[string]string{}
	for _, d := range ds {
		inst[d.ID] = uuid.NewString()
	}
	if _, err := s.submit(r, fsm.CmdDynoRestart, fsm.DynoRestart{AppID: a.ID, Type: typ, Dyno: name, Instances: inst}); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, map[string]any{})
	return nil
}

// stopDynos: POST /apps/{app}/dynos/{dyno}/actions/stop and
// /apps/{app}/formations/{type}/actions/stop.
func (s *Server) stopDynos(w http.ResponseWriter, r *http.Request) error {
	_, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	if _, err := s.submit(r, fsm.CmdDynoStop, fsm.DynoStop{AppID: a.ID, Type: mux.Vars(r)["type"], Dyno: mux.Vars(r)["dyno"]}); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, map[string]any{})
	return nil
}

// maxTTL is Heroku's cap on a one-off dyno's time_to_live.
const maxTTL = 86400

func (s *Server) dynoCreate(w http.ResponseWriter, r *http.Request) error {
	_, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	var req DynoCreateRequest
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	if req.Command == "" {
		return invalidParams("command can't be blank.")
	}
	if req.Type != nil && *req.Type != "run" && *req.Type != "" {
		return invalidParams("type must be run.")
	}
	size := fsm.DefaultDynoSize
	if req.Size != nil && *req.Size != "" {
		sz, ok := fsm.LookupDynoSize(*req.Size)
		if !ok {
			return invalidParams("No such size as %s.", *req.Size)
		}
		size = sz.Name
	}
	d := fsm.Dyno{AppID: a.ID, Command: req.Command, Size: size, Env: req.Env}
	if req.TimeToLive != nil {
		if *req.TimeToLive < 1 || *req.TimeToLive > maxTTL {
			return invalidParams("time_to_live must be between 1 and %d seconds.", maxTTL)
		}
		t := s.opts.Now().Add(time.Duration(*req.TimeToLive) * time.Second)
		d.ExpiresAt = &t
	}
	var attachURL *string
	if req.Attach != nil && *req.Attach {
		if s.opts.RendezvousAddr == "" {
			return apiErr(http.StatusServiceUnavailable, "unavailable", "This node does not serve attached one-off dynos.")
		}
		secret := make([]byte, 24)
		if _, err := rand.Read(secret); err != nil {
			return err
		}
		sec := hex.EncodeToString(secret)
		d.Attach, d.AttachSecret = true, HashToken(sec)
		u := "rendezvous://" + s.opts.RendezvousAddr + "/" + sec
		attachURL = &u
	}
	for attempt := 0; ; attempt++ {
		n, err := rand.Int(rand.Reader, big.NewInt(9000))
		if err != nil {
			return err
		}
		d.ID, d.Name = uuid.NewString(), fmt.Sprintf("run.%d", 1000+n.Int64())
		res, err := s.submit(r, fsm.CmdDynoRun, fsm.DynoRun{Dyno: d})
		if e, ok := fsm.AsError(err); ok && e.Code == fsm.CodeConflict && attempt < 5 {
			continue
		}
		if err != nil {
			return err
		}
		var out fsm.Dyno
		if err := res.Decode(&out); err != nil {
			return err
		}
		rd := renderDyno(a, &out)
		rd.AttachURL = attachURL
		writeJSON(w, http.StatusCreated, rd)
		return nil
	}
}

// ClusterDyno is an entry of GET /cluster/dynos: where a dyno runs, for
// operators.
type ClusterDyno struct {
	ID       string    `json:"id"`
	App      Ref       `json:"app"`
	Name     string    `json:"name"`
	Type     string    `json:"type"`
	State    string    `json:"state"`
	Node     string    `json:"node"`
	Zone     string    `json:"zone"`
	Addr     string    `json:"addr"`
	Port     int       `json:"port"`
	Instance string    `json:"instance"`
	Stop     bool      `json:"stop"`
	Crashes  int       `json:"crashes"`
	Release  Release0  `json:"release"`
	StateAt  time.Time `json:"state_at"`
}

func renderClusterDyno(snap *fsm.Snap, d *fsm.Dyno) ClusterDyno {
	app := Ref{ID: d.AppID}
	if a, ok := snap.App(d.AppID); ok {
		app.Name = a.Name
	}
	return ClusterDyno{ID: d.ID, App: app, Name: d.Name, Type: d.Type, State: d.State, Node: d.Node, Zone: d.Zone,
		Addr: d.Addr, Port: d.Port, Instance: d.Instance, Stop: d.Stop, Crashes: d.Crashes,
		Release: Release0{ID: d.ReleaseID, Version: d.Version}, StateAt: d.StateAt}
}

func (s *Server) clusterDynos(w http.ResponseWriter, r *http.Request) error {
	if err := requireAdmin(r); err != nil {
		return err
	}
	snap := s.b.Snap()
	out := []ClusterDyno{}
	for _, d := range snap.AllDynos() {
		out = append(out, renderClusterDyno(snap, d))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) clusterDyno(w http.ResponseWriter, r *http.Request) error {
	if err := requireAdmin(r); err != nil {
		return err
	}
	snap := s.b.Snap()
	d, ok := snap.DynoByID(mux.Vars(r)["id"])
	if !ok {
		return notFound("dyno")
	}
	writeJSON(w, http.StatusOK, renderClusterDyno(snap, d))
	return nil
}
