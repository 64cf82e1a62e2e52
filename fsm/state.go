package fsm

import (
	"sort"
	"strconv"

	"github.com/google/uuid"
	"github.com/hashicorp/go-memdb"
)

// Snap is a consistent, immutable view of the state at one applied index.
// Records it returns are shared with the store: callers must not modify them.
type Snap struct {
	tx      *memdb.Txn
	index   uint64
	restore <-chan struct{}
}

// Index is the Raft index of the last command reflected in this view.
func (s *Snap) Index() uint64 { return s.index }

// Watch returns a watch set that fires when any of the named tables changes
// (or the whole state is replaced by a snapshot restore).
func (s *Snap) Watch(tableNames ...string) memdb.WatchSet {
	ws := memdb.NewWatchSet()
	ws.Add(s.restore)
	for _, t := range tableNames {
		if it, err := s.tx.Get(t, indexID); err == nil {
			ws.Add(it.WatchCh())
		}
	}
	return ws
}

func first[T any](s *Snap, table, index string, args ...any) (*T, bool) {
	raw, err := s.tx.First(table, index, args...)
	if err != nil || raw == nil {
		return nil, false
	}
	return raw.(*T), true
}

func all[T any](s *Snap, table, index string, args ...any) []*T {
	it, err := s.tx.Get(table, index, args...)
	if err != nil {
		return nil
	}
	var out []*T
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*T))
	}
	return out
}

// Count is the number of records in a table.
func (s *Snap) Count(table string) int {
	it, err := s.tx.Get(table, indexID)
	if err != nil {
		return 0
	}
	n := 0
	for raw := it.Next(); raw != nil; raw = it.Next() {
		n++
	}
	return n
}

// App finds an app by id or name.
func (s *Snap) App(idOrName string) (*App, bool) {
	if a, ok := first[App](s, tApps, indexID, idOrName); ok {
		return a, true
	}
	return first[App](s, tApps, indexName, idOrName)
}

// Apps lists all apps, by name.
func (s *Snap) Apps() []*App { return all[App](s, tApps, indexName) }

// Config returns an app's current config vars (nil map when the app has none).
func (s *Snap) Config(appID string) map[string]string {
	if c, ok := first[ConfigVars](s, tConfig, indexID, appID); ok {
		return c.Vars
	}
	return nil
}

// Releases lists an app's releases by ascending version.
func (s *Snap) Releases(appID string) []*Release {
	return all[Release](s, tReleases, indexAppKey+"_prefix", appID)
}

// Release finds an app's release by id or version ("3" or "v3").
func (s *Snap) Release(appID, idOrVersion string) (*Release, bool) {
	if r, ok := first[Release](s, tReleases, indexID, idOrVersion); ok && r.AppID == appID {
		return r, true
	}
	v, err := strconv.Atoi(trimV(idOrVersion))
	if err != nil {
		return nil, false
	}
	return first[Release](s, tReleases, indexAppKey, appID, v)
}

func trimV(s string) string {
	if len(s) > 1 && (s[0] == 'v' || s[0] == 'V') {
		return s[1:]
	}
	return s
}

// LatestRelease is the release with the highest version, whatever its status.
func (s *Snap) LatestRelease(appID string) *Release {
	it, err := s.tx.GetReverse(tReleases, indexAppKey+"_prefix", appID)
	if err != nil {
		return nil
	}
	if raw := it.Next(); raw != nil {
		return raw.(*Release)
	}
	return nil
}

// CurrentRelease is the newest succeeded release: what the app runs.
func (s *Snap) CurrentRelease(appID string) *Release {
	it, err := s.tx.GetReverse(tReleases, indexAppKey+"_prefix", appID)
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

// Slug finds a slug by id.
func (s *Snap) Slug(id string) (*Slug, bool) { return first[Slug](s, tSlugs, indexID, id) }

// Slugs lists an app's slugs.
func (s *Snap) Slugs(appID string) []*Slug { return all[Slug](s, tSlugs, indexApp, appID) }

// ProcessTypes are the process types of the app's current release's slug.
func (s *Snap) ProcessTypes(appID string) map[string]string {
	r := s.CurrentRelease(appID)
	if r == nil || r.SlugID == "" {
		return nil
	}
	if sl, ok := s.Slug(r.SlugID); ok {
		return sl.ProcessTypes
	}
	return nil
}

// Formation lists an app's process types, by type.
func (s *Snap) Formation(appID string) []*Formation {
	return all[Formation](s, tFormation, indexAppKey+"_prefix", appID)
}

// FormationType finds one of an app's formation entries by id or type.
func (s *Snap) FormationType(appID, idOrType string) (*Formation, bool) {
	if f, ok := first[Formation](s, tFormation, indexID, idOrType); ok && f.AppID == appID {
		return f, true
	}
	return first[Formation](s, tFormation, indexAppKey, appID, idOrType)
}

// AllFormation lists every app's formation (for the scheduler).
func (s *Snap) AllFormation() []*Formation { return all[Formation](s, tFormation, indexID) }

// Domains lists an app's domains by hostname.
func (s *Snap) Domains(appID string) []*Domain {
	d := all[Domain](s, tDomains, indexApp, appID)
	sort.Slice(d, func(i, j int) bool { return d[i].Hostname < d[j].Hostname })
	return d
}

// AllDomains lists every domain (for the router's table).
func (s *Snap) AllDomains() []*Domain { return all[Domain](s, tDomains, indexName) }

// Domain finds an app's domain by id or hostname.
func (s *Snap) Domain(appID, idOrHostname string) (*Domain, bool) {
	if d, ok := first[Domain](s, tDomains, indexID, idOrHostname); ok && d.AppID == appID {
		return d, true
	}
	if d, ok := first[Domain](s, tDomains, indexName, NormalizeHostname(idOrHostname)); ok && d.AppID == appID {
		return d, true
	}
	return nil, false
}

// DomainByHostname finds the domain with this hostname, whatever its app.
func (s *Snap) DomainByHostname(h string) (*Domain, bool) {
	return first[Domain](s, tDomains, indexName, NormalizeHostname(h))
}

// FeatureState is a catalog feature with its state on one app.
type FeatureState struct {
	Feature
	ID        string
	Enabled   bool
	UpdatedAt *AppFeature
}

// FeatureID is the stable id of a catalog feature.
func FeatureID(name string) string {
	return uuid.NewSHA1(featureNS, []byte(name)).String()
}

var featureNS = uuid.MustParse("8f0d7b4e-7c39-4c55-9a55-5e1f1b2a7c10")

// Features lists the catalog with each feature's state on the app.
func (s *Snap) Features(appID string) []FeatureState {
	var out []FeatureState
	for _, f := range Features() {
		out = append(out, s.featureState(appID, f))
	}
	return out
}

func (s *Snap) featureState(appID string, f Feature) FeatureState {
	st := FeatureState{Feature: f, ID: FeatureID(f.Name), Enabled: f.Default}
	if af, ok := first[AppFeature](s, tFeatures, indexID, appID, f.Name); ok {
		st.Enabled = af.Enabled
		st.UpdatedAt = af
	}
	return st
}

// Feature finds a feature by id or name with its state on the app.
func (s *Snap) Feature(appID, idOrName string) (FeatureState, bool) {
	for _, f := range Features() {
		if f.Name == idOrName || FeatureID(f.Name) == idOrName {
			return s.featureState(appID, f), true
		}
	}
	return FeatureState{}, false
}

// FeatureEnabled reports whether a feature is on for an app.
func (s *Snap) FeatureEnabled(appID, name string) bool {
	st, ok := s.Feature(appID, name)
	return ok && st.Enabled
}

// User finds a user by id or email.
func (s *Snap) User(idOrEmail string) (*User, bool) {
	if u, ok := first[User](s, tUsers, indexID, idOrEmail); ok {
		return u, true
	}
	return first[User](s, tUsers, indexName, idOrEmail)
}

// Users lists all users by email.
func (s *Snap) Users() []*User { return all[User](s, tUsers, indexName) }

// TokenByHash finds a token by the hash of its secret.
func (s *Snap) TokenByHash(hash string) (*Token, bool) {
	return first[Token](s, tTokens, indexName, hash)
}

// Tokens lists a user's tokens.
func (s *Snap) Tokens(userID string) []*Token { return all[Token](s, tTokens, "user", userID) }

// Nodes lists node records by name.
func (s *Snap) Nodes() []*Node { return all[Node](s, tNodes, indexID) }

// Node finds a node record.
func (s *Snap) Node(name string) (*Node, bool) { return first[Node](s, tNodes, indexID, name) }

// Meta returns a cluster-wide value.
func (s *Snap) Meta(key string) (*Meta, bool) { return first[Meta](s, tMeta, indexID, key) }
