package api

import (
	"net/url"
	"strings"

	"github.com/google/uuid"

	"github.com/slipwayhq/slipway/fsm"
)

// catalogNS derives stable ids for catalog objects (regions, stacks, sizes).
var catalogNS = uuid.MustParse("3b8f1c52-2f0e-4d3c-9a0b-7f5d1e2c4a61")

func catalogID(kind, name string) string {
	return uuid.NewSHA1(catalogNS, []byte(kind+"/"+name)).String()
}

func (s *Server) userRef(snap *fsm.Snap, id string) UserRef {
	if u, ok := snap.User(id); ok {
		return UserRef{ID: u.ID, Email: u.Email}
	}
	return UserRef{ID: id, Email: ""}
}

// DefaultHostname is an app's default domain.
func DefaultHostname(app, domain string) string { return app + "." + domain }

func (s *Server) webURL(name string) string {
	host := DefaultHostname(name, s.opts.Domain)
	if u, err := url.Parse(s.opts.RouterURL); err == nil && u.Host != "" {
		if p := u.Port(); p != "" && !((u.Scheme == "http" && p == "80") || (u.Scheme == "https" && p == "443")) {
			host += ":" + p
		}
		return u.Scheme + "://" + host + "/"
	}
	return "http://" + host + "/"
}

func (s *Server) gitURL(name string) string {
	return strings.TrimSuffix(s.opts.APIURL, "/") + "/" + name + ".git"
}

func (s *Server) renderApp(snap *fsm.Snap, a *fsm.App) App {
	out := App{
		BuildStack: Ref{ID: catalogID("stack", a.BuildStack), Name: a.BuildStack},
		CreatedAt:  a.CreatedAt, GitURL: s.gitURL(a.Name), ID: a.ID, Maintenance: a.Maintenance, Name: a.Name,
		Owner:      s.userRef(snap, a.OwnerID),
		Region:     Ref{ID: catalogID("region", a.Region), Name: a.Region},
		ReleasedAt: a.ReleasedAt, Stack: Ref{ID: catalogID("stack", a.Stack), Name: a.Stack},
		UpdatedAt: a.UpdatedAt, WebURL: s.webURL(a.Name), Generation: "cedar", CreateStatus: "complete",
	}
	if cur := snap.CurrentRelease(a.ID); cur != nil && cur.SlugID != "" {
		if sl, ok := snap.Slug(cur.SlugID); ok {
			size := sl.Size
			out.SlugSize = &size
			if sl.BuildpackProvided != "" {
				d := sl.BuildpackProvided
				out.BuildpackProvidedDescription = &d
			}
		}
	}
	return out
}

func (s *Server) renderRelease(snap *fsm.Snap, app *fsm.App, r *fsm.Release, current string) Release {
	out := Release{AddonPlanNames: []string{}, Artifacts: []any{}, App: Ref{ID: app.ID, Name: app.Name},
		CreatedAt: r.CreatedAt, Description: r.Description, Status: r.Status, ID: r.ID, UpdatedAt: r.UpdatedAt,
		User: s.userRef(snap, r.UserID), Version: r.Version, Current: r.ID == current,
		EligibleForRollback: r.Status == fsm.ReleaseSucceeded}
	if r.SlugID != "" {
		out.Slug = &IDRef{ID: r.SlugID}
	}
	return out
}

func currentID(snap *fsm.Snap, appID string) string {
	if c := snap.CurrentRelease(appID); c != nil {
		return c.ID
	}
	return ""
}

func renderFormation(app *fsm.App, f *fsm.Formation) Formation {
	return Formation{App: Ref{ID: app.ID, Name: app.Name}, Command: f.Command, CreatedAt: f.CreatedAt, ID: f.ID,
		Quantity: f.Quantity, Size: f.Size, DynoSize: Ref{ID: catalogID("size", f.Size), Name: f.Size},
		Type: f.Type, UpdatedAt: f.UpdatedAt}
}

func (s *Server) renderDomain(snap *fsm.Snap, app *fsm.App, d *fsm.Domain) Domain {
	out := Domain{App: Ref{ID: app.ID, Name: app.Name}, CreatedAt: d.CreatedAt, Hostname: d.Hostname, ID: d.ID,
		Kind: d.Kind, UpdatedAt: d.UpdatedAt, Status: d.Status, SNIEndpoint: sniEndpointFor(snap, app.ID, d.Hostname)}
	if d.Kind == fsm.DomainKindCustom {
		c := d.CName
		if c == "" {
			c = DefaultHostname(app.Name, s.opts.Domain)
		}
		out.CName = &c
	}
	return out
}

func renderFeature(f fsm.FeatureState, created fsm.App) AppFeature {
	out := AppFeature{CreatedAt: created.CreatedAt, UpdatedAt: created.CreatedAt, Description: f.Description, DocURL: f.DocURL,
		Enabled: f.Enabled, ID: f.ID, Name: f.Name, State: f.State, DisplayName: f.Name, FeedbackEmail: ""}
	if f.UpdatedAt != nil {
		out.UpdatedAt = f.UpdatedAt.UpdatedAt
	}
	return out
}

// sniEndpointFor is the app's SNI endpoint the routers serve for a
// hostname, as they choose it: a certificate naming the host exactly
// before a wildcard one, the most recently updated first; nil if none.
func sniEndpointFor(snap *fsm.Snap, appID, hostname string) *Ref {
	host := fsm.NormalizeHostname(hostname)
	var exact, wild *fsm.Cert
	for _, c := range snap.Certs(appID) {
		if !certCovers(c.Hostnames, host) {
			continue
		}
		isExact := false
		for _, n := range c.Hostnames {
			isExact = isExact || fsm.NormalizeHostname(n) == host
		}
		best := &wild
		if isExact {
			best = &exact
		}
		if *best == nil || c.UpdatedAt.After((*best).UpdatedAt) {
			*best = c
		}
	}
	for _, c := range []*fsm.Cert{exact, wild} {
		if c != nil {
			return &Ref{ID: c.ID, Name: c.Name}
		}
	}
	return nil
}
