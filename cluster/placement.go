package cluster

import "sort"

// Candidate is a server as voter placement sees it.
type Candidate struct {
	ID     string
	Zone   string
	Voter  bool // currently has a vote
	Leader bool
	// Eligible: may hold a vote now. A non-voter is eligible once it has been
	// healthy for the stabilization time; a voter stays eligible until it has
	// been unhealthy for that long (so a blip does not demote it).
	Eligible bool
}

// PlaceVoters chooses which servers should vote: up to target of them,
// spread as evenly as possible over zones (3 voters over 3 zones go 1/1/1, 5
// go 2/2/1), keeping the leader and current voters wherever the spread
// allows, so that a healthy cluster never churns. It is a pure function of
// its input.
func PlaceVoters(servers []Candidate, target int) map[string]bool {
	byZone := map[string][]Candidate{}
	for _, s := range servers {
		if s.Eligible || s.Leader {
			byZone[s.Zone] = append(byZone[s.Zone], s)
		}
	}
	rank := func(c Candidate) int {
		switch {
		case c.Leader:
			return 0
		case c.Voter:
			return 1
		}
		return 2
	}
	zones := make([]string, 0, len(byZone))
	for z, list := range byZone {
		sort.Slice(list, func(i, j int) bool {
			if ri, rj := rank(list[i]), rank(list[j]); ri != rj {
				return ri < rj
			}
			return list[i].ID < list[j].ID
		})
		zones = append(zones, z)
	}
	sort.Strings(zones)

	chosen := map[string]bool{}
	count := map[string]int{}
	for len(chosen) < target {
		best := ""
		for _, z := range zones {
			if count[z] >= len(byZone[z]) {
				continue // zone exhausted
			}
			if best == "" || better(z, best, count, byZone, rank) {
				best = z
			}
		}
		if best == "" {
			break
		}
		chosen[byZone[best][count[best]].ID] = true
		count[best]++
	}
	return chosen
}

// better reports whether zone a should get the next vote before zone b:
// fewer votes so far first, then the zone whose next candidate ranks higher
// (leader, then a current voter), then by name.
func better(a, b string, count map[string]int, byZone map[string][]Candidate, rank func(Candidate) int) bool {
	if count[a] != count[b] {
		return count[a] < count[b]
	}
	ra, rb := rank(byZone[a][count[a]]), rank(byZone[b][count[b]])
	if ra != rb {
		return ra < rb
	}
	return a < b
}

// VoterChanges turns a placement into promotions and demotions.
func VoterChanges(servers []Candidate, target int) (promote, demote []string) {
	want := PlaceVoters(servers, target)
	for _, s := range servers {
		switch {
		case want[s.ID] && !s.Voter:
			promote = append(promote, s.ID)
		case !want[s.ID] && s.Voter && !s.Leader:
			demote = append(demote, s.ID)
		}
	}
	sort.Strings(promote)
	sort.Strings(demote)
	return promote, demote
}
