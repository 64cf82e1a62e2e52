package scheduler

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"reflect"
	"time"

	"github.com/google/uuid"

	"github.com/slipwayhq/slipway/cluster"
	"github.com/slipwayhq/slipway/fsm"
)

// Deps are what the scheduler reads and writes.
type Deps struct {
	// Snap returns the local replica (the leader's).
	Snap func() *fsm.Snap
	// Members lists the region's gossip members.
	Members func() []cluster.Member
	// Region is the scheduler's region.
	Region string
	// Submit replicates a command.
	Submit func(ctx context.Context, cmd fsm.Command) (*fsm.Result, error)
	Clock  func() time.Time
	Logger *slog.Logger
}

// Scheduler is the leader's placement loop.
type Scheduler struct {
	d   Deps
	cfg Config
	// UnknownGrace: a node in dyno records but not (yet) in gossip is left
	// alone this long after the scheduler starts, so a cluster that is
	// restarting does not move every dyno.
	UnknownGrace time.Duration
	// Poll is how often gossip changes are looked at.
	Poll time.Duration
}

// New returns a scheduler.
func New(d Deps, cfg Config) *Scheduler {
	if d.Clock == nil {
		d.Clock = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	return &Scheduler{d: d, cfg: cfg, UnknownGrace: time.Minute, Poll: time.Second}
}

// Nodes derives placement targets from gossip and the node records.
func (s *Scheduler) Nodes(snap *fsm.Snap, started time.Time) []Node {
	now := s.d.Clock()
	seen := map[string]bool{}
	var out []Node
	for _, m := range s.d.Members() {
		if m.Meta.Region != s.d.Region {
			continue
		}
		seen[m.Name] = true
		n := Node{Name: m.Name, Zone: m.Meta.Zone, MemoryMB: m.Meta.MemoryMB, PortFirst: m.Meta.PortFirst,
			PortLast: m.Meta.PortLast, Draining: m.Meta.Draining}
		if host, _, err := net.SplitHostPort(m.Meta.Raft); err == nil {
			n.Addr = host
		}
		switch m.State {
		case cluster.StateAlive, cluster.StateSuspect:
			n.State = NodeAlive
		case cluster.StateLeft:
			// Left gracefully: its dynos still run; leave them alone for
			// a while (see Config.LeftGrace).
			n.State = NodeDead
			if !m.Since.IsZero() && now.Sub(m.Since) < s.cfg.LeftGrace {
				n.State = NodeUnknown
			}
		default:
			n.State = NodeDead
		}
		if rec, ok := snap.Node(m.Name); ok && rec.Draining {
			n.Draining = true
		}
		out = append(out, n)
	}
	// Nodes that dynos sit on but gossip has never shown this scheduler.
	for _, d := range snap.AllDynos() {
		if d.Node == "" || seen[d.Node] {
			continue
		}
		seen[d.Node] = true
		st := NodeUnknown
		if now.Sub(started) >= s.UnknownGrace {
			st = NodeDead
		}
		out = append(out, Node{Name: d.Node, Zone: d.Zone, State: st})
	}
	return out
}

// Run schedules until ctx ends (leadership lost).
func (s *Scheduler) Run(ctx context.Context) {
	started := s.d.Clock()
	log := s.d.Logger.With("component", "scheduler")
	var last fsm.DynoPlan
	for ctx.Err() == nil {
		snap := s.d.Snap()
		ws := snap.Watch("apps", "releases", "formation", "dynos", "nodes", "slugs")
		plan, wake := Plan(Input{Snap: snap, Nodes: s.Nodes(snap, started), Now: s.d.Clock(), Config: s.cfg,
			NewID: uuid.NewString, Jitter: jitter})
		if !plan.Empty() {
			if sameWork(plan, last) {
				// The previous identical plan changed nothing: wait for
				// the state to move rather than spin.
				log.Debug("plan unchanged since the last submit; waiting")
			} else {
				last = plan
				if err := s.submit(ctx, plan); err != nil {
					if ctx.Err() != nil {
						return
					}
					log.Warn("submitting a dyno plan failed", "err", err)
					sleep(ctx, time.Second)
				}
				continue
			}
		} else {
			last = fsm.DynoPlan{}
		}
		wait := s.Poll
		if !wake.IsZero() {
			if d := wake.Sub(s.d.Clock()); d < wait {
				wait = max(d, 10*time.Millisecond)
			}
		}
		wctx, cancel := context.WithTimeout(ctx, wait)
		_ = ws.WatchCtx(wctx)
		cancel()
	}
}

// sameWork compares plans ignoring the fresh ids a plan is given.
func sameWork(a, b fsm.DynoPlan) bool {
	norm := func(p fsm.DynoPlan) fsm.DynoPlan {
		q := fsm.DynoPlan{Stop: p.Stop, Remove: p.Remove, Pending: p.Pending}
		for _, c := range p.Create {
			c.ID = ""
			q.Create = append(q.Create, c)
		}
		for _, pl := range p.Place {
			pl.Instance, pl.CycleAt = "", nil
			q.Place = append(q.Place, pl)
		}
		for _, r := range p.Restart {
			q.Restart = append(q.Restart, fsm.Restart{ID: r.ID})
		}
		return q
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

func (s *Scheduler) submit(ctx context.Context, plan fsm.DynoPlan) error {
	cmd, err := fsm.NewCommand(fsm.CmdDynoPlan, uuid.NewString(), s.d.Clock(), "", plan)
	if err != nil {
		return err
	}
	res, err := s.d.Submit(ctx, cmd)
	if err != nil {
		return err
	}
	if res.Err != nil {
		return errors.New(res.Err.Message)
	}
	var r fsm.DynoPlanResult
	if err := res.Decode(&r); err == nil {
		s.d.Logger.Debug("dyno plan applied", "created", r.Created, "placed", r.Placed, "restarted", r.Restarted,
			"stopped", r.Stopped, "removed", r.Removed, "skipped", r.Skipped)
	}
	return nil
}

func jitter(maxD time.Duration) time.Duration {
	if maxD <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(maxD)))
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
