package testbed

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// The Vagrantfile cannot boot VMs here. These tests check what they can:
// its Ruby syntax, and, by loading it with a stand-in for Vagrant
// (testdata/vagrant_stub.rb) that records its configuration, that it
// defines the expected machines with unique addresses, regions and zones,
// and provisions each with install/install.sh and the same flags the
// testbed uses.

func needRuby(t *testing.T) string {
	t.Helper()
	ruby, err := exec.LookPath("ruby")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("ruby is missing (.ci/run installs it)")
		}
		t.Skip("ruby is not installed")
	}
	return ruby
}

func TestVagrantfileSyntax(t *testing.T) {
	ruby := needRuby(t)
	root, _ := ModuleRoot()
	out, err := exec.Command(ruby, "-wc", filepath.Join(root, "Vagrantfile")).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "Syntax OK" {
		t.Fatalf("ruby -wc Vagrantfile: %v\n%s", err, out)
	}
}

// vagrantCall mirrors the stub's JSON.
type vagrantCall struct {
	Method string         `json:"method"`
	Args   []any          `json:"args"`
	Opts   map[string]any `json:"opts"`
	Block  *vagrantRec    `json:"block"`
}

type vagrantRec struct {
	Attrs map[string]json.RawMessage `json:"attrs"`
	Calls []vagrantCall              `json:"calls"`
}

func (r *vagrantRec) sub(name string) *vagrantRec {
	var s vagrantRec
	if raw, ok := r.Attrs[name]; ok {
		_ = json.Unmarshal(raw, &s)
	}
	return &s
}

func (r *vagrantRec) str(name string) string {
	var s any
	_ = json.Unmarshal(r.Attrs[name], &s)
	return fmt.Sprint(s)
}

func (r *vagrantRec) calls(method string) []vagrantCall {
	var out []vagrantCall
	for _, c := range r.Calls {
		if c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

type vagrantMachine struct {
	name, hostname, ip, box string
	memory                  map[string]string // provider -> memory
	script                  string
	args                    []string
}

func (m vagrantMachine) flag(name string) string {
	for i, a := range m.args {
		if a == name && i+1 < len(m.args) {
			return m.args[i+1]
		}
	}
	return ""
}

// loadVagrantfile loads a copy of the Vagrantfile in a fresh directory (it
// creates its secrets next to itself) with the stub and env.
func loadVagrantfile(t *testing.T, env ...string) ([]vagrantMachine, string, error) {
	t.Helper()
	ruby := needRuby(t)
	root, _ := ModuleRoot()
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join(root, "Vagrantfile"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Vagrantfile"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(ruby, filepath.Join(root, "testbed", "testdata", "vagrant_stub.rb"), "Vagrantfile")
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SLIPWAY_VAGRANT_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, dir, fmt.Errorf("%w: %s", err, stderr.String())
	}
	var configs []vagrantRec
	if err := json.Unmarshal(out, &configs); err != nil {
		t.Fatalf("stub output: %v\n%s", err, out)
	}
	if len(configs) != 1 {
		t.Fatalf("want one Vagrant.configure block, got %d", len(configs))
	}
	vm := configs[0].sub("vm")
	var machines []vagrantMachine
	for _, d := range vm.calls("define") {
		m := vagrantMachine{name: fmt.Sprint(d.Args[0]), box: vm.str("box"), memory: map[string]string{}}
		if d.Block == nil {
			t.Fatalf("machine %s has no configuration block", m.name)
		}
		mvm := d.Block.sub("vm")
		m.hostname = mvm.str("hostname")
		if b := mvm.str("box"); b != "<nil>" {
			m.box = b
		}
		for _, n := range mvm.calls("network") {
			if fmt.Sprint(n.Args[0]) == "private_network" {
				m.ip = fmt.Sprint(n.Opts["ip"])
			}
		}
		for _, p := range mvm.calls("provider") {
			if p.Block != nil {
				m.memory[fmt.Sprint(p.Args[0])] = p.Block.str("memory")
			}
		}
		prov := mvm.calls("provision")
		if len(prov) != 1 {
			t.Fatalf("machine %s: want one provisioner, got %d", m.name, len(prov))
		}
		m.script = fmt.Sprint(prov[0].Opts["inline"]) + fmt.Sprint(prov[0].Opts["path"])
		if a, ok := prov[0].Opts["args"].([]any); ok {
			for _, x := range a {
				m.args = append(m.args, fmt.Sprint(x))
			}
		}
		machines = append(machines, m)
	}
	return machines, dir, nil
}

// flagNames lists the --flags of an argument list.
func flagNames(args []string) []string {
	var out []string
	for _, a := range args {
		if strings.HasPrefix(a, "--") {
			out = append(out, a)
		}
	}
	sort.Strings(out)
	return out
}

func TestVagrantfileDefault(t *testing.T) {
	machines, dir, err := loadVagrantfile(t)
	if err != nil {
		t.Fatal(err)
	}
	if len(machines) != 6 {
		t.Fatalf("want 6 machines (2 regions × 3 zones), got %d", len(machines))
	}
	p, _ := NewPlan(DefaultSpec(1), 0)
	want := strings.Join(flagNames(p.InstallArgs(p.Nodes[0], InstallFiles{Binary: "b", KeyFile: "k", TokenFile: "t"})), " ")
	names, ips, places := map[string]bool{}, map[string]bool{}, map[string]bool{}
	regions := map[string][]vagrantMachine{}
	for _, m := range machines {
		if names[m.name] || m.hostname != m.name {
			t.Errorf("machine %s: duplicate name or hostname %s", m.name, m.hostname)
		}
		names[m.name] = true
		addr, err := netip.ParseAddr(m.ip)
		if err != nil || !netip.MustParsePrefix("192.168.56.0/24").Contains(addr) || ips[m.ip] {
			t.Errorf("machine %s: address %q is invalid, outside 192.168.56.0/24 or used twice", m.name, m.ip)
		}
		ips[m.ip] = true
		if m.box != "debian/bookworm64" || m.memory["virtualbox"] != "2048" || m.memory["libvirt"] != "2048" {
			t.Errorf("machine %s: box %s memory %v", m.name, m.box, m.memory)
		}
		if !strings.Contains(m.script, "/vagrant/install/install.sh") {
			t.Errorf("machine %s is not provisioned by install/install.sh: %s", m.name, m.script)
		}
		if got := strings.Join(flagNames(m.args), " "); got != want {
			t.Errorf("machine %s: install.sh flags\n  %s\nthe testbed's\n  %s", m.name, got, want)
		}
		if m.flag("--node-name") != m.name || m.flag("--bind") != m.ip {
			t.Errorf("machine %s: --node-name %s --bind %s", m.name, m.flag("--node-name"), m.flag("--bind"))
		}
		place := m.flag("--region") + "/" + m.flag("--zone")
		if places[place] {
			t.Errorf("two machines in %s", place)
		}
		places[place] = true
		regions[m.flag("--region")] = append(regions[m.flag("--region")], m)
		for _, f := range []string{"--encrypt-key-file", "--admin-token-file", "--binary"} {
			if !strings.HasPrefix(m.flag(f), "/vagrant/") {
				t.Errorf("machine %s: %s %s is not in the synced folder", m.name, f, m.flag(f))
			}
		}
	}
	if len(regions) != 2 {
		t.Fatalf("want 2 regions, got %v", places)
	}
	var wan []string
	for _, ms := range regions {
		zones := map[string]bool{}
		var seeds []string
		for _, m := range ms {
			zones[m.flag("--zone")] = true
			if m.flag("--bootstrap-expect") != "3" {
				t.Errorf("%s: --bootstrap-expect %s, want 3", m.name, m.flag("--bootstrap-expect"))
			}
			seeds = append(seeds, m.ip+":5002")
		}
		if len(zones) != 3 {
			t.Errorf("region %s has zones %v, want 3", ms[0].flag("--region"), zones)
		}
		for _, m := range ms {
			if m.flag("--join") != strings.Join(seeds, ",") {
				t.Errorf("%s joins %s, want its region's nodes %s", m.name, m.flag("--join"), strings.Join(seeds, ","))
			}
		}
		wan = append(wan, ms[0].ip+":5004")
	}
	sort.Strings(wan)
	for _, m := range machines {
		got := strings.Split(m.flag("--join-wan"), ",")
		sort.Strings(got)
		if strings.Join(got, ",") != strings.Join(wan, ",") {
			t.Errorf("%s joins WAN %v, want %v", m.name, got, wan)
		}
	}
	for _, f := range []string{"cluster.key", "admin-token"} {
		if st, err := os.Stat(filepath.Join(dir, ".vagrant-slipway", f)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("secret %s: %v", f, err)
		}
	}
}

func TestVagrantfileOverrides(t *testing.T) {
	machines, _, err := loadVagrantfile(t, "SLIPWAY_VAGRANT_REGIONS=3", "SLIPWAY_VAGRANT_ZONES=2",
		"SLIPWAY_VAGRANT_NODES_PER_ZONE=2", "SLIPWAY_VAGRANT_MEMORY=4096", "SLIPWAY_VAGRANT_BOX=ubuntu/jammy64",
		"SLIPWAY_VAGRANT_NETWORK=10.9.8")
	if err != nil {
		t.Fatal(err)
	}
	if len(machines) != 12 {
		t.Fatalf("want 12 machines (3 regions × 2 zones × 2), got %d", len(machines))
	}
	ips := map[string]bool{}
	perRegion := map[string]int{}
	for _, m := range machines {
		if m.box != "ubuntu/jammy64" || m.memory["virtualbox"] != "4096" || !strings.HasPrefix(m.ip, "10.9.8.") || ips[m.ip] {
			t.Errorf("%s: box %s memory %v address %s", m.name, m.box, m.memory, m.ip)
		}
		ips[m.ip] = true
		r := m.flag("--region")
		perRegion[r]++
		// Four nodes in two zones: the first three bootstrap the region.
		want := "0"
		if perRegion[r] <= 3 {
			want = "3"
		}
		if m.flag("--bootstrap-expect") != want {
			t.Errorf("%s (#%d of %s): --bootstrap-expect %s, want %s", m.name, perRegion[r], r, m.flag("--bootstrap-expect"), want)
		}
	}
	for _, bad := range []string{"SLIPWAY_VAGRANT_REGIONS=0", "SLIPWAY_VAGRANT_MEMORY=lots", "SLIPWAY_VAGRANT_NETWORK=10.9"} {
		if _, _, err := loadVagrantfile(t, bad); err == nil || !strings.Contains(err.Error(), "Vagrantfile:") {
			t.Errorf("%s: want a clear refusal, got %v", bad, err)
		}
	}
}
