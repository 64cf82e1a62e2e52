// Package testbed runs a Slipway cluster of real hosts on one machine: each
// node is a real `slipway agent` process, installed by install/install.sh
// into its own root directory, running in its own network namespace with
// its own address in 10.213.0.0/16 (a range used only inside the namespaces
// the testbed creates). Nodes of a zone share a bridge; the zones of a
// region are routed by a region router namespace, and regions by a core
// namespace that also links the testbed to the machine's own namespace, so
// tests and people on the machine reach every node's API directly.
//
//	root ns ──veth── core ns ──veth── region ns (one per region) ──bridge per zone──veth── node ns
//
// Faults are injected for real: kill -9 of an agent, a zone going dark
// (its agents killed and its addresses black-holed), partitions (nftables
// rules in the region routers drop the traffic between two sets of nodes,
// silently, as a cut link would, while the machine itself can still reach
// every node), latency and loss (tc netem on the node's interface; loss
// falls back to nftables on kernels built without netem), and restarts.
//
// A testbed takes one of 16 slots (10.213.16s.0/20 each), locked with
// flock(2) under /run/slipway-testbed for as long as it runs, so several
// can run at once. Everything it creates is named with the slot's prefix
// (swtbNN-): Close removes it all, and a new testbed first removes what a
// crashed run left in its slot. Creating one needs root (CAP_NET_ADMIN).
package testbed
