package testbed

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// Network is the address range every testbed lives in. Nothing outside the
// testbed's own namespaces uses it, except one route per running testbed
// in the machine's namespace.
const Network = "10.213.0.0/16"

// MaxSlots is how many testbeds can run on one machine at once.
const MaxSlots = 16

// maxZones is how many zones one testbed can have (one /24 each).
const maxZones = 15

// Region describes one region of a testbed.
type Region struct {
	Name string
	// Zones are the region's zone names (default a, b, c).
	Zones []string
	// NodesPerZone is how many nodes each zone has (default 1).
	NodesPerZone int
}

// Spec is a testbed's shape.
type Spec struct {
	Regions []Region
	// Domain is the cluster domain (default testbed.internal).
	Domain string
}

// DefaultSpec is one region "local" with zones a, b and c and perZone
// nodes in each.
func DefaultSpec(perZone int) Spec {
	return Spec{Regions: []Region{{Name: "local", Zones: []string{"a", "b", "c"}, NodesPerZone: perZone}}}
}

// NodeSpec is one node of a Plan.
type NodeSpec struct {
	Name   string
	Region string
	Zone   string
	// Addr is the node's address; every port uses the default number.
	Addr netip.Addr
	// Zone index across the testbed (0-based), which picks the zone subnet.
	zoneIndex int
	// BootstrapExpect is 3 (or fewer in a smaller region) on the region's
	// first nodes, which form its Raft cluster, and 0 on the others.
	BootstrapExpect int
	// Join is the gossip addresses (host:port) of the region's first
	// nodes; JoinWAN those of the first node of every region.
	Join    []string
	JoinWAN []string
}

// Plan is a testbed's nodes and addresses, computed from a Spec and a slot.
type Plan struct {
	Slot   int
	Domain string
	Nodes  []NodeSpec
	// Zones lists each zone's region, name, subnet and gateway, in index order.
	Zones []ZoneSpec
}

// ZoneSpec is one zone's network.
type ZoneSpec struct {
	Region  string
	Name    string
	Subnet  netip.Prefix
	Gateway netip.Addr
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// GossipPort, WANPort, APIPort and RouterPort are the default ports the
// testbed's nodes use.
const (
	GossipPort = 5002
	WANPort    = 5004
	APIPort    = 5000
	// RouterPort is where every node's router serves apps over HTTP.
	RouterPort = 80
)

// slotBase is the first address of a slot's /20.
func slotBase(slot int) [4]byte { return [4]byte{10, 213, byte(16 * slot), 0} }

// SlotPrefix is a slot's address range.
func SlotPrefix(slot int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4(slotBase(slot)), 20)
}

// uplink addresses: the machine's end and the core's end of the link
// between them (10.213.16s.0/30).
func uplinkAddrs(slot int) (host, core netip.Addr) {
	b := slotBase(slot)
	return netip.AddrFrom4([4]byte{b[0], b[1], b[2], 1}), netip.AddrFrom4([4]byte{b[0], b[1], b[2], 2})
}

// wanAddrs: region r's link to the core (10.213.16s.(4r+4)/30).
func wanAddrs(slot, r int) (core, region netip.Addr) {
	b := slotBase(slot)
	x := byte(4*r + 4)
	return netip.AddrFrom4([4]byte{b[0], b[1], b[2], x + 1}), netip.AddrFrom4([4]byte{b[0], b[1], b[2], x + 2})
}

// NewPlan lays out a spec in a slot: zone k gets 10.213.(16s+1+k).0/24 with
// gateway .1, and its nodes .11, .12, ... Nodes are named n1, n2, ... in
// region order, and within a region zone by zone in turn (n1 in zone a, n2
// in b, n3 in c, n4 in a, ...), so the first three nodes of a region are in
// three different zones; they get bootstrap_expect and are the join list.
func NewPlan(spec Spec, slot int) (*Plan, error) {
	if slot < 0 || slot >= MaxSlots {
		return nil, fmt.Errorf("slot %d is out of range 0-%d", slot, MaxSlots-1)
	}
	if len(spec.Regions) == 0 {
		spec = DefaultSpec(1)
	}
	p := &Plan{Slot: slot, Domain: spec.Domain}
	if p.Domain == "" {
		p.Domain = "testbed.internal"
	}
	if len(spec.Regions) > 60 {
		return nil, fmt.Errorf("at most 60 regions")
	}
	seenRegion := map[string]bool{}
	n := 0
	var wan []string
	for ri, r := range spec.Regions {
		if !nameRE.MatchString(r.Name) || len(r.Name) > 12 {
			return nil, fmt.Errorf("region name %q: use at most 12 lower-case letters, digits and '-'", r.Name)
		}
		if seenRegion[r.Name] {
			return nil, fmt.Errorf("region %q is listed twice", r.Name)
		}
		seenRegion[r.Name] = true
		zones := r.Zones
		if len(zones) == 0 {
			zones = []string{"a", "b", "c"}
		}
		per := r.NodesPerZone
		if per == 0 {
			per = 1
		}
		if per < 0 || per > 200 {
			return nil, fmt.Errorf("region %s: nodes per zone %d is out of range 1-200", r.Name, per)
		}
		first := len(p.Zones)
		seenZone := map[string]bool{}
		for _, z := range zones {
			if !nameRE.MatchString(z) || len(z) > 12 {
				return nil, fmt.Errorf("zone name %q: use at most 12 lower-case letters, digits and '-'", z)
			}
			if seenZone[z] {
				return nil, fmt.Errorf("region %s: zone %q is listed twice", r.Name, z)
			}
			seenZone[z] = true
			k := len(p.Zones)
			if k >= maxZones {
				return nil, fmt.Errorf("a testbed has at most %d zones", maxZones)
			}
			b := slotBase(slot)
			third := b[2] + byte(1+k)
			p.Zones = append(p.Zones, ZoneSpec{Region: r.Name, Name: z,
				Subnet:  netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 213, third, 0}), 24),
				Gateway: netip.AddrFrom4([4]byte{10, 213, third, 1})})
		}
		var region []NodeSpec
		for i := 0; i < per; i++ {
			for zi := range zones {
				n++
				k := first + zi
				zs := p.Zones[k]
				b := zs.Subnet.Addr().As4()
				b[3] = byte(11 + i)
				region = append(region, NodeSpec{Name: fmt.Sprintf("n%d", n), Region: r.Name, Zone: zs.Name,
					Addr: netip.AddrFrom4(b), zoneIndex: k})
			}
		}
		expect := min(3, len(region))
		var join []string
		for i := 0; i < expect; i++ {
			join = append(join, fmt.Sprintf("%s:%d", region[i].Addr, GossipPort))
		}
		for i := range region {
			region[i].Join = join
			if i < expect {
				region[i].BootstrapExpect = expect
			}
		}
		wan = append(wan, fmt.Sprintf("%s:%d", region[0].Addr, WANPort))
		p.Nodes = append(p.Nodes, region...)
		_ = ri
	}
	for i := range p.Nodes {
		p.Nodes[i].JoinWAN = wan
	}
	return p, nil
}

// Node returns the named node's spec.
func (p *Plan) Node(name string) (NodeSpec, bool) {
	for _, n := range p.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return NodeSpec{}, false
}

// Regions lists the plan's region names in order.
func (p *Plan) Regions() []string {
	var out []string
	for _, z := range p.Zones {
		if len(out) == 0 || out[len(out)-1] != z.Region {
			out = append(out, z.Region)
		}
	}
	return out
}

// InstallFiles are the cluster-wide files a node's install needs.
type InstallFiles struct {
	Binary    string // the slipway binary
	KeyFile   string // base64 gossip/RPC key, the same for every node
	TokenFile string // the initial admin token
}

// InstallArgs are the install/install.sh arguments for a node, without the
// testbed-only --root and --no-systemd. The Vagrantfile passes the same
// flags (its test checks that).
func (p *Plan) InstallArgs(n NodeSpec, f InstallFiles) []string {
	return []string{
		"--binary", f.Binary,
		"--node-name", n.Name,
		"--region", n.Region,
		"--zone", n.Zone,
		"--bind", n.Addr.String(),
		"--join", strings.Join(n.Join, ","),
		"--join-wan", strings.Join(n.JoinWAN, ","),
		"--bootstrap-expect", fmt.Sprint(n.BootstrapExpect),
		"--domain", p.Domain,
		"--encrypt-key-file", f.KeyFile,
		"--admin-token-file", f.TokenFile,
	}
}

// Names used for the slot's namespaces and links. Interface names are at
// most 15 bytes; those inside a namespace only need to be unique there.
func prefix(slot int) string             { return fmt.Sprintf("swtb%02d-", slot) }
func coreNS(slot int) string             { return prefix(slot) + "core" }
func regionNS(slot int, r string) string { return prefix(slot) + "r-" + r }
func nodeNS(slot int, n string) string   { return prefix(slot) + "n-" + n }
func uplinkName(slot int) string         { return fmt.Sprintf("swtb%02dup", slot) }
