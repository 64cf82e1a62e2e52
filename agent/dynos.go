package agent

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/slipwayhq/slipway/cluster"
	"github.com/slipwayhq/slipway/dyno"
	"github.com/slipwayhq/slipway/fsm"
)

// DynoSettings are the node's dyno supervisor settings (top-level keys of
// the config file, embedded in Config).
type DynoSettings struct {
	// DynoRuntime runs dynos: "process" (default: a process group of the
	// node, no isolation) or "runc" (OCI containers; needs root and runc).
	DynoRuntime string `json:"dyno_runtime"`
	// DynoStack is the runc stack: "host" (default: the node's own /usr,
	// /etc, /bin, /lib read-only) or the path of a root filesystem built
	// by install/build-stack.sh.
	DynoStack string `json:"dyno_stack"`
	// DynoBootTimeout: a web dyno not listening on $PORT by then is killed
	// (R10; default 60s). DynoStopTimeout: SIGKILL this long after SIGTERM
	// (R12; default 30s).
	DynoBootTimeout Duration `json:"dyno_boot_timeout"`
	DynoStopTimeout Duration `json:"dyno_stop_timeout"`
	// DynoStopOnExit stops the node's dynos when the agent stops, instead
	// of leaving them running for the next agent to adopt.
	DynoStopOnExit bool `json:"dyno_stop_on_exit"`
}

func (c DynoSettings) validate() error {
	switch c.DynoRuntime {
	case "", "process", "runc":
	default:
		return fmt.Errorf("dyno_runtime %q must be \"process\" or \"runc\"", c.DynoRuntime)
	}
	if c.DynoBootTimeout.Duration < 0 || c.DynoStopTimeout.Duration < 0 {
		return errors.New("dyno_boot_timeout and dyno_stop_timeout must not be negative")
	}
	return nil
}

// startDynos runs the node's dyno supervisor (in <data_dir>/dynos) and
// mounts the attach endpoint of its one-off dynos on the internal RPC port.
func (a *Agent) startDynos() error {
	dir := filepath.Join(a.cfg.DataDir, "dynos")
	var rt dyno.Runtime = dyno.Process{}
	if a.cfg.DynoRuntime == "runc" {
		hide := []string{a.cfg.DataDir, a.cfg.EncryptKeyFile, a.cfg.InitialAdminTokenFile}
		r, err := dyno.NewRunc(dyno.RuncConfig{StateDir: filepath.Join(dir, "runc"), StackDir: filepath.Join(dir, "stacks"),
			Stack: a.cfg.DynoStack, Hide: hide})
		if err != nil {
			return err
		}
		rt = r
	}
	sup, err := dyno.NewSupervisor(dyno.Config{
		Node: a.cfg.NodeName, Dir: dir, Runtime: rt, Snap: a.fsm.Snap, Reporter: dyno.ReporterFunc(a.reportDyno),
		Slugs: a.blobs, Sink: a.logs, Logger: a.log,
		BootTimeout: a.cfg.DynoBootTimeout.Duration, StopTimeout: a.cfg.DynoStopTimeout.Duration, StopOnExit: a.cfg.DynoStopOnExit,
		Synced: a.node.WaitForLinearizable,
	})
	if err != nil {
		return err
	}
	a.dynos = sup
	a.node.HandleRPC("POST "+dyno.AttachRPCPath, sup.AttachHandler())
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := sup.Run(a.ctx); err != nil {
			a.log.Error("dyno supervisor stopped", "err", err)
		}
	}()
	return nil
}

// reportDyno submits a supervisor's report; a rejection (an old instance, a
// dyno that is gone) is returned as the *fsm.Error the supervisor drops.
func (a *Agent) reportDyno(ctx context.Context, r fsm.DynoReport) error {
	res, err := a.propose(ctx, fsm.CmdDynoReport, r)
	if err != nil {
		return err
	}
	if res.Err != nil {
		return res.Err
	}
	return nil
}

// Dynos is the node's dyno supervisor.
func (a *Agent) Dynos() *dyno.Supervisor { return a.dynos }

// The internal RPC client reaches other nodes' attach endpoints.
var _ dyno.RPCRequester = (*cluster.Node)(nil)

// AttachDyno connects a client (the rendezvous server) to an attached
// one-off dyno wherever the scheduler places it: through this node's
// supervisor, or another node's over internal RPC. It waits for the dyno
// to be placed until ctx ends.
func (a *Agent) AttachDyno(ctx context.Context, dynoID string) (dyno.Stream, error) {
	for {
		snap := a.fsm.Snap()
		d, ok := snap.DynoByID(dynoID)
		switch {
		case ok && d.Node == a.cfg.NodeName:
			return a.dynos.Attach(ctx, dynoID)
		case ok && d.Node != "":
			addr, ok := a.node.RPCAddr(d.Node)
			if !ok {
				return nil, fmt.Errorf("attaching to %s: node %s is not reachable", d.Name, d.Node)
			}
			return dyno.DialAttach(ctx, a.node, addr, dynoID)
		}
		if err := snap.Watch("dynos").WatchCtx(ctx); err != nil {
			return nil, fmt.Errorf("attaching to dyno %s: not placed: %w", dynoID, err)
		}
	}
}
