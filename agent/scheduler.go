package agent

import (
	"fmt"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/cluster"
	"github.com/slipwayhq/slipway/dyno/scheduler"
)

// schedulerConfig turns the agent settings into the scheduler's policy.
func (c *Config) schedulerConfig() (scheduler.Config, error) {
	sc := scheduler.DefaultConfig()
	if c.DynoCycle.Duration > 0 {
		sc.Cycle = c.DynoCycle.Duration
		sc.CycleJitter = c.DynoCycle.Duration * 15 / 100 // Heroku: 24 h + up to 216 min
	}
	if c.DynoLeftGrace.Duration > 0 {
		sc.LeftGrace = c.DynoLeftGrace.Duration
	}
	if strings.TrimSpace(c.DynoRestartBackoff) != "" {
		var b []time.Duration
		for _, f := range strings.Split(c.DynoRestartBackoff, ",") {
			d, err := time.ParseDuration(strings.TrimSpace(f))
			if err != nil || d < 0 {
				return sc, fmt.Errorf("dyno_restart_backoff %q: %q is not a duration", c.DynoRestartBackoff, f)
			}
			b = append(b, d)
		}
		sc.Backoff = b
	}
	return sc, nil
}

// startScheduler runs the dyno scheduler whenever this node leads.
func (a *Agent) startScheduler() error {
	sc, err := a.cfg.schedulerConfig()
	if err != nil {
		return err
	}
	s := scheduler.New(scheduler.Deps{
		Snap:    a.fsm.Snap,
		Members: func() []cluster.Member { return a.node.Members() },
		Region:  a.cfg.Region,
		Submit:  a.Submit,
		Logger:  a.log,
	}, sc)
	a.node.AddLeaderHook(s.Run)
	return nil
}
