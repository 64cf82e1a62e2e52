package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// StateDir holds the slot locks and the state of running testbeds. It is on
// /run (a tmpfs), like the namespaces themselves, so a reboot clears both.
const StateDir = "/run/slipway-testbed"

// command runs a program and returns its output; the error carries the
// command line and its stderr.
func command(ctx context.Context, stdin string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = strings.TrimSpace(out.String())
		}
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
	}
	return out.String(), nil
}

// ip runs `ip -n NS args...` (ns "" is the machine's namespace).
func ip(ctx context.Context, ns string, args ...string) error {
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	_, err := command(ctx, "", "ip", args...)
	return err
}

// inNS runs a program inside a namespace.
func inNS(ctx context.Context, ns, stdin string, argv ...string) (string, error) {
	return command(ctx, stdin, "ip", append([]string{"netns", "exec", ns}, argv...)...)
}

// slotLock is an flock(2)-held slot.
type slotLock struct {
	slot int
	f    *os.File
}

// lockSlot takes the first free slot. A slot is free when nobody holds its
// lock file; whatever still carries its prefix then is a leftover of a
// crashed run.
func lockSlot() (*slotLock, error) {
	if err := os.MkdirAll(StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", StateDir, err)
	}
	for s := 0; s < MaxSlots; s++ {
		l, err := tryLockSlot(s)
		if err != nil {
			return nil, err
		}
		if l != nil {
			return l, nil
		}
	}
	return nil, fmt.Errorf("all %d testbed slots are in use (see %s)", MaxSlots, StateDir)
}

func tryLockSlot(s int) (*slotLock, error) {
	path := filepath.Join(StateDir, fmt.Sprintf("slot-%02d.lock", s))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	_ = f.Truncate(0)
	fmt.Fprintf(f, "%d\n", os.Getpid())
	return &slotLock{slot: s, f: f}, nil
}

func (l *slotLock) release() {
	if l != nil && l.f != nil {
		_ = l.f.Close()
		l.f = nil
	}
}

// CleanLeftovers removes what crashed testbeds left behind in every slot
// that no running testbed holds: processes in their namespaces, the
// namespaces, and their link in this namespace. It returns what it removed.
func CleanLeftovers(ctx context.Context) ([]string, error) {
	var removed []string
	var errs []error
	for s := 0; s < MaxSlots; s++ {
		l, err := tryLockSlot(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if l == nil {
			continue // in use by a running testbed
		}
		r, err := cleanSlot(ctx, s)
		removed = append(removed, r...)
		if err != nil {
			errs = append(errs, err)
		}
		l.release()
	}
	return removed, errors.Join(errs...)
}

// namespaces lists the network namespaces whose names start with p.
func namespaces(ctx context.Context, p string) ([]string, error) {
	out, err := command(ctx, "", "ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], p) {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// killAll kills every process in a namespace and returns their pids.
func killAll(ctx context.Context, ns string) []int {
	out, err := command(ctx, "", "ip", "netns", "pids", ns)
	if err != nil {
		return nil
	}
	var killed []int
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			killed = append(killed, pid)
		}
	}
	return killed
}

// cleanSlot removes everything named with the slot's prefix. The caller
// holds the slot's lock.
func cleanSlot(ctx context.Context, s int) ([]string, error) {
	var removed []string
	var errs []error
	nss, err := namespaces(ctx, prefix(s))
	if err != nil {
		return nil, err
	}
	for _, ns := range nss {
		for _, pid := range killAll(ctx, ns) {
			removed = append(removed, fmt.Sprintf("process %d in %s", pid, ns))
		}
	}
	for _, ns := range nss {
		if err := deleteNS(ctx, ns); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "namespace "+ns)
	}
	if linkExists(ctx, "", uplinkName(s)) {
		if err := ip(ctx, "", "link", "del", uplinkName(s)); err != nil {
			errs = append(errs, err)
		} else {
			removed = append(removed, "link "+uplinkName(s))
		}
	}
	_ = os.Remove(filepath.Join(StateDir, fmt.Sprintf("slot-%02d.json", s)))
	return removed, errors.Join(errs...)
}

// deleteNS deletes a namespace, retrying briefly while killed processes
// still hold it busy.
func deleteNS(ctx context.Context, ns string) error {
	var err error
	for i := 0; i < 20; i++ {
		if err = ip(ctx, "", "netns", "del", ns); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return err
}

func linkExists(ctx context.Context, ns, name string) bool {
	return ip(ctx, ns, "link", "show", "dev", name) == nil
}

// checkRange refuses to start when the machine already routes part of the
// slot's range somewhere else.
func checkRange(ctx context.Context, slot int) error {
	out, err := command(ctx, "", "ip", "-4", "route", "show", "table", "all")
	if err != nil {
		return err
	}
	mine := SlotPrefix(slot)
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		dst := f[0]
		if dst == "default" || dst == "local" || dst == "broadcast" || dst == "unreachable" || dst == "blackhole" || dst == "multicast" {
			if len(f) < 2 || dst == "default" {
				continue
			}
			dst = f[1]
		}
		if !strings.Contains(dst, "/") {
			dst += "/32"
		}
		p, err := netip.ParsePrefix(dst)
		if err != nil || !p.Addr().Is4() {
			continue
		}
		if p.Overlaps(mine) {
			return fmt.Errorf("this machine already routes %s, which overlaps the testbed's range %s (route: %q)", p, mine, strings.TrimSpace(line))
		}
	}
	return nil
}

// nftTable is the filter every region router runs. Every frame a node
// sends enters its region router's bridge, where prerouting sees it:
//   - dark: a powered-off node's address; nothing from or to it passes
//     (output covers frames the router itself routes towards it);
//   - cut: (source, destination) pairs of a partition, both directions
//     listed, dropped silently at the sender's side;
//   - loss: per-node random-drop rules when tc netem is unavailable.
const nftTable = `table bridge swtb {
	set dark { type ipv4_addr; }
	set cut { type ipv4_addr . ipv4_addr; }
	chain loss { }
	chain pre {
		type filter hook prerouting priority -200; policy accept;
		ip saddr @dark drop
		ip daddr @dark drop
		ip saddr . ip daddr @cut drop
		jump loss
	}
	chain out {
		type filter hook output priority -200; policy accept;
		ip daddr @dark drop
	}
}
`

// buildNetwork creates the slot's namespaces, links, bridges and filters.
func buildNetwork(ctx context.Context, p *Plan) error {
	s := p.Slot
	core := coreNS(s)
	steps := [][]string{}
	add := func(ns string, args ...string) { steps = append(steps, append([]string{ns}, args...)) }
	run := func() error {
		for _, st := range steps {
			if err := ip(ctx, st[0], st[1:]...); err != nil {
				return err
			}
		}
		steps = steps[:0]
		return nil
	}
	newNS := func(ns string, forward bool) error {
		if err := ip(ctx, "", "netns", "add", ns); err != nil {
			return err
		}
		if err := ip(ctx, ns, "link", "set", "dev", "lo", "up"); err != nil {
			return err
		}
		if forward {
			if _, err := inNS(ctx, ns, "", "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"); err != nil {
				return err
			}
		}
		return nil
	}

	if err := newNS(core, true); err != nil {
		return err
	}
	host, coreUp := uplinkAddrs(s)
	add("", "link", "add", uplinkName(s), "type", "veth", "peer", "name", "host", "netns", core)
	add("", "addr", "add", host.String()+"/30", "dev", uplinkName(s))
	add("", "link", "set", "dev", uplinkName(s), "up")
	add(core, "addr", "add", coreUp.String()+"/30", "dev", "host")
	add(core, "link", "set", "dev", "host", "up")
	add("", "route", "add", SlotPrefix(s).String(), "via", coreUp.String(), "dev", uplinkName(s))
	if err := run(); err != nil {
		return err
	}

	for ri, region := range p.Regions() {
		rns := regionNS(s, region)
		if err := newNS(rns, true); err != nil {
			return err
		}
		coreEnd, regionEnd := wanAddrs(s, ri)
		link := "r-" + region
		add(core, "link", "add", link, "type", "veth", "peer", "name", "wan", "netns", rns)
		add(core, "addr", "add", coreEnd.String()+"/30", "dev", link)
		add(core, "link", "set", "dev", link, "up")
		add(rns, "addr", "add", regionEnd.String()+"/30", "dev", "wan")
		add(rns, "link", "set", "dev", "wan", "up")
		add(rns, "route", "add", "default", "via", coreEnd.String())
		for _, z := range p.Zones {
			if z.Region != region {
				continue
			}
			br := "z-" + z.Name
			add(rns, "link", "add", br, "type", "bridge")
			add(rns, "addr", "add", fmt.Sprintf("%s/%d", z.Gateway, z.Subnet.Bits()), "dev", br)
			add(rns, "link", "set", "dev", br, "up")
			add(core, "route", "add", z.Subnet.String(), "via", regionEnd.String())
		}
		if err := run(); err != nil {
			return err
		}
		if _, err := inNS(ctx, rns, nftTable, "nft", "-f", "-"); err != nil {
			return fmt.Errorf("loading the region router's filter (is nftables installed?): %w", err)
		}
	}

	for _, n := range p.Nodes {
		nns := nodeNS(s, n.Name)
		if err := newNS(nns, false); err != nil {
			return err
		}
		rns := regionNS(s, n.Region)
		z := p.Zones[n.zoneIndex]
		veth := "n-" + n.Name
		add(rns, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", nns)
		add(rns, "link", "set", "dev", veth, "master", "z-"+z.Name)
		add(rns, "link", "set", "dev", veth, "up")
		add(nns, "addr", "add", fmt.Sprintf("%s/%d", n.Addr, z.Subnet.Bits()), "dev", "eth0")
		add(nns, "link", "set", "dev", "eth0", "up")
		add(nns, "route", "add", "default", "via", z.Gateway.String())
		if err := run(); err != nil {
			return err
		}
	}
	return nil
}
