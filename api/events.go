package api

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/slipwayhq/slipway/fsm"
	"github.com/slipwayhq/slipway/logplex"
)

// Platform events: the app[api] lines Heroku writes to an app's log when
// its config, releases, formation or settings change ("Set A config vars by
// user x", "Release v5 created by user x", "Scaled to web@2:Basic by user
// x"). A line is delivered once, by the node where it was born, so the API
// node that handled the write emits it, after the write succeeded.

// event emits an app[api] line for app ("... by user EMAIL").
func (s *Server) event(r *http.Request, app *fsm.App, format string, args ...any) {
	if s.opts.Events == nil || app == nil {
		return
	}
	text := fmt.Sprintf(format, args...)
	if u := currentUser(r); u != nil {
		text += " by user " + u.Email
	}
	s.opts.Events.Emit(logplex.Line{AppID: app.ID, AppName: app.Name, Time: s.opts.Now(),
		Source: logplex.SourceApp, Proc: "api", Text: text})
}

// releaseEvents emits a release's two lines: what it does ("Set A config
// vars", "Rollback to v3", "Deploy abc1234"), then "Release vN created".
func (s *Server) releaseEvents(r *http.Request, app *fsm.App, rel *fsm.Release) {
	if rel == nil {
		return
	}
	if rel.Description != "" {
		s.event(r, app, "%s", rel.Description)
	}
	s.event(r, app, "Release v%d created", rel.Version)
}

// formationEvent emits "Scaled to web@2:Basic worker@1:Basic".
func (s *Server) formationEvent(r *http.Request, app *fsm.App, fs []*fsm.Formation) {
	if len(fs) == 0 {
		return
	}
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = fmt.Sprintf("%s@%d:%s", f.Type, f.Quantity, f.Size)
	}
	s.event(r, app, "Scaled to %s", strings.Join(parts, " "))
}

// appCreateEvents emits a new app's first lines: its initial release.
func (s *Server) appCreateEvents(r *http.Request, snap *fsm.Snap, a *fsm.App) {
	if s.opts.Events == nil {
		return
	}
	s.releaseEvents(r, a, snap.CurrentRelease(a.ID))
}

// appUpdateEvents emits a rename or a maintenance change.
func (s *Server) appUpdateEvents(r *http.Request, before, after *fsm.App) {
	if before.Name != after.Name {
		s.event(r, after, "Rename from %s to %s", before.Name, after.Name)
	}
	if before.Maintenance != after.Maintenance {
		state := "off"
		if after.Maintenance {
			state = "on"
		}
		s.event(r, after, "Maintenance mode %s", state)
	}
}
