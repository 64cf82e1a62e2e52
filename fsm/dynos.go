package fsm

import (
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-memdb"
)

// Dyno states, as Heroku's API names them.
const (
	DynoStarting = "starting"
	DynoUp       = "up"
	DynoCrashed  = "crashed"
	DynoDown     = "down"
)

// Dyno is one running (or wanted) process of an app. The scheduler creates,
// places, restarts and stops dynos; the supervisor of the node a dyno is
// placed on runs it and reports its state. Names are not unique: while a
// dyno is replaced (rolling restart, new release) the new web.1 runs beside
// the old one, as on Heroku.
type Dyno struct {
	ID        string `json:"id"`
	AppID     string `json:"app_id"`
	Name      string `json:"name"` // web.1, worker.2, run.4821
	Type      string `json:"type"` // the process type; "run" for one-off dynos
	Command   string `json:"command"`
	Size      string `json:"size"`
	ReleaseID string `json:"release_id"`
	Version   int    `json:"release_version"`
	// Node, Addr and Port say where the dyno runs; Node is empty while the
	// dyno waits for a place (PendingReason says why).
	Node          string `json:"node,omitempty"`
	Zone          string `json:"zone,omitempty"`
	Addr          string `json:"addr,omitempty"`
	Port          int    `json:"port,omitempty"`
	PendingReason string `json:"pending_reason,omitempty"`
	State         string `json:"state"`
	// Instance changes each time the dyno is (re)started; reports about
	// another instance are ignored.
	Instance string `json:"instance"`
	// Stop: the dyno should stop; its record goes once it is down.
	Stop bool `json:"stop,omitempty"`
	// One-off dynos (heroku run).
	OneOff       bool              `json:"one_off,omitempty"`
	Attach       bool              `json:"attach,omitempty"`
	AttachSecret string            `json:"attach_secret_hash,omitempty"` // SHA-256 of the rendezvous secret
	Env          map[string]string `json:"env,omitempty"`
	ExpiresAt    *time.Time        `json:"expires_at,omitempty"`
	// Crash bookkeeping for the restart backoff.
	Crashes    int    `json:"crashes,omitempty"`
	ExitStatus *int   `json:"exit_status,omitempty"`
	Reason     string `json:"reason,omitempty"`
	// CycleAt is when the daily restart is due.
	CycleAt   *time.Time `json:"cycle_at,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	StateAt   time.Time  `json:"state_at"` // when State last changed
	// UpAt is when the current instance came up (zero if it has not).
	UpAt time.Time `json:"up_at,omitempty"`
	// SlugDigest, when set, is the slug archive the dyno runs instead of
	// its release's (a build dyno runs the builder, and has no release);
	// BuildID is the build a build dyno compiles (fsm/builds.go).
	SlugDigest string `json:"slug_digest,omitempty"`
	BuildID    string `json:"build_id,omitempty"`
}

const tDynos = "dynos"

func dynoTables() map[string]table {
	return map[string]table{
		tDynos: {decode: decodeAs[Dyno], schema: &memdb.TableSchema{Indexes: map[string]*memdb.IndexSchema{
			indexID:  idx(indexID, true, false, str("ID")),
			indexApp: byApp(),
			"node":   idx("node", false, true, str("Node")),
		}}},
	}
}

// Dyno commands.
const (
	CmdDynoPlan    = "dyno.plan"
	CmdDynoReport  = "dyno.report"
	CmdDynoRestart = "dyno.restart"
	CmdDynoStop    = "dyno.stop"
	CmdDynoRun     = "dyno.run"
)

func dynoHandler(typ string) handler {
	switch typ {
	case CmdDynoPlan:
		return applyDynoPlan
	case CmdDynoReport:
		return applyDynoReport
	case CmdDynoRestart:
		return applyDynoRestart
	case CmdDynoStop:
		return applyDynoStop
	case CmdDynoRun:
		return applyDynoRun
	}
	return nil
}

// Placement puts a dyno on a node, starting a new instance.
type Placement struct {
	ID       string     `json:"id"`
	Node     string     `json:"node"`
	Zone     string     `json:"zone"`
	Addr     string     `json:"addr"`
	Port     int        `json:"port"`
	Instance string     `json:"instance"`
	CycleAt  *time.Time `json:"cycle_at,omitempty"`
}

// Restart starts a new instance of a dyno where it is.
type Restart struct {
	ID       string     `json:"id"`
	Instance string     `json:"instance"`
	CycleAt  *time.Time `json:"cycle_at,omitempty"`
	// ResetCrashes: an operator's restart (or a new release) resets the
	// backoff; a backoff restart keeps counting.
	ResetCrashes bool `json:"reset_crashes,omitempty"`
}

// Pending records why a dyno could not be placed.
type Pending struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// DynoPlan is one step of the scheduler, applied atomically. Every entry is
// checked against the state when applied; entries that no longer make sense
// (a dyno already gone, already placed) are skipped, so a plan computed on a
// slightly stale view never corrupts anything.
type DynoPlan struct {
	Create  []Dyno      `json:"create,omitempty"`
	Place   []Placement `json:"place,omitempty"`
	Restart []Restart   `json:"restart,omitempty"`
	Stop    []string    `json:"stop,omitempty"`
	Remove  []string    `json:"remove,omitempty"`
	Pending []Pending   `json:"pending,omitempty"`
}

// Empty reports whether the plan changes nothing.
func (p DynoPlan) Empty() bool {
	return len(p.Create)+len(p.Place)+len(p.Restart)+len(p.Stop)+len(p.Remove)+len(p.Pending) == 0
}

// DynoPlanResult says what a plan did.
type DynoPlanResult struct {
	Created, Placed, Restarted, Stopped, Removed, Skipped int
}

func putDyno(tx *memdb.Txn, d *Dyno) *Error { return insert(tx, tDynos, d) }

func getDyno(tx *memdb.Txn, id string) (*Dyno, bool) { return txFirst[Dyno](tx, tDynos, indexID, id) }

func applyDynoPlan(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[DynoPlan](c)
	if e != nil {
		return nil, e
	}
	var res DynoPlanResult
	for _, d := range p.Create {
		if e := requireID("dyno", d.ID); e != nil {
			return nil, e
		}
		if _, ok := getDyno(tx, d.ID); ok {
			res.Skipped++
			continue
		}
		if _, ok := txFirst[App](tx, tApps, indexID, d.AppID); !ok {
			res.Skipped++
			continue
		}
		nd := d
		nd.State, nd.Stop, nd.Node, nd.Addr, nd.Port, nd.Zone = DynoStarting, false, "", "", 0, ""
		nd.CreatedAt, nd.UpdatedAt, nd.StateAt, nd.UpAt = c.At, c.At, c.At, time.Time{}
		if e := putDyno(tx, &nd); e != nil {
			return nil, e
		}
		res.Created++
	}
	for _, pl := range p.Place {
		d, ok := getDyno(tx, pl.ID)
		if !ok || d.Stop || pl.Node == "" || pl.Instance == "" {
			res.Skipped++
			continue
		}
		nd := *d
		nd.Node, nd.Zone, nd.Addr, nd.Port, nd.Instance, nd.CycleAt = pl.Node, pl.Zone, pl.Addr, pl.Port, pl.Instance, pl.CycleAt
		nd.State, nd.PendingReason, nd.StateAt, nd.UpdatedAt, nd.UpAt = DynoStarting, "", c.At, c.At, time.Time{}
		nd.ExitStatus, nd.Reason = nil, ""
		if e := putDyno(tx, &nd); e != nil {
			return nil, e
		}
		res.Placed++
	}
	for _, r := range p.Restart {
		d, ok := getDyno(tx, r.ID)
		if !ok || d.Stop || d.Node == "" || r.Instance == "" {
			res.Skipped++
			continue
		}
		nd := *d
		nd.Instance, nd.State, nd.StateAt, nd.UpdatedAt, nd.UpAt = r.Instance, DynoStarting, c.At, c.At, time.Time{}
		nd.ExitStatus, nd.Reason = nil, ""
		if r.CycleAt != nil {
			nd.CycleAt = r.CycleAt
		}
		if r.ResetCrashes {
			nd.Crashes = 0
		}
		if e := putDyno(tx, &nd); e != nil {
			return nil, e
		}
		res.Restarted++
	}
	for _, id := range p.Stop {
		d, ok := getDyno(tx, id)
		if !ok || d.Stop {
			res.Skipped++
			continue
		}
		nd := *d
		nd.Stop, nd.UpdatedAt = true, c.At
		if nd.Node == "" { // never placed: nothing runs
			nd.State, nd.StateAt = DynoDown, c.At
			if e := phaseDynoEnded(tx, &nd, c); e != nil {
				return nil, e
			}
		}
		if e := putDyno(tx, &nd); e != nil {
			return nil, e
		}
		res.Stopped++
	}
	for _, id := range p.Remove {
		d, ok := getDyno(tx, id)
		if !ok {
			res.Skipped++
			continue
		}
		if err := tx.Delete(tDynos, d); err != nil {
			return nil, Errorf("internal", "deleting dyno: %v", err)
		}
		if e := phaseDynoEnded(tx, d, c); e != nil {
			return nil, e
		}
		res.Removed++
	}
	for _, pe := range p.Pending {
		d, ok := getDyno(tx, pe.ID)
		if !ok || d.Node != "" || d.PendingReason == pe.Reason {
			continue
		}
		nd := *d
		nd.PendingReason, nd.UpdatedAt = truncate(pe.Reason, 512), c.At
		if e := putDyno(tx, &nd); e != nil {
			return nil, e
		}
	}
	return &res, nil
}

// DynoReport is a supervisor's report of a state change.
type DynoReport struct {
	ID         string `json:"id"`
	Instance   string `json:"instance"`
	Node       string `json:"node"`
	State      string `json:"state"`
	ExitStatus *int   `json:"exit_status,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

// crashResetAfter: a dyno that stayed up this long before crashing starts
// its restart backoff afresh.
const crashResetAfter = 10 * time.Minute

func applyDynoReport(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[DynoReport](c)
	if e != nil {
		return nil, e
	}
	switch p.State {
	case DynoStarting, DynoUp, DynoCrashed, DynoDown:
	default:
		return nil, invalid("Unknown dyno state %q.", p.State)
	}
	d, ok := getDyno(tx, p.ID)
	if !ok {
		return nil, notFound("dyno")
	}
	if d.Instance != p.Instance || d.Node != p.Node {
		return nil, Errorf(CodeConflict, "Report about a previous instance of %s ignored.", d.Name)
	}
	if d.State == p.State && p.State != DynoCrashed {
		return d, nil
	}
	nd := *d
	if p.State == DynoCrashed {
		if !d.UpAt.IsZero() && c.At.Sub(d.UpAt) >= crashResetAfter {
			nd.Crashes = 0
		}
		nd.Crashes++
	}
	if p.State == DynoUp {
		nd.UpAt = c.At
	}
	nd.State, nd.StateAt, nd.UpdatedAt = p.State, c.At, c.At
	nd.ExitStatus, nd.Reason = p.ExitStatus, truncate(p.Reason, 512)
	if e := putDyno(tx, &nd); e != nil {
		return nil, e
	}
	if nd.State == DynoCrashed || nd.State == DynoDown {
		if e := phaseDynoEnded(tx, &nd, c); e != nil {
			return nil, e
		}
	}
	return &nd, nil
}

// DynoRestart restarts an app's dynos: all of them, those of one process
// type, or one by name or id (ps:restart). Each gets a new instance id.
type DynoRestart struct {
	AppID string `json:"app_id"`
	Type  string `json:"type,omitempty"`
	Dyno  string `json:"dyno,omitempty"`
	// Instances maps dyno id to its new instance id (chosen by the
	// proposer, for determinism); dynos without one are not restarted.
	Instances map[string]string `json:"instances"`
}

func selectDynos(tx *memdb.Txn, appID, typ, name string) ([]*Dyno, *Error) {
	var out []*Dyno
	for _, d := range txAll[Dyno](tx, tDynos, indexApp, appID) {
		if d.Stop {
			continue
		}
		switch {
		case name != "":
			if d.Name != name && d.ID != name {
				continue
			}
		case typ != "":
			if d.Type != typ {
				continue
			}
		}
		out = append(out, d)
	}
	if name != "" && len(out) == 0 {
		return nil, notFound("dyno")
	}
	if typ != "" && len(out) == 0 {
		return nil, Errorf(CodeNotFound, "Couldn't find that process type (%s).", typ)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// SelectDynos lists an app's running dynos, optionally by type or by name
// (what a restart or stop with those arguments affects).
func (s *Snap) SelectDynos(appID, typ, name string) ([]*Dyno, error) {
	d, e := selectDynos(s.tx, appID, typ, name)
	if e != nil {
		return nil, e
	}
	return d, nil
}

func applyDynoRestart(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[DynoRestart](c)
	if e != nil {
		return nil, e
	}
	if _, e := lookupApp(tx, p.AppID); e != nil {
		return nil, e
	}
	ds, e := selectDynos(tx, p.AppID, p.Type, p.Dyno)
	if e != nil {
		return nil, e
	}
	var out []*Dyno
	for _, d := range ds {
		inst, ok := p.Instances[d.ID]
		if !ok || inst == "" {
			continue
		}
		nd := *d
		nd.Crashes, nd.ExitStatus, nd.Reason = 0, nil, ""
		if d.Node != "" {
			nd.Instance, nd.State, nd.StateAt, nd.UpAt = inst, DynoStarting, c.At, time.Time{}
		}
		nd.UpdatedAt = c.At
		if e := putDyno(tx, &nd); e != nil {
			return nil, e
		}
		out = append(out, &nd)
	}
	return out, nil
}

// DynoStop stops dynos (ps:stop). A formation dyno is replaced by the
// scheduler, as on Heroku; a one-off dyno just ends.
type DynoStop struct {
	AppID string `json:"app_id"`
	Type  string `json:"type,omitempty"`
	Dyno  string `json:"dyno,omitempty"`
}

func applyDynoStop(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[DynoStop](c)
	if e != nil {
		return nil, e
	}
	if _, e := lookupApp(tx, p.AppID); e != nil {
		return nil, e
	}
	if p.Type == "" && p.Dyno == "" {
		return nil, invalid("Give a dyno or a process type to stop.")
	}
	ds, e := selectDynos(tx, p.AppID, p.Type, p.Dyno)
	if e != nil {
		return nil, e
	}
	var out []*Dyno
	for _, d := range ds {
		nd := *d
		nd.Stop, nd.UpdatedAt = true, c.At
		if nd.Node == "" {
			nd.State, nd.StateAt = DynoDown, c.At
			if e := phaseDynoEnded(tx, &nd, c); e != nil {
				return nil, e
			}
		}
		if e := putDyno(tx, &nd); e != nil {
			return nil, e
		}
		out = append(out, &nd)
	}
	return out, nil
}

// DynoRun creates a one-off dyno (heroku run); the scheduler places it.
type DynoRun struct {
	Dyno Dyno `json:"dyno"`
}

// MaxOneOffEnv bounds a one-off dyno's extra environment.
const MaxOneOffEnv = 32 * 1024

func applyDynoRun(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[DynoRun](c)
	if e != nil {
		return nil, e
	}
	d := p.Dyno
	if e := requireID("dyno", d.ID); e != nil {
		return nil, e
	}
	app, e := lookupApp(tx, d.AppID)
	if e != nil {
		return nil, e
	}
	if strings.TrimSpace(d.Command) == "" {
		return nil, invalid("command can't be blank.")
	}
	if len(d.Command) > 64*1024 {
		return nil, invalid("command is too long (maximum is 65536 bytes).")
	}
	if _, ok := LookupDynoSize(d.Size); !ok {
		return nil, invalid("No such size as %s. Use %s.", d.Size, sizeNames())
	}
	changes := map[string]*string{}
	for k, v := range d.Env {
		v := v
		changes[k] = &v
	}
	if e := ValidConfigChanges(changes); e != nil {
		return nil, e
	}
	if ConfigSize(d.Env) > MaxOneOffEnv {
		return nil, invalid("env is too large (maximum %d bytes).", MaxOneOffEnv)
	}
	rel := txCurrentRelease(tx, app.ID)
	if rel == nil || rel.SlugID == "" {
		return nil, invalid("%s has no release with a slug to run yet; deploy it first.", app.Name)
	}
	if !strings.HasPrefix(d.Name, "run.") {
		return nil, invalid("A one-off dyno's name must start with run.")
	}
	for _, o := range txAll[Dyno](tx, tDynos, indexApp, app.ID) {
		if o.Name == d.Name {
			return nil, Errorf(CodeConflict, "A dyno named %s already exists.", d.Name)
		}
	}
	d.Type, d.OneOff, d.ReleaseID, d.Version = "run", true, rel.ID, rel.Version
	d.State, d.Stop, d.Node, d.Addr, d.Port, d.Instance = DynoStarting, false, "", "", 0, ""
	d.CreatedAt, d.UpdatedAt, d.StateAt = c.At, c.At, c.At
	if e := putDyno(tx, &d); e != nil {
		return nil, e
	}
	return &d, nil
}

// Dynos lists an app's dynos by name.
func (s *Snap) Dynos(appID string) []*Dyno {
	d := all[Dyno](s, tDynos, indexApp, appID)
	sort.Slice(d, func(i, j int) bool {
		if d[i].Name != d[j].Name {
			return d[i].Name < d[j].Name
		}
		return d[i].CreatedAt.Before(d[j].CreatedAt)
	})
	return d
}

// AllDynos lists every dyno (for the scheduler and the router).
func (s *Snap) AllDynos() []*Dyno { return all[Dyno](s, tDynos, indexID) }

// NodeDynos lists the dynos placed on a node (for its supervisor).
func (s *Snap) NodeDynos(node string) []*Dyno { return all[Dyno](s, tDynos, "node", node) }

// DynoByID finds a dyno.
func (s *Snap) DynoByID(id string) (*Dyno, bool) { return first[Dyno](s, tDynos, indexID, id) }

// Dyno finds an app's dyno by id or name (the running one when a name is
// shared during a replacement: the newest not stopping).
func (s *Snap) Dyno(appID, idOrName string) (*Dyno, bool) {
	if d, ok := s.DynoByID(idOrName); ok && d.AppID == appID {
		return d, true
	}
	var best *Dyno
	for _, d := range s.Dynos(appID) {
		if d.Name != idOrName {
			continue
		}
		if best == nil || (best.Stop && !d.Stop) || (best.Stop == d.Stop && d.CreatedAt.After(best.CreatedAt)) {
			best = d
		}
	}
	return best, best != nil
}
