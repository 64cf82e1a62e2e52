package testbed

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// ErrNoNetem is returned when latency is asked for on a kernel built
// without the netem queueing discipline (CONFIG_NET_SCH_NETEM).
var ErrNoNetem = errors.New("this kernel has no tc netem (CONFIG_NET_SCH_NETEM): latency cannot be added; loss alone falls back to nftables")

// nft runs an nft command in a region router.
func (tb *Testbed) nft(ctx context.Context, region string, args ...string) error {
	_, err := inNS(ctx, regionNS(tb.plan.Slot, region), "", append([]string{"nft"}, args...)...)
	return err
}

// PowerOff makes nodes lose power, all at once: their addresses stop
// answering (every frame to or from them is dropped, so peers see
// timeouts, not refused connections), and their agents and every other
// process in their namespaces (dynos) are killed with SIGKILL.
func (tb *Testbed) PowerOff(ctx context.Context, names ...string) error {
	for _, name := range names {
		n, ok := tb.plan.Node(name)
		if !ok {
			return fmt.Errorf("no node %q", name)
		}
		if err := tb.nft(ctx, n.Region, "add", "element", "bridge", "swtb", "dark", "{", n.Addr.String(), "}"); err != nil {
			return err
		}
		tb.mu.Lock()
		tb.dark[name] = true
		tb.mu.Unlock()
	}
	var running []string
	for _, name := range names {
		if nd, _ := tb.Node(name); nd.Running {
			running = append(running, name)
		}
	}
	if len(running) > 0 {
		if err := tb.KillNodes(running...); err != nil {
			return err
		}
	}
	// Every process left in the namespaces (dynos outlive a killed agent
	// by design): again until none is left, in case one forked meanwhile.
	for _, name := range names {
		ns := nodeNS(tb.plan.Slot, name)
		for i := 0; i < 50 && len(killAll(ctx, ns)) > 0; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	}
	tb.logf("powered off %s", strings.Join(names, ", "))
	return nil
}

// PowerOn gives powered-off nodes their network back and starts them.
func (tb *Testbed) PowerOn(ctx context.Context, names ...string) error {
	for _, name := range names {
		n, ok := tb.plan.Node(name)
		if !ok {
			return fmt.Errorf("no node %q", name)
		}
		tb.mu.Lock()
		wasDark := tb.dark[name]
		delete(tb.dark, name)
		tb.mu.Unlock()
		if wasDark {
			if err := tb.nft(ctx, n.Region, "delete", "element", "bridge", "swtb", "dark", "{", n.Addr.String(), "}"); err != nil {
				return err
			}
		}
		if nd, _ := tb.Node(name); !nd.Running {
			if err := tb.StartNode(name); err != nil {
				return err
			}
		}
	}
	tb.logf("powered on %s", strings.Join(names, ", "))
	return nil
}

// KillZone takes a whole zone down, as a power or network failure of the
// zone would: PowerOff of every node in it.
func (tb *Testbed) KillZone(ctx context.Context, region, zone string) error {
	names := tb.ZoneNodes(region, zone)
	if len(names) == 0 {
		return fmt.Errorf("no zone %s/%s", region, zone)
	}
	return tb.PowerOff(ctx, names...)
}

// ReviveZone powers a zone's nodes on again.
func (tb *Testbed) ReviveZone(ctx context.Context, region, zone string) error {
	names := tb.ZoneNodes(region, zone)
	if len(names) == 0 {
		return fmt.Errorf("no zone %s/%s", region, zone)
	}
	return tb.PowerOn(ctx, names...)
}

// Partition cuts the network between groups of nodes: no packet passes
// between nodes of different groups, in either direction, and none is
// answered (the region routers drop them silently, as a cut link would).
// Within a group, and between any node and this machine, traffic flows.
// Nodes in no group are not affected. Cuts add up until Heal.
func (tb *Testbed) Partition(ctx context.Context, groups ...[]string) error {
	var pairs [][2]string
	for i, g := range groups {
		for _, a := range g {
			if _, ok := tb.plan.Node(a); !ok {
				return fmt.Errorf("no node %q", a)
			}
			for j, h := range groups {
				if i == j {
					continue
				}
				for _, b := range h {
					if a != b {
						pairs = append(pairs, [2]string{a, b})
					}
				}
			}
		}
	}
	if len(pairs) == 0 {
		return errors.New("partition: give at least two non-empty groups")
	}
	var elems []string
	for _, p := range pairs {
		a, _ := tb.plan.Node(p[0])
		b, _ := tb.plan.Node(p[1])
		elems = append(elems, a.Addr.String()+" . "+b.Addr.String())
	}
	// Every router gets every pair: a frame is dropped where it enters
	// the network, at its sender's region router.
	for _, region := range tb.plan.Regions() {
		if err := tb.nft(ctx, region, "add", "element", "bridge", "swtb", "cut", "{ "+strings.Join(elems, ", ")+" }"); err != nil {
			return err
		}
	}
	tb.mu.Lock()
	tb.cut = append(tb.cut, pairs...)
	tb.mu.Unlock()
	var desc []string
	for _, g := range groups {
		desc = append(desc, "{"+strings.Join(g, " ")+"}")
	}
	tb.logf("partitioned %s", strings.Join(desc, " | "))
	return nil
}

// Isolate cuts the given nodes off from every other node (they still
// reach each other).
func (tb *Testbed) Isolate(ctx context.Context, names ...string) error {
	var rest []string
	for _, n := range tb.plan.Nodes {
		if !slices.Contains(names, n.Name) {
			rest = append(rest, n.Name)
		}
	}
	return tb.Partition(ctx, names, rest)
}

// IsolateZone cuts a zone off from the rest of the testbed.
func (tb *Testbed) IsolateZone(ctx context.Context, region, zone string) error {
	names := tb.ZoneNodes(region, zone)
	if len(names) == 0 {
		return fmt.Errorf("no zone %s/%s", region, zone)
	}
	return tb.Isolate(ctx, names...)
}

// Heal removes every partition.
func (tb *Testbed) Heal(ctx context.Context) error {
	for _, region := range tb.plan.Regions() {
		if err := tb.nft(ctx, region, "flush", "set", "bridge", "swtb", "cut"); err != nil {
			return err
		}
	}
	tb.mu.Lock()
	tb.cut = nil
	tb.mu.Unlock()
	tb.logf("healed every partition")
	return nil
}

// Cut lists the node pairs that cannot reach each other.
func (tb *Testbed) Cut() [][2]string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([][2]string(nil), tb.cut...)
}

// Impairment degrades what a node sends.
type Impairment struct {
	Delay  time.Duration // added to every packet
	Jitter time.Duration // random variation of Delay
	// Loss is the percentage (0-100) of packets dropped.
	Loss float64
	// viaNFT: loss applied by nftables because netem is unavailable.
	viaNFT bool
}

func (im Impairment) String() string {
	var parts []string
	if im.Delay > 0 {
		s := "delay " + im.Delay.String()
		if im.Jitter > 0 {
			s += "±" + im.Jitter.String()
		}
		parts = append(parts, s)
	}
	if im.Loss > 0 {
		parts = append(parts, fmt.Sprintf("loss %g%%", im.Loss))
	}
	if im.viaNFT {
		parts = append(parts, "(nftables)")
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

func (im Impairment) netemArgs() []string {
	args := []string{"netem"}
	if im.Delay > 0 || im.Jitter > 0 {
		args = append(args, "delay", fmt.Sprintf("%dus", im.Delay.Microseconds()))
		if im.Jitter > 0 {
			args = append(args, fmt.Sprintf("%dus", im.Jitter.Microseconds()))
		}
	}
	if im.Loss > 0 {
		args = append(args, "loss", fmt.Sprintf("%g%%", im.Loss))
	}
	return args
}

func isNoNetem(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "qdisc kind is unknown") || strings.Contains(err.Error(), "Unknown qdisc"))
}

// Impair adds latency and/or loss to everything a node sends, with tc
// netem on its interface. On a kernel without netem, loss alone is applied
// with nftables in its region router (random drops of its packets), and
// latency fails with ErrNoNetem.
func (tb *Testbed) Impair(ctx context.Context, name string, im Impairment) error {
	n, ok := tb.plan.Node(name)
	if !ok {
		return fmt.Errorf("no node %q", name)
	}
	if im.Loss < 0 || im.Loss > 100 || im.Delay < 0 || im.Jitter < 0 {
		return fmt.Errorf("impairment %s is out of range (loss 0-100%%, non-negative delays)", im)
	}
	if err := tb.ClearImpairment(ctx, name); err != nil {
		return err
	}
	if im.Delay == 0 && im.Jitter == 0 && im.Loss == 0 {
		return nil
	}
	ns := nodeNS(tb.plan.Slot, name)
	_, err := inNS(ctx, ns, "", append([]string{"tc", "qdisc", "replace", "dev", "eth0", "root"}, im.netemArgs()...)...)
	switch {
	case err == nil:
	case isNoNetem(err) && im.Delay == 0 && im.Jitter == 0:
		im.viaNFT = true
		if err := tb.nft(ctx, n.Region, lossRule(name, n.Addr.String(), im.Loss)...); err != nil {
			return err
		}
	case isNoNetem(err):
		return fmt.Errorf("impairing %s: %w", name, ErrNoNetem)
	default:
		return fmt.Errorf("impairing %s: %w", name, err)
	}
	tb.mu.Lock()
	tb.impaired[name] = im
	tb.mu.Unlock()
	tb.logf("impaired %s: %s", name, im)
	return nil
}

// ImpairZone impairs every node of a zone.
func (tb *Testbed) ImpairZone(ctx context.Context, region, zone string, im Impairment) error {
	names := tb.ZoneNodes(region, zone)
	if len(names) == 0 {
		return fmt.Errorf("no zone %s/%s", region, zone)
	}
	for _, n := range names {
		if err := tb.Impair(ctx, n, im); err != nil {
			return err
		}
	}
	return nil
}

// ClearImpairment removes a node's latency and loss.
func (tb *Testbed) ClearImpairment(ctx context.Context, name string) error {
	n, ok := tb.plan.Node(name)
	if !ok {
		return fmt.Errorf("no node %q", name)
	}
	tb.mu.Lock()
	im, had := tb.impaired[name]
	delete(tb.impaired, name)
	tb.mu.Unlock()
	if !had {
		return nil
	}
	if !im.viaNFT {
		_, err := inNS(ctx, nodeNS(tb.plan.Slot, name), "", "tc", "qdisc", "del", "dev", "eth0", "root")
		return err
	}
	// Rebuild the region's loss chain without this node's rule.
	if err := tb.nft(ctx, n.Region, "flush", "chain", "bridge", "swtb", "loss"); err != nil {
		return err
	}
	tb.mu.Lock()
	rest := map[string]Impairment{}
	for k, v := range tb.impaired {
		rest[k] = v
	}
	tb.mu.Unlock()
	for _, other := range slices.Sorted(maps.Keys(rest)) {
		o, _ := tb.plan.Node(other)
		if o.Region == n.Region && rest[other].viaNFT {
			if err := tb.nft(ctx, n.Region, lossRule(other, o.Addr.String(), rest[other].Loss)...); err != nil {
				return err
			}
		}
	}
	return nil
}

// lossRule is the nft command dropping loss percent of what addr sends, in
// steps of 0.01%.
func lossRule(name, addr string, loss float64) []string {
	args := []string{"add", "rule", "bridge", "swtb", "loss", "ip", "saddr", addr}
	if bp := int(loss * 100); bp < 10000 {
		args = append(args, "numgen", "random", "mod", "10000", "<", fmt.Sprint(bp))
	}
	return append(args, "drop", "comment", `"`+name+`"`)
}

// ImpairRegion adds latency and/or loss to a region's link to the other
// regions, both ways (cross-region latency). It needs tc netem.
func (tb *Testbed) ImpairRegion(ctx context.Context, region string, im Impairment) error {
	found := false
	for _, r := range tb.plan.Regions() {
		found = found || r == region
	}
	if !found {
		return fmt.Errorf("no region %q", region)
	}
	for _, end := range [][2]string{{coreNS(tb.plan.Slot), "r-" + region}, {regionNS(tb.plan.Slot, region), "wan"}} {
		var err error
		if im.Delay == 0 && im.Jitter == 0 && im.Loss == 0 {
			// Nothing to remove is fine.
			_, _ = inNS(ctx, end[0], "", "tc", "qdisc", "del", "dev", end[1], "root")
			continue
		} else {
			_, err = inNS(ctx, end[0], "", append([]string{"tc", "qdisc", "replace", "dev", end[1], "root"}, im.netemArgs()...)...)
		}
		if isNoNetem(err) {
			return fmt.Errorf("impairing region %s: %w", region, ErrNoNetem)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
