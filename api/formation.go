package api

import (
	"net/http"

	"github.com/gorilla/mux"

	"github.com/slipwayhq/slipway/fsm"
)

func (s *Server) formationList(w http.ResponseWriter, r *http.Request) error {
	snap, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	out := []Formation{}
	for _, f := range snap.Formation(a.ID) {
		out = append(out, renderFormation(a, f))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) formationInfo(w http.ResponseWriter, r *http.Request) error {
	snap, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	f, ok := snap.FormationType(a.ID, mux.Vars(r)["type"])
	if !ok {
		return apiErr(http.StatusNotFound, fsm.CodeNotFound, "Couldn't find that process type (%s).", mux.Vars(r)["type"])
	}
	writeJSON(w, http.StatusOK, renderFormation(a, f))
	return nil
}

func toChange(u FormationUpdate) (fsm.FormationChange, error) {
	c := fsm.FormationChange{Type: u.Type, Size: u.Size}
	if u.Quantity != nil {
		n := u.Quantity.N
		if u.Quantity.Relative {
			c.Delta = &n
		} else {
			c.Quantity = &n
		}
	}
	if u.DynoSize != nil && u.DynoSize.Name != "" {
		if u.Size != nil && *u.Size != u.DynoSize.Name {
			return c, invalidParams("size and dyno_size.name disagree for %s.", u.Type)
		}
		name := u.DynoSize.Name
		c.Size = &name
	}
	if c.Type == "" {
		return c, invalidParams("type can't be blank.")
	}
	return c, nil
}

func (s *Server) applyFormation(w http.ResponseWriter, r *http.Request, a *fsm.App, updates []FormationUpdate, single bool) error {
	var changes []fsm.FormationChange
	for _, u := range updates {
		c, err := toChange(u)
		if err != nil {
			return err
		}
		changes = append(changes, c)
	}
	res, err := s.submit(r, fsm.CmdFormationUpdate, fsm.FormationUpdate{AppID: a.ID, Updates: changes})
	if err != nil {
		return err
	}
	var out []*fsm.Formation
	if err := res.Decode(&out); err != nil {
		return err
	}
	s.formationEvent(r, a, out)
	if single && len(out) == 1 {
		writeJSON(w, http.StatusOK, renderFormation(a, out[0]))
		return nil
	}
	rendered := make([]Formation, len(out))
	for i, f := range out {
		rendered[i] = renderFormation(a, f)
	}
	writeJSON(w, http.StatusOK, rendered)
	return nil
}

func (s *Server) formationBatch(w http.ResponseWriter, r *http.Request) error {
	_, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	var req FormationBatchRequest
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	if len(req.Updates) == 0 {
		return invalidParams("updates can't be blank.")
	}
	return s.applyFormation(w, r, a, req.Updates, false)
}

func (s *Server) formationUpdate(w http.ResponseWriter, r *http.Request) error {
	_, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	var u FormationUpdate
	if err := s.decode(w, r, &u); err != nil {
		return err
	}
	t := mux.Vars(r)["type"]
	if u.Type != "" && u.Type != t {
		return invalidParams("type %q in the body does not match %q in the URL.", u.Type, t)
	}
	u.Type = t
	return s.applyFormation(w, r, a, []FormationUpdate{u}, true)
}
