package agent

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/slipwayhq/slipway/cluster"
	"github.com/slipwayhq/slipway/logplex"
	"github.com/slipwayhq/slipway/router"
)

// startRouter starts the node's HTTP routing mesh on the router ports
// (HTTP and HTTPS; a port of 0 is not served). It follows the replicated
// state and gossip until the agent stops. A listener that cannot be opened
// is logged as an error: the node still serves the API, but not apps.
func (a *Agent) startRouter(network cluster.Network) {
	var sink logplex.Sink = logplex.SlogSink{Log: a.log.With("component", "router")}
	if a.logs != nil {
		sink = a.logs
	}
	// Until this node's replica has caught up once (a linearizable read
	// succeeded), the router answers unknown hosts with 503, not 404.
	var synced atomic.Bool
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		for a.ctx.Err() == nil {
			ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
			err := a.node.WaitForLinearizable(ctx)
			cancel()
			if err == nil {
				synced.Store(true)
				return
			}
			select {
			case <-a.ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	rt, err := router.New(router.Options{
		Region: a.cfg.Region, Zone: a.cfg.Zone, Domain: a.cfg.Domain,
		State: a.fsm, Members: a.node, Sink: sink, Logger: a.log.With("component", "router"),
		Synced: synced.Load,
	})
	if err != nil {
		a.log.Error("router not started", "err", err)
		return
	}
	serve := func(port int, name string, f func(net.Listener) error) {
		if port <= 0 {
			return
		}
		addr := net.JoinHostPort(a.cfg.BindAddr, strconv.Itoa(port))
		ln, err := listen(network, addr)
		if err != nil {
			a.log.Error("router: cannot listen; this node will not route apps", "listener", name, "addr", addr, "err", err)
			return
		}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			if err := f(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.log.Error("router listener stopped", "listener", name, "err", err)
			}
		}()
	}
	serve(a.cfg.Ports.Router, "http", rt.Serve)
	serve(a.cfg.Ports.RouterTLS, "https", rt.ServeTLS)
	a.wg.Add(2)
	go func() { defer a.wg.Done(); rt.Run(a.ctx) }()
	go func() {
		defer a.wg.Done()
		<-a.ctx.Done()
		// Requests in flight get a few seconds to finish.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := rt.Shutdown(ctx); err != nil {
			_ = rt.Close()
		}
	}()
	a.log.Info("router started", "http", a.cfg.Ports.Router, "https", a.cfg.Ports.RouterTLS, "domain", a.cfg.Domain)
}
