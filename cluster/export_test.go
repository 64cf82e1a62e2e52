package cluster

// SetReadsReady lets tests put a leader back in the state it is in right
// after an election, before its first barrier.
func SetReadsReady(n *Node, v bool) { n.readsReady.Store(v) }
