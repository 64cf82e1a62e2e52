package api

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"net/http"
	"strings"

	"github.com/google/uuid"
	"github.com/gorilla/mux"

	"github.com/slipwayhq/slipway/fsm"
)

// lookupApp resolves {app} (id or name) in the local state. A miss is
// confirmed with a linearizable read before answering 404, so an app
// created through another node a moment ago is found here too.
func (s *Server) lookupApp(r *http.Request) (*fsm.Snap, *fsm.App, error) {
	key := mux.Vars(r)["app"]
	snap := s.b.Snap()
	a, ok := snap.App(key)
	if !ok {
		if err := s.b.Linearize(r.Context()); err != nil {
			return nil, nil, notFound("app")
		}
		snap = s.b.Snap()
		if a, ok = snap.App(key); !ok {
			return nil, nil, notFound("app")
		}
	}
	return snap, a, nil
}

func (s *Server) appList(w http.ResponseWriter, r *http.Request) error {
	snap := s.b.Snap()
	apps := snap.Apps()
	items := make([]pageItem, len(apps))
	for i, a := range apps {
		items[i] = pageItem{keys: map[string]string{"id": a.ID, "name": a.Name}, v: s.renderApp(snap, a)}
	}
	return writePage(w, r, items, "id", "name")
}

// appListOwned is GET /users/{user}/apps ("~" is the caller), what `heroku
// apps` asks for. Every user sees every app for now (no per-app access
// control yet), so this lists the same apps as GET /apps.
func (s *Server) appListOwned(w http.ResponseWriter, r *http.Request) error {
	key := mux.Vars(r)["user"]
	if u := currentUser(r); key != "~" && key != u.ID && key != u.Email {
		if _, ok := s.b.Snap().User(key); !ok {
			return notFound("user")
		}
	}
	return s.appList(w, r)
}

func (s *Server) appInfo(w http.ResponseWriter, r *http.Request) error {
	snap, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.renderApp(snap, a))
	return nil
}

func (s *Server) appCreate(w http.ResponseWriter, r *http.Request) error {
	var req AppCreateRequest
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	region := s.b.Cluster().Region()
	if req.Region != nil && *req.Region != "" && *req.Region != region {
		known := false
		for _, rg := range s.b.Cluster().Regions() {
			known = known || rg == *req.Region
		}
		if !known {
			return notFound("region")
		}
		return invalidParams("Apps can only be created in this node's region (%s) for now; send the request to a node of region %s.", region, *req.Region)
	}
	stack := fsm.DefaultStack
	if req.Stack != nil && *req.Stack != "" {
		if _, ok := fsm.LookupStack(*req.Stack); !ok {
			return notFound("stack")
		}
		stack = *req.Stack
	}
	name, generated := "", true
	if req.Name != nil && *req.Name != "" {
		name, generated = *req.Name, false
		if e := fsm.ValidAppName(name); e != nil {
			return e
		}
	}
	u := currentUser(r)
	for attempt := 0; ; attempt++ {
		if generated {
			name = generateName()
		}
		payload := fsm.AppCreate{
			App:       fsm.App{ID: uuid.NewString(), Name: name, Region: region, Stack: stack, OwnerID: u.ID},
			ReleaseID: uuid.NewString(), DefaultDomainID: uuid.NewString(), DefaultHostname: DefaultHostname(name, s.opts.Domain),
		}
		res, err := s.submit(r, fsm.CmdAppCreate, payload)
		if e, ok := fsm.AsError(err); ok && generated && attempt < 5 && strings.Contains(e.Message, "already taken") {
			continue
		}
		if err != nil {
			return err
		}
		var a fsm.App
		if err := res.Decode(&a); err != nil {
			return err
		}
		snap := s.b.Snap()
		if cur, ok := snap.App(a.ID); ok {
			a = *cur
		}
		s.appCreateEvents(r, snap, &a)
		writeJSON(w, http.StatusCreated, s.renderApp(snap, &a))
		return nil
	}
}

func (s *Server) appUpdate(w http.ResponseWriter, r *http.Request) error {
	_, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	var req AppUpdateRequest
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	p := fsm.AppUpdate{AppID: a.ID, Maintenance: req.Maintenance, BuildStack: req.BuildStack}
	if req.Name != nil {
		if e := fsm.ValidAppName(*req.Name); e != nil {
			return e
		}
		p.Name = req.Name
		p.DefaultHostname = DefaultHostname(*req.Name, s.opts.Domain)
	}
	if req.BuildStack != nil {
		if _, ok := fsm.LookupStack(*req.BuildStack); !ok {
			return notFound("stack")
		}
	}
	res, err := s.submit(r, fsm.CmdAppUpdate, p)
	if err != nil {
		return err
	}
	var out fsm.App
	if err := res.Decode(&out); err != nil {
		return err
	}
	s.appUpdateEvents(r, a, &out)
	writeJSON(w, http.StatusOK, s.renderApp(s.b.Snap(), &out))
	return nil
}

func (s *Server) appDelete(w http.ResponseWriter, r *http.Request) error {
	snap, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	rendered := s.renderApp(snap, a)
	if _, err := s.submit(r, fsm.CmdAppDelete, fsm.AppDelete{AppID: a.ID}); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rendered)
	return nil
}

// generateName makes a Heroku-style name: adjective-noun-12345.
func generateName() string {
	adjectives := []string{"ancient", "autumn", "billowing", "blooming", "bold", "brave", "calm", "crisp", "damp",
		"dry", "fathomless", "floating", "fragrant", "frosty", "gentle", "hidden", "icy", "limitless", "little",
		"lively", "morning", "murmuring", "nameless", "obscure", "polished", "proud", "quiet", "rough", "secret",
		"shrouded", "silent", "snowy", "sparkling", "still", "sweltering", "tranquil", "twilight", "wandering", "young"}
	nouns := []string{"bird", "breeze", "brook", "cliffs", "cloud", "dawn", "dew", "dream", "dusk", "falls", "field",
		"fire", "forest", "frog", "glade", "harbor", "haze", "hill", "lake", "leaf", "meadow", "moon", "mountain",
		"ocean", "peak", "pine", "plains", "reef", "river", "sea", "shadow", "shore", "sky", "smoke", "snow",
		"sound", "spire", "star", "stream", "sun", "thunder", "tide", "tree", "valley", "wave", "wildflower", "wind"}
	pick := func(n int) int {
		v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
		if err != nil {
			return 0
		}
		return int(v.Int64())
	}
	return fmt.Sprintf("%s-%s-%05d", adjectives[pick(len(adjectives))], nouns[pick(len(nouns))], pick(100000))
}
