package api

import (
	"net/http"

	"github.com/google/uuid"
	"github.com/gorilla/mux"

	"github.com/slipwayhq/slipway/fsm"
)

func (s *Server) domainList(w http.ResponseWriter, r *http.Request) error {
	snap, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	ds := snap.Domains(a.ID)
	items := make([]pageItem, len(ds))
	for i, d := range ds {
		items[i] = pageItem{keys: map[string]string{"id": d.ID, "hostname": d.Hostname}, v: s.renderDomain(snap, a, d)}
	}
	return writePage(w, r, items, "hostname", "id")
}

func (s *Server) domainInfo(w http.ResponseWriter, r *http.Request) error {
	snap, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	d, ok := snap.Domain(a.ID, mux.Vars(r)["domain"])
	if !ok {
		return notFound("domain")
	}
	writeJSON(w, http.StatusOK, s.renderDomain(snap, a, d))
	return nil
}

func (s *Server) domainCreate(w http.ResponseWriter, r *http.Request) error {
	snap, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	var req DomainCreateRequest
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	h := fsm.NormalizeHostname(req.Hostname)
	if e := fsm.ValidHostname(h); e != nil {
		return e
	}
	if req.SNIEndpoint != nil && *req.SNIEndpoint != "" {
		// heroku domains:add names the app's SNI endpoint when it has one;
		// the routers pick certificates by SNI, so it only has to exist.
		if _, ok := snap.Cert(a.ID, *req.SNIEndpoint); !ok {
			return notFound("SNI endpoint")
		}
	}
	d := fsm.Domain{ID: uuid.NewString(), AppID: a.ID, Hostname: h, CName: DefaultHostname(a.Name, s.opts.Domain)}
	res, err := s.submit(r, fsm.CmdDomainCreate, fsm.DomainCreate{Domain: d})
	if err != nil {
		return err
	}
	var out fsm.Domain
	if err := res.Decode(&out); err != nil {
		return err
	}
	s.event(r, a, "Add %s domain", out.Hostname)
	writeJSON(w, http.StatusCreated, s.renderDomain(snap, a, &out))
	return nil
}

func (s *Server) domainDelete(w http.ResponseWriter, r *http.Request) error {
	snap, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	d, ok := snap.Domain(a.ID, mux.Vars(r)["domain"])
	if !ok {
		return notFound("domain")
	}
	if _, err := s.submit(r, fsm.CmdDomainDelete, fsm.DomainDelete{AppID: a.ID, DomainID: d.ID}); err != nil {
		return err
	}
	s.event(r, a, "Remove %s domain", d.Hostname)
	writeJSON(w, http.StatusOK, s.renderDomain(snap, a, d))
	return nil
}
