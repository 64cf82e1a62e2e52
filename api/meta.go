package api

import (
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"github.com/slipwayhq/slipway/fsm"
)

func (s *Server) accountInfo(w http.ResponseWriter, r *http.Request) error {
	u := currentUser(r)
	out := Account{CreatedAt: u.CreatedAt, Email: u.Email, ID: u.ID, UpdatedAt: u.UpdatedAt, Verified: true, Admin: u.Admin}
	if u.Name != "" {
		n := u.Name
		out.Name = &n
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) region(name string) Region {
	rg := Region{Country: "", CreatedAt: time.Time{}, Description: "Slipway region " + name, ID: catalogID("region", name),
		Locale: name, Name: name, PrivateCapable: false}
	rg.Provider.Name = "slipway"
	rg.Provider.Region = name
	return rg
}

func (s *Server) regionList(w http.ResponseWriter, r *http.Request) error {
	out := []Region{}
	for _, name := range s.b.Cluster().Regions() {
		out = append(out, s.region(name))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) regionInfo(w http.ResponseWriter, r *http.Request) error {
	key := mux.Vars(r)["region"]
	for _, name := range s.b.Cluster().Regions() {
		if rg := s.region(name); rg.Name == key || rg.ID == key {
			writeJSON(w, http.StatusOK, rg)
			return nil
		}
	}
	return notFound("region")
}

func renderStack(st fsm.Stack) Stack {
	return Stack{Default: st.Name == fsm.DefaultStack, ID: catalogID("stack", st.Name), Name: st.Name, State: st.State}
}

func (s *Server) stackList(w http.ResponseWriter, r *http.Request) error {
	out := []Stack{}
	for _, st := range fsm.Stacks() {
		out = append(out, renderStack(st))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) stackInfo(w http.ResponseWriter, r *http.Request) error {
	key := mux.Vars(r)["stack"]
	for _, st := range fsm.Stacks() {
		if rs := renderStack(st); rs.Name == key || rs.ID == key {
			writeJSON(w, http.StatusOK, rs)
			return nil
		}
	}
	return notFound("stack")
}

// Account features: Slipway has none (all features are per app), so the
// list is empty and every lookup is not found, which is what makes `heroku
// labs:enable NAME -a APP` fall through to the app feature.
func (s *Server) accountFeatureList(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, []AppFeature{})
	return nil
}

func (s *Server) accountFeatureInfo(w http.ResponseWriter, r *http.Request) error {
	return notFound("feature")
}

// addonList: Slipway has no add-on marketplace; an app's add-ons are always
// an empty list (`heroku apps:info` requires the endpoint).
func (s *Server) addonList(w http.ResponseWriter, r *http.Request) error {
	if _, _, err := s.lookupApp(r); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, []any{})
	return nil
}
