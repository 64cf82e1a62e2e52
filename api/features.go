package api

import (
	"net/http"

	"github.com/gorilla/mux"

	"github.com/slipwayhq/slipway/fsm"
)

func (s *Server) featureList(w http.ResponseWriter, r *http.Request) error {
	snap, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	out := []AppFeature{}
	for _, f := range snap.Features(a.ID) {
		out = append(out, renderFeature(f, *a))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) featureInfo(w http.ResponseWriter, r *http.Request) error {
	snap, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	f, ok := snap.Feature(a.ID, mux.Vars(r)["feature"])
	if !ok {
		return notFound("feature")
	}
	writeJSON(w, http.StatusOK, renderFeature(f, *a))
	return nil
}

type featureUpdateRequest struct {
	Enabled *bool `json:"enabled"`
}

func (s *Server) featureUpdate(w http.ResponseWriter, r *http.Request) error {
	snap, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	f, ok := snap.Feature(a.ID, mux.Vars(r)["feature"])
	if !ok {
		return notFound("feature")
	}
	var req featureUpdateRequest
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	if req.Enabled == nil {
		return invalidParams("enabled can't be blank.")
	}
	if _, err := s.submit(r, fsm.CmdFeatureSet, fsm.FeatureSet{AppID: a.ID, Name: f.Name, Enabled: *req.Enabled}); err != nil {
		return err
	}
	f, _ = s.b.Snap().Feature(a.ID, f.Name)
	writeJSON(w, http.StatusOK, renderFeature(f, *a))
	return nil
}
