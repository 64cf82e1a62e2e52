package blob

import (
	"crypto/sha256"
	"encoding/binary"
	"sort"

	"github.com/slipwayhq/slipway/cluster"
)

// goal is how many zones and nodes a blob's copies should span, given the
// alive members of the region.
type goal struct {
	zones, copies int
	aliveZones    int
}

func goalFor(alive map[string]cluster.Member, zones, copies int) goal {
	zs := map[string]bool{}
	for _, m := range alive {
		zs[m.Meta.Zone] = true
	}
	return goal{zones: min(zones, len(zs)), copies: min(copies, len(alive)), aliveZones: len(zs)}
}

// met reports whether holders satisfy the goal.
func (g goal) met(holders map[string]cluster.Member) bool {
	return len(holders) >= g.copies && len(zonesOf(holders)) >= g.zones
}

// nextTarget picks the node to copy a blob to next: while the holders cover
// too few zones, a node in a zone they do not cover; then any other node.
// Among equals the choice is rendezvous hashing on the digest, so that
// blobs spread evenly over nodes and every caller agrees. ok is false when
// no candidate can bring the holders closer to the goal.
func nextTarget(digest string, alive, holders map[string]cluster.Member, skip map[string]bool, g goal) (cluster.Member, bool) {
	covered := map[string]bool{}
	for _, h := range holders {
		covered[h.Meta.Zone] = true
	}
	needZone := len(covered) < g.zones
	var cands []cluster.Member
	for name, m := range alive {
		if _, ok := holders[name]; ok || skip[name] || m.Meta.RPC == "" {
			continue
		}
		if needZone && covered[m.Meta.Zone] {
			continue
		}
		cands = append(cands, m)
	}
	if len(cands) == 0 {
		return cluster.Member{}, false
	}
	sort.Slice(cands, func(i, j int) bool {
		si, sj := score(digest, cands[i].Name), score(digest, cands[j].Name)
		if si != sj {
			return si > sj
		}
		return cands[i].Name < cands[j].Name
	})
	return cands[0], true
}

// score is the rendezvous (highest random weight) hash of a blob and a node.
func score(digest, node string) uint64 {
	sum := sha256.Sum256([]byte(digest + "\x00" + node))
	return binary.BigEndian.Uint64(sum[:8])
}
