package fsm

import (
	"maps"
	"sort"
	"strings"

	"github.com/google/uuid"
	"github.com/hashicorp/go-memdb"
)

func txFirst[T any](tx *memdb.Txn, table, index string, args ...any) (*T, bool) {
	raw, err := tx.First(table, index, args...)
	if err != nil || raw == nil {
		return nil, false
	}
	return raw.(*T), true
}

func txAll[T any](tx *memdb.Txn, table, index string, args ...any) []*T {
	it, err := tx.Get(table, index, args...)
	if err != nil {
		return nil
	}
	var out []*T
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*T))
	}
	return out
}

func insert(tx *memdb.Txn, table string, obj any) *Error {
	if err := tx.Insert(table, obj); err != nil {
		return Errorf("internal", "storing %s: %v", table, err)
	}
	return nil
}

func lookupApp(tx *memdb.Txn, id string) (*App, *Error) {
	a, ok := txFirst[App](tx, tApps, indexID, id)
	if !ok {
		return nil, notFound("app")
	}
	return a, nil
}

func requireID(what, id string) *Error {
	if _, err := uuid.Parse(id); err != nil {
		return Errorf(CodeBadRequest, "%s id %q is not a UUID", what, id)
	}
	return nil
}

func applyAppCreate(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[AppCreate](c)
	if e != nil {
		return nil, e
	}
	app := p.App
	if e := requireID("app", app.ID); e != nil {
		return nil, e
	}
	if e := requireID("release", p.ReleaseID); e != nil {
		return nil, e
	}
	if e := ValidAppName(app.Name); e != nil {
		return nil, e
	}
	if _, ok := txFirst[App](tx, tApps, indexName, app.Name); ok {
		return nil, invalid("Name is already taken")
	}
	if _, ok := txFirst[App](tx, tApps, indexID, app.ID); ok {
		return nil, Errorf(CodeConflict, "An app with id %s already exists.", app.ID)
	}
	if app.Region == "" {
		return nil, invalid("Region can't be blank.")
	}
	if app.Stack == "" {
		app.Stack = DefaultStack
	}
	if _, ok := LookupStack(app.Stack); !ok {
		return nil, notFound("stack")
	}
	if app.BuildStack == "" {
		app.BuildStack = app.Stack
	}
	app.CreatedAt, app.UpdatedAt = c.At, c.At
	at := c.At
	app.ReleasedAt = &at
	if app.Epoch == 0 {
		app.Epoch = 1
	}
	if e := insert(tx, tApps, &app); e != nil {
		return nil, e
	}
	if e := insert(tx, tConfig, &ConfigVars{AppID: app.ID, Vars: map[string]string{}, UpdatedAt: c.At}); e != nil {
		return nil, e
	}
	rel := &Release{ID: p.ReleaseID, AppID: app.ID, Version: 1, Description: "Initial release",
		Config: map[string]string{}, UserID: c.By, Status: ReleaseSucceeded, CreatedAt: c.At, UpdatedAt: c.At}
	if e := insert(tx, tReleases, rel); e != nil {
		return nil, e
	}
	if p.DefaultHostname != "" {
		if e := requireID("domain", p.DefaultDomainID); e != nil {
			return nil, e
		}
		h := NormalizeHostname(p.DefaultHostname)
		if e := ValidHostname(h); e != nil {
			return nil, e
		}
		if _, ok := txFirst[Domain](tx, tDomains, indexName, h); ok {
			return nil, invalid("Name is already taken (the domain %s is in use by another app)", h)
		}
		d := &Domain{ID: p.DefaultDomainID, AppID: app.ID, Hostname: h, Kind: DomainKindHeroku,
			Status: "succeeded", CreatedAt: c.At, UpdatedAt: c.At}
		if e := insert(tx, tDomains, d); e != nil {
			return nil, e
		}
	}
	return &app, nil
}

func applyAppUpdate(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[AppUpdate](c)
	if e != nil {
		return nil, e
	}
	old, e := lookupApp(tx, p.AppID)
	if e != nil {
		return nil, e
	}
	app := *old
	if p.Name != nil && *p.Name != app.Name {
		if e := ValidAppName(*p.Name); e != nil {
			return nil, e
		}
		if _, ok := txFirst[App](tx, tApps, indexName, *p.Name); ok {
			return nil, invalid("Name is already taken")
		}
		app.Name = *p.Name
		if p.DefaultHostname != "" {
			if e := renameDefaultDomain(tx, &app, NormalizeHostname(p.DefaultHostname), c); e != nil {
				return nil, e
			}
		}
	}
	if p.Maintenance != nil {
		app.Maintenance = *p.Maintenance
	}
	if p.BuildStack != nil {
		if _, ok := LookupStack(*p.BuildStack); !ok {
			return nil, notFound("stack")
		}
		app.BuildStack = *p.BuildStack
	}
	app.UpdatedAt = c.At
	if e := insert(tx, tApps, &app); e != nil {
		return nil, e
	}
	return &app, nil
}

func renameDefaultDomain(tx *memdb.Txn, app *App, h string, c *Command) *Error {
	if e := ValidHostname(h); e != nil {
		return e
	}
	if other, ok := txFirst[Domain](tx, tDomains, indexName, h); ok && other.AppID != app.ID {
		return invalid("Name is already taken (the domain %s is in use by another app)", h)
	}
	for _, d := range txAll[Domain](tx, tDomains, indexApp, app.ID) {
		if d.Kind != DomainKindHeroku {
			continue
		}
		nd := *d
		nd.Hostname, nd.UpdatedAt = h, c.At
		if e := insert(tx, tDomains, &nd); e != nil {
			return e
		}
	}
	return nil
}

// appTables are the tables whose records belong to an app (index "app").
// Deleting an app's dynos makes every supervisor stop its processes.
func appTables() []string {
	return []string{tReleases, tSlugs, tFormation, tDomains, tFeatures, tDynos, tDrains, tCerts, tBuilds, tRepos}
}

func applyAppDelete(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[AppDelete](c)
	if e != nil {
		return nil, e
	}
	app, e := lookupApp(tx, p.AppID)
	if e != nil {
		return nil, e
	}
	for _, t := range appTables() {
		if _, err := tx.DeleteAll(t, indexApp, app.ID); err != nil {
			return nil, Errorf("internal", "deleting %s: %v", t, err)
		}
	}
	if _, err := tx.DeleteAll(tConfig, indexID, app.ID); err != nil {
		return nil, Errorf("internal", "deleting config: %v", err)
	}
	if err := tx.Delete(tApps, app); err != nil {
		return nil, Errorf("internal", "deleting app: %v", err)
	}
	return app, nil
}

// ConfigUpdateResult is the value of a config.update command.
type ConfigUpdateResult struct {
	Vars    map[string]string `json:"vars"`
	Release *Release          `json:"release,omitempty"`
}

func applyConfigUpdate(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[ConfigUpdate](c)
	if e != nil {
		return nil, e
	}
	app, e := lookupApp(tx, p.AppID)
	if e != nil {
		return nil, e
	}
	if e := ValidConfigChanges(p.Changes); e != nil {
		return nil, e
	}
	cur := map[string]string{}
	if cv, ok := txFirst[ConfigVars](tx, tConfig, indexID, app.ID); ok {
		cur = cv.Vars
	}
	if len(p.Changes) == 0 {
		return &ConfigUpdateResult{Vars: cur}, nil
	}
	if e := requireID("release", p.ReleaseID); e != nil {
		return nil, e
	}
	next := maps.Clone(cur)
	if next == nil {
		next = map[string]string{}
	}
	var set, removed []string
	for k, v := range p.Changes {
		if v == nil {
			delete(next, k)
			removed = append(removed, k)
		} else {
			next[k] = *v
			set = append(set, k)
		}
	}
	if n := ConfigSize(next); n > MaxConfigTotalLen {
		return nil, invalid("Config vars are too large: %d bytes of names and values (the limit is %d).", n, MaxConfigTotalLen)
	}
	if e := insert(tx, tConfig, &ConfigVars{AppID: app.ID, Vars: next, UpdatedAt: c.At}); e != nil {
		return nil, e
	}
	slugID := ""
	if cr := txCurrentRelease(tx, app.ID); cr != nil {
		slugID = cr.SlugID
	}
	rel, e := releaseWithPhase(tx, app, p.ReleaseID, slugID, next, configDescription(set, removed), p.ReleaseDynoID, c)
	if e != nil {
		return nil, e
	}
	return &ConfigUpdateResult{Vars: next, Release: rel}, nil
}

func configDescription(set, removed []string) string {
	sort.Strings(set)
	sort.Strings(removed)
	var parts []string
	if len(set) > 0 {
		parts = append(parts, "Set "+strings.Join(set, ", "))
	}
	if len(removed) > 0 {
		verb := "Remove "
		if len(set) > 0 {
			verb = "remove "
		}
		parts = append(parts, verb+strings.Join(removed, ", "))
	}
	return truncate(strings.Join(parts, " and ")+" config vars", MaxDescriptionLen)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}
