package cluster

import (
	"fmt"
	"sort"
	"strings"
	"testing"
)

// parse "a1:L a2 b1:V b2:x" — zone is the first letter; L leader, V voter,
// x ineligible, Vx an ineligible voter.
func parse(spec string) []Candidate {
	var out []Candidate
	for _, f := range strings.Fields(spec) {
		id, flags, _ := strings.Cut(f, ":")
		c := Candidate{ID: id, Zone: id[:1], Eligible: !strings.Contains(flags, "x")}
		c.Leader = strings.Contains(flags, "L")
		c.Voter = c.Leader || strings.Contains(flags, "V")
		out = append(out, c)
	}
	return out
}

func zonesOf(chosen map[string]bool) string {
	count := map[string]int{}
	for id := range chosen {
		count[id[:1]]++
	}
	var parts []string
	for z, n := range count {
		parts = append(parts, fmt.Sprintf("%s%d", z, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func TestPlaceVotersSpreadsOverZones(t *testing.T) {
	cases := []struct {
		spec   string
		target int
		zones  string
	}{
		{"a1 b1 c1", 3, "a1 b1 c1"},
		{"a1 a2 b1 b2 c1 c2", 3, "a1 b1 c1"},
		{"a1 a2 b1 b2 c1 c2", 5, "a2 b2 c1"},
		{"a1 a2 a3 b1", 3, "a2 b1"},
		{"a1 a2 a3", 3, "a3"},
		{"a1 b1", 3, "a1 b1"},
		{"a1 a2 b1 b2 c1 c2 d1", 5, "a2 b1 c1 d1"},
		{"a1", 1, "a1"},
	}
	for _, c := range cases {
		got := PlaceVoters(parse(c.spec), c.target)
		if z := zonesOf(got); z != c.zones {
			t.Errorf("%q target %d: zones %s, want %s (%v)", c.spec, c.target, z, c.zones, got)
		}
	}
}

func TestPlaceVotersKeepsLeaderAndCurrentVoters(t *testing.T) {
	got := PlaceVoters(parse("a1 a2:L b1 b2:V c1 c2:V"), 3)
	for _, id := range []string{"a2", "b2", "c2"} {
		if !got[id] {
			t.Fatalf("%s lost its vote: %v", id, got)
		}
	}
	p, d := VoterChanges(parse("a1 a2:L b1 b2:V c1 c2:V"), 3)
	if len(p) != 0 || len(d) != 0 {
		t.Fatalf("stable cluster churns: promote %v demote %v", p, d)
	}
}

func TestDeadVoterReplacedFromSameZone(t *testing.T) {
	p, d := VoterChanges(parse("a1:Vx a2 b1:L b2 c1:V c2"), 3)
	if fmt.Sprint(p) != "[a2]" || fmt.Sprint(d) != "[a1]" {
		t.Fatalf("promote %v demote %v, want [a2] [a1]", p, d)
	}
}

func TestDeadVoterReplacedFromAnotherZoneWhenItsZoneIsEmpty(t *testing.T) {
	p, d := VoterChanges(parse("a1:Vx b1:L b2 c1:V c2"), 3)
	if len(p) != 1 || len(d) != 1 || d[0] != "a1" || p[0][:1] == "a" {
		t.Fatalf("promote %v demote %v", p, d)
	}
}

func TestNewZoneRebalances(t *testing.T) {
	p, d := VoterChanges(parse("a1:L a2:V b1:V c1"), 3)
	if fmt.Sprint(p) != "[c1]" || fmt.Sprint(d) != "[a2]" {
		t.Fatalf("promote %v demote %v", p, d)
	}
}

func TestIneligibleNonVotersAreNotPromoted(t *testing.T) {
	p, _ := VoterChanges(parse("a1:L b1:x c1:x"), 3)
	if len(p) != 0 {
		t.Fatalf("promoted unstable servers %v", p)
	}
}

func TestLeaderIsNeverDemoted(t *testing.T) {
	_, d := VoterChanges(parse("a1:L a2:V a3:V b1 c1"), 3)
	for _, id := range d {
		if id == "a1" {
			t.Fatalf("leader demoted")
		}
	}
}
