package api

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"

	"github.com/google/uuid"
	"github.com/gorilla/mux"

	"github.com/slipwayhq/slipway/fsm"
)

func (s *Server) configInfo(w http.ResponseWriter, r *http.Request) error {
	snap, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	writeConfig(w, snap.Config(a.ID))
	return nil
}

func writeConfig(w http.ResponseWriter, vars map[string]string) {
	if vars == nil {
		vars = map[string]string{}
	}
	writeJSON(w, http.StatusOK, vars)
}

func (s *Server) configUpdate(w http.ResponseWriter, r *http.Request) error {
	_, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	var raw map[string]json.RawMessage
	if err := s.decode(w, r, &raw); err != nil {
		return err
	}
	changes := make(map[string]*string, len(raw))
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := raw[k]
		if len(v) == 0 || strings.TrimSpace(string(v)) == "null" {
			changes[k] = nil
			continue
		}
		var str string
		if err := json.Unmarshal(v, &str); err != nil {
			return invalidParams("Config var %s must be a string or null, not %s.", k, v)
		}
		changes[k] = &str
	}
	if e := fsm.ValidConfigChanges(changes); e != nil {
		return e
	}
	res, err := s.submit(r, fsm.CmdConfigUpdate, fsm.ConfigUpdate{AppID: a.ID, Changes: changes, ReleaseID: uuid.NewString(), ReleaseDynoID: uuid.NewString()})
	if err != nil {
		return err
	}
	var out fsm.ConfigUpdateResult
	if err := res.Decode(&out); err != nil {
		return err
	}
	s.releaseEvents(r, a, out.Release)
	writeConfig(w, out.Vars)
	return nil
}

func (s *Server) lookupRelease(r *http.Request) (*fsm.Snap, *fsm.App, *fsm.Release, error) {
	snap, a, err := s.lookupApp(r)
	if err != nil {
		return nil, nil, nil, err
	}
	rel, ok := snap.Release(a.ID, mux.Vars(r)["release"])
	if !ok {
		return nil, nil, nil, notFound("release")
	}
	return snap, a, rel, nil
}

func (s *Server) configForRelease(w http.ResponseWriter, r *http.Request) error {
	_, _, rel, err := s.lookupRelease(r)
	if err != nil {
		return err
	}
	writeConfig(w, rel.Config)
	return nil
}

func (s *Server) releaseList(w http.ResponseWriter, r *http.Request) error {
	snap, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	cur := currentID(snap, a.ID)
	rels := snap.Releases(a.ID)
	items := make([]pageItem, len(rels))
	for i, rel := range rels {
		items[i] = pageItem{keys: map[string]string{"id": rel.ID}, num: map[string]int{"version": rel.Version},
			v: s.renderRelease(snap, a, rel, cur)}
	}
	return writePage(w, r, items, "version", "id")
}

func (s *Server) releaseInfo(w http.ResponseWriter, r *http.Request) error {
	snap, a, rel, err := s.lookupRelease(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.renderRelease(snap, a, rel, currentID(snap, a.ID)))
	return nil
}

// releaseCreate rolls back ({"release": id or version}) or releases a slug
// ({"slug": id}).
func (s *Server) releaseCreate(w http.ResponseWriter, r *http.Request) error {
	snap, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	var req ReleaseCreateRequest
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	var res *fsm.Result
	switch {
	case req.Release != nil && req.Slug != nil:
		return invalidParams("Send either release (to roll back) or slug (to release a slug), not both.")
	case req.Release != nil:
		target, ok := snap.Release(a.ID, *req.Release)
		if !ok {
			return notFound("release")
		}
		res, err = s.submit(r, fsm.CmdReleaseRollback, fsm.ReleaseRollback{AppID: a.ID, TargetID: target.ID, ReleaseID: uuid.NewString(), ReleaseDynoID: uuid.NewString()})
	case req.Slug != nil:
		desc := ""
		if req.Description != nil {
			desc = *req.Description
			if len(desc) > fsm.MaxDescriptionLen {
				return invalidParams("Description is too long (maximum is %d characters).", fsm.MaxDescriptionLen)
			}
		}
		res, err = s.submit(r, fsm.CmdReleaseCreate, fsm.ReleaseCreate{AppID: a.ID, ReleaseID: uuid.NewString(), SlugID: *req.Slug, Description: desc, ReleaseDynoID: uuid.NewString()})
	default:
		return invalidParams("slug can't be blank (or send release to roll back).")
	}
	if err != nil {
		return err
	}
	var rel fsm.Release
	if err := res.Decode(&rel); err != nil {
		return err
	}
	s.releaseEvents(r, a, &rel)
	snap = s.b.Snap()
	writeJSON(w, http.StatusCreated, s.renderRelease(snap, a, &rel, currentID(snap, a.ID)))
	return nil
}
