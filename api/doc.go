// Package api is a node's admin HTTP API: the Heroku Platform API v3
// (account, apps, config vars, releases, formation, domains, app features,
// regions, stacks), the cluster admin endpoints under /cluster, /metrics
// and /health.
//
// Reads are served from the node's local replica of the state (stale by at
// most the replication lag; a request with the header
// "X-Slipway-Consistency: linearizable" waits until the replica has every
// write committed before it). Writes are validated here, turned into FSM
// commands, replicated through Raft (forwarded to the leader by the cluster
// layer) and answered once this node's replica reflects them, so a client
// reads its own writes from any node.
package api
