package fsm

import (
	"fmt"
	"maps"
	"sort"

	"github.com/google/uuid"
	"github.com/hashicorp/go-memdb"
)

func txLatestRelease(tx *memdb.Txn, appID string) *Release {
	it, err := tx.GetReverse(tReleases, indexAppKey+"_prefix", appID)
	if err != nil {
		return nil
	}
	if raw := it.Next(); raw != nil {
		return raw.(*Release)
	}
	return nil
}

func txCurrentRelease(tx *memdb.Txn, appID string) *Release {
	it, err := tx.GetReverse(tReleases, indexAppKey+"_prefix", appID)
	if err != nil {
		return nil
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if r := raw.(*Release); r.Status == ReleaseSucceeded {
			return r
		}
	}
	return nil
}

// newRelease records the next version of an app.
func newRelease(tx *memdb.Txn, app *App, id, slugID string, config map[string]string, desc, status string, c *Command) (*Release, *Error) {
	if _, ok := txFirst[Release](tx, tReleases, indexID, id); ok {
		return nil, Errorf(CodeConflict, "A release with id %s already exists.", id)
	}
	version := 1
	if l := txLatestRelease(tx, app.ID); l != nil {
		version = l.Version + 1
	}
	rel := &Release{ID: id, AppID: app.ID, Version: version, Description: desc, SlugID: slugID,
		Config: maps.Clone(config), UserID: c.By, Status: status, CreatedAt: c.At, UpdatedAt: c.At}
	if rel.Config == nil {
		rel.Config = map[string]string{}
	}
	if e := insert(tx, tReleases, rel); e != nil {
		return nil, e
	}
	if status == ReleaseSucceeded {
		na := *app
		at := c.At
		na.ReleasedAt, na.UpdatedAt = &at, c.At
		if e := insert(tx, tApps, &na); e != nil {
			return nil, e
		}
		if e := syncFormation(tx, app.ID, slugID, c); e != nil {
			return nil, e
		}
	}
	return rel, nil
}

// releaseWithPhase records a new release of slugID. When the slug has a
// `release` process type and the proposer named the dyno to run it
// (releaseDynoID), the release starts pending and a release-phase one-off
// dyno decides it (phaseDynoEnded): it becomes current only if that command
// succeeds — for every kind of release, as Heroku's release phase: deploys,
// config changes, rollbacks and releases of uploaded slugs. Without a
// release type (or a dyno id, from an older proposer) it succeeds at once.
func releaseWithPhase(tx *memdb.Txn, app *App, id, slugID string, config map[string]string, desc, releaseDynoID string, c *Command) (*Release, *Error) {
	releaseCmd := ""
	if slugID != "" {
		if sl, ok := txFirst[Slug](tx, tSlugs, indexID, slugID); ok {
			releaseCmd = sl.ProcessTypes[DynoTypeRelease]
		}
	}
	if releaseCmd == "" || releaseDynoID == "" {
		return newRelease(tx, app, id, slugID, config, desc, ReleaseSucceeded, c)
	}
	if e := requireID("release dyno", releaseDynoID); e != nil {
		return nil, e
	}
	if _, ok := getDyno(tx, releaseDynoID); ok {
		return nil, Errorf(CodeConflict, "A dyno with id %s already exists.", releaseDynoID)
	}
	rel, e := newRelease(tx, app, id, slugID, config, desc, ReleasePending, c)
	if e != nil {
		return nil, e
	}
	exp := c.At.Add(ReleasePhaseTimeout)
	size := DefaultDynoSize
	if f, ok := txFirst[Formation](tx, tFormation, indexAppKey, app.ID, "web"); ok {
		size = f.Size
	}
	d := &Dyno{ID: releaseDynoID, AppID: app.ID, Name: fmt.Sprintf("release.%d", rel.Version), Type: DynoTypeRelease,
		Command: releaseCmd, Size: size, ReleaseID: rel.ID, Version: rel.Version, OneOff: true, ExpiresAt: &exp,
		State: DynoStarting, CreatedAt: c.At, UpdatedAt: c.At, StateAt: c.At}
	if e := putDyno(tx, d); e != nil {
		return nil, e
	}
	return rel, nil
}

// FormationID is the stable id of an app's formation entry for a type.
func FormationID(appID, typ string) string {
	return uuid.NewSHA1(uuid.MustParse(appID), []byte("formation/"+typ)).String()
}

// syncFormation makes the formation match a slug's process types: each type
// gets an entry (web starts at 1 dyno the first time it appears, others at
// 0), commands follow the slug, and types the slug no longer has go away.
func syncFormation(tx *memdb.Txn, appID, slugID string, c *Command) *Error {
	if slugID == "" {
		return nil
	}
	slug, ok := txFirst[Slug](tx, tSlugs, indexID, slugID)
	if !ok {
		return notFound("slug")
	}
	existing := map[string]*Formation{}
	for _, f := range txAll[Formation](tx, tFormation, indexApp, appID) {
		existing[f.Type] = f
	}
	types := make([]string, 0, len(slug.ProcessTypes))
	for t := range slug.ProcessTypes {
		types = append(types, t)
	}
	sort.Strings(types)
	for _, t := range types {
		cmd := slug.ProcessTypes[t]
		if f, ok := existing[t]; ok {
			delete(existing, t)
			if f.Command == cmd {
				continue
			}
			nf := *f
			nf.Command, nf.UpdatedAt = cmd, c.At
			if e := insert(tx, tFormation, &nf); e != nil {
				return e
			}
			continue
		}
		if t == "release" { // reserved for release phase, never scaled
			continue
		}
		qty := 0
		if t == "web" {
			qty = 1
		}
		nf := &Formation{ID: FormationID(appID, t), AppID: appID, Type: t, Quantity: qty,
			Size: DefaultDynoSize, Command: cmd, CreatedAt: c.At, UpdatedAt: c.At}
		if e := insert(tx, tFormation, nf); e != nil {
			return e
		}
	}
	for _, f := range existing {
		if err := tx.Delete(tFormation, f); err != nil {
			return Errorf("internal", "deleting formation: %v", err)
		}
	}
	return nil
}

func applySlugCreate(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[SlugCreate](c)
	if e != nil {
		return nil, e
	}
	s := p.Slug
	if e := requireID("slug", s.ID); e != nil {
		return nil, e
	}
	if _, e := lookupApp(tx, s.AppID); e != nil {
		return nil, e
	}
	if _, ok := txFirst[Slug](tx, tSlugs, indexID, s.ID); ok {
		return nil, Errorf(CodeConflict, "A slug with id %s already exists.", s.ID)
	}
	if e := ValidProcessTypes(s.ProcessTypes); e != nil {
		return nil, e
	}
	if s.Stack == "" {
		s.Stack = DefaultStack
	}
	s.CreatedAt, s.UpdatedAt = c.At, c.At
	if e := insert(tx, tSlugs, &s); e != nil {
		return nil, e
	}
	return &s, nil
}

func applySlugUploaded(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[SlugUploaded](c)
	if e != nil {
		return nil, e
	}
	sl, ok := txFirst[Slug](tx, tSlugs, indexID, p.SlugID)
	if !ok {
		return nil, notFound("slug")
	}
	if e := ValidDigest(p.Digest); e != nil {
		return nil, e
	}
	if sl.BlobDigest != "" && sl.BlobDigest != p.Digest {
		return nil, Errorf(CodeConflict, "Slug %s was already uploaded with different content.", sl.ID)
	}
	ns := *sl
	ns.BlobDigest, ns.Size, ns.UpdatedAt = p.Digest, p.Size, c.At
	if e := insert(tx, tSlugs, &ns); e != nil {
		return nil, e
	}
	return &ns, nil
}

// ValidProcessTypes checks a slug's process types.
func ValidProcessTypes(pt map[string]string) *Error {
	if pt == nil {
		return invalid("process_types can't be blank.")
	}
	keys := make([]string, 0, len(pt))
	for k := range pt {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if e := ValidProcessType(k); e != nil {
			return e
		}
		if pt[k] == "" {
			return invalid("Process type %s has an empty command.", k)
		}
	}
	return nil
}

func applyReleaseCreate(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[ReleaseCreate](c)
	if e != nil {
		return nil, e
	}
	app, e := lookupApp(tx, p.AppID)
	if e != nil {
		return nil, e
	}
	if e := requireID("release", p.ReleaseID); e != nil {
		return nil, e
	}
	slug, ok := txFirst[Slug](tx, tSlugs, indexID, p.SlugID)
	if !ok || slug.AppID != app.ID {
		return nil, notFound("slug")
	}
	if slug.BlobDigest == "" {
		return nil, invalid("Slug %s has not been uploaded yet: PUT the tarball to its blob URL first.", slug.ID)
	}
	desc := p.Description
	if desc == "" {
		desc = "Deploy"
		if len(slug.Commit) > 0 {
			desc = fmt.Sprintf("Deploy %.7s", slug.Commit)
		}
	}
	var cfg map[string]string
	if cv, ok := txFirst[ConfigVars](tx, tConfig, indexID, app.ID); ok {
		cfg = cv.Vars
	}
	return releaseWithPhase(tx, app, p.ReleaseID, slug.ID, cfg, truncate(desc, MaxDescriptionLen), p.ReleaseDynoID, c)
}

func applyReleaseRollback(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[ReleaseRollback](c)
	if e != nil {
		return nil, e
	}
	app, e := lookupApp(tx, p.AppID)
	if e != nil {
		return nil, e
	}
	if e := requireID("release", p.ReleaseID); e != nil {
		return nil, e
	}
	target, ok := txFirst[Release](tx, tReleases, indexID, p.TargetID)
	if !ok || target.AppID != app.ID {
		return nil, notFound("release")
	}
	if target.Status != ReleaseSucceeded {
		return nil, invalid("Release v%d is not eligible for rollback (its status is %s).", target.Version, target.Status)
	}
	cfg := maps.Clone(target.Config)
	if cfg == nil {
		cfg = map[string]string{}
	}
	if e := insert(tx, tConfig, &ConfigVars{AppID: app.ID, Vars: cfg, UpdatedAt: c.At}); e != nil {
		return nil, e
	}
	return releaseWithPhase(tx, app, p.ReleaseID, target.SlugID, cfg, fmt.Sprintf("Rollback to v%d", target.Version), p.ReleaseDynoID, c)
}

func applyFormationUpdate(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[FormationUpdate](c)
	if e != nil {
		return nil, e
	}
	app, e := lookupApp(tx, p.AppID)
	if e != nil {
		return nil, e
	}
	if len(p.Updates) == 0 {
		return nil, invalid("updates can't be blank.")
	}
	seen := map[string]bool{}
	var out []*Formation
	for _, u := range p.Updates {
		if e := ValidProcessType(u.Type); e != nil {
			return nil, e
		}
		if seen[u.Type] {
			return nil, invalid("Process type %s appears more than once in the update.", u.Type)
		}
		seen[u.Type] = true
		f, ok := txFirst[Formation](tx, tFormation, indexAppKey, app.ID, u.Type)
		if !ok {
			return nil, Errorf(CodeNotFound, "Couldn't find that process type (%s).", u.Type)
		}
		nf := *f
		if u.Quantity != nil && u.Delta != nil {
			return nil, invalid("Give %s either a quantity or a relative change, not both.", u.Type)
		}
		q := nf.Quantity
		switch {
		case u.Quantity != nil:
			q = *u.Quantity
		case u.Delta != nil:
			q += *u.Delta
		}
		if q < 0 || q > MaxQuantity {
			return nil, invalid("Quantity for %s must be between 0 and %d (asked for %d).", u.Type, MaxQuantity, q)
		}
		nf.Quantity = q
		if u.Size != nil {
			sz, ok := LookupDynoSize(*u.Size)
			if !ok {
				return nil, invalid("No such size as %s. Use %s.", *u.Size, sizeNames())
			}
			nf.Size = sz.Name
		}
		nf.UpdatedAt = c.At
		if e := insert(tx, tFormation, &nf); e != nil {
			return nil, e
		}
		out = append(out, &nf)
	}
	return out, nil
}

func sizeNames() string {
	s := ""
	for i, d := range DynoSizes() {
		if i > 0 {
			s += ", "
		}
		s += d.Name
	}
	return s
}
