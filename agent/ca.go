package agent

import (
	"context"
	"encoding/json"
	"time"

	"github.com/slipwayhq/slipway/fsm"
	"github.com/slipwayhq/slipway/pki"
)

// caMetaKey is where the cluster CA lives in the replicated state. Its key
// is replicated to every node (each issues its own certificates), so it is
// as protected as the data directory.
const caMetaKey = "cluster_ca"

// bootstrapCA runs on the leader: the first leader makes the cluster CA.
func (a *Agent) bootstrapCA(ctx context.Context) {
	if _, ok := a.clusterCA(); ok {
		return
	}
	ca, err := pki.NewCA("Slipway cluster CA ("+a.cfg.Region+")", time.Now())
	if err != nil {
		a.log.Error("creating the cluster CA", "err", err)
		return
	}
	b, _ := json.Marshal(ca)
	for ctx.Err() == nil {
		res, err := a.propose(ctx, fsm.CmdMetaSet, fsm.MetaSet{Key: caMetaKey, Value: b, IfAbsent: true})
		if err == nil && (res.Err == nil || res.Err.Code == fsm.CodeConflict) {
			if res.Err == nil {
				a.log.Info("created the cluster CA")
			}
			return
		}
		a.log.Warn("storing the cluster CA failed, retrying", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// clusterCA returns the cluster CA once the leader has made it.
func (a *Agent) clusterCA() (*pki.CA, bool) {
	m, ok := a.fsm.Snap().Meta(caMetaKey)
	if !ok {
		return nil, false
	}
	var ca pki.CA
	if err := json.Unmarshal(m.Value, &ca); err != nil {
		return nil, false
	}
	return &ca, true
}
