package agent

import (
	"crypto/sha256"
	"path/filepath"

	"github.com/slipwayhq/slipway/logplex"
)

// startLogs creates the node's log pipeline (a.logs): the Sink that the
// API's platform events, the dyno supervisor and the router write lines
// to. It serves the region-wide history and tails over internal RPC and
// delivers the lines born here to the apps' drains. It stops with the
// agent's context.
func (a *Agent) startLogs(version string) {
	var sessionKey []byte
	if key, err := a.cfg.encryptKey(); err == nil && len(key) > 0 {
		// Every node derives the same key, so any node serves a session
		// another node created.
		sum := sha256.Sum256(append([]byte("slipway-log-sessions/"), key...))
		sessionKey = sum[:]
	}
	a.logs = logplex.New(logplex.Options{
		NodeName: a.cfg.NodeName, Cluster: a.node, State: a.fsm,
		Logger:     a.log.With("component", "logplex"),
		SessionKey: sessionKey, RatesDir: filepath.Join(a.cfg.DataDir, "rates"), Version: version,
	})
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		<-a.ctx.Done()
		a.logs.Close()
	}()
}

// Logs is the node's log pipeline (nil before Start wires it).
func (a *Agent) Logs() *logplex.Pipeline { return a.logs }
