package agent

import (
	"crypto/sha256"
	"path/filepath"

	"github.com/slipwayhq/slipway/blob"
)

// BlobConfig tunes the node's blob store: the "blobs" section of the
// config file (durations in Go syntax). Zero values take blob's defaults.
type BlobConfig struct {
	// GCGrace is how long a blob nothing refers to is kept (default 1h).
	GCGrace Duration `json:"gc_grace"`
	// GCInterval is how often garbage is collected (default 1m).
	GCInterval Duration `json:"gc_interval"`
	// RepairInterval is how often the leader checks replicas (default 15s).
	RepairInterval Duration `json:"repair_interval"`
	// MinFreeMB is the disk space a node keeps free when it accepts copies
	// from other nodes (default 256; -1 disables the check).
	MinFreeMB int64 `json:"min_free_mb"`
}

// startBlobs opens the node's blob store in <data_dir>/blobs, mounts its
// internal RPC handlers and leader hook, and runs its local collector
// until the agent stops.
func (a *Agent) startBlobs() error {
	bc := a.cfg.Blobs
	minFree := bc.MinFreeMB << 20
	if bc.MinFreeMB < 0 {
		minFree = -1
	}
	s, err := blob.New(blob.Config{Dir: filepath.Join(a.cfg.DataDir, "blobs"), GCGrace: bc.GCGrace.Duration,
		GCInterval: bc.GCInterval.Duration, RepairInterval: bc.RepairInterval.Duration, MinFreeBytes: minFree,
		Logger: a.log.With("component", "blob")}, a.node, a)
	if err != nil {
		return err
	}
	a.blobs = s
	a.wg.Add(1)
	go func() { defer a.wg.Done(); s.Run(a.ctx) }()
	return nil
}

// blobURLKey derives the key that signs slug blob URLs from the cluster's
// encrypt key, so every node accepts the URLs any node hands out (nil
// without an encrypt key: each node then makes its own).
func blobURLKey(encryptKey []byte) []byte {
	if len(encryptKey) == 0 {
		return nil
	}
	sum := sha256.Sum256(append([]byte("slipway-blob-url/"), encryptKey...))
	return sum[:]
}
