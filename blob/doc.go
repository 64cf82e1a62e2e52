// Package blob is Slipway's content-addressed blob store: slugs (and, later,
// git repositories, build caches and source tarballs) stored as files named
// by their sha256 digest on the nodes' disks, copied between nodes over
// internal RPC, with the nodes holding each blob recorded in Raft
// (fsm.Blob, the blob.replicas and blob.delete commands).
//
// A Put streams its input to a temporary file while hashing it, moves it into
// place, copies it to other nodes until the copies span at least two zones
// (or every zone the region has, when it has fewer), and only then records
// the replicas and returns. Nothing is buffered in memory beyond a copy
// buffer, so a 500 MB slug costs disk, not RAM.
//
// On the region leader, a repair loop copies blobs whose replicas gossip
// declares dead (or that cover too few zones) to other nodes, and a garbage
// collector forgets blobs that no record has referenced for a grace period
// (References says which records refer to blobs). Every node deletes the
// files of blobs the replicated state does not list on it, once they are
// older than the same grace period.
//
// The seams are small interfaces: Cluster (cluster.Node), State (the
// agent's Snap and Submit) and Clock. Memory is an in-memory Blobs for tests
// of code that stores or reads blobs.
package blob
