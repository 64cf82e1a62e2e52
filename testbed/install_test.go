package testbed

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/slipwayhq/slipway/agent"
)

func installScript(t *testing.T) string {
	t.Helper()
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "install", "install.sh")
}

// runInstall runs install.sh with args and returns its combined output.
func runInstall(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{installScript(t)}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestInstallScriptsShellcheck(t *testing.T) {
	if _, err := exec.LookPath("shellcheck"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("shellcheck is missing (.ci/run installs it)")
		}
		t.Skip("shellcheck is not installed")
	}
	root, _ := ModuleRoot()
	scripts, _ := filepath.Glob(filepath.Join(root, "install", "*.sh"))
	out, err := exec.Command("shellcheck", append([]string{"--severity=warning"}, scripts...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("shellcheck: %v\n%s", err, out)
	}
}

func testFiles(t *testing.T) InstallFiles {
	t.Helper()
	dir := t.TempDir()
	key, _ := agent.NewEncryptKey()
	f := InstallFiles{Binary: slipwayBin, KeyFile: filepath.Join(dir, "key"), TokenFile: filepath.Join(dir, "token")}
	if err := os.WriteFile(f.KeyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.TokenFile, []byte("slw_test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// The testbed's install (--root DIR --no-systemd) is idempotent, and a
// changed flag rewrites the config.
func TestInstallIdempotent(t *testing.T) {
	p, _ := NewPlan(DefaultSpec(1), 0)
	files := testFiles(t)
	root := filepath.Join(t.TempDir(), "n1")
	args := append([]string{"--root", root, "--no-systemd"}, p.InstallArgs(p.Nodes[0], files)...)
	out, err := runInstall(t, nil, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, root+"/usr/local/bin/slipway agent --config "+root+"/etc/slipway/slipway.json") {
		t.Errorf("install.sh --no-systemd should print how to run the node:\n%s", out)
	}
	cfgPath := filepath.Join(root, "etc/slipway/slipway.json")
	first, _ := os.ReadFile(cfgPath)
	cfg := agent.DefaultConfig()
	if err := agent.LoadFile(&cfg, cfgPath); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the config install.sh wrote does not validate: %v\n%s", err, first)
	}
	want := map[string]any{"node_name": "n1", "region": "local", "zone": "a", "bind_addr": "10.213.1.11",
		"bootstrap_expect": float64(3), "domain": "testbed.internal",
		"encrypt_key_file": root + "/etc/slipway/cluster.key", "initial_admin_token_file": root + "/etc/slipway/admin-token",
		"data_dir": root + "/var/lib/slipway"}
	var got map[string]any
	_ = json.Unmarshal(first, &got)
	for k, v := range want {
		if !reflect.DeepEqual(got[k], v) {
			t.Errorf("config %s = %v, want %v", k, got[k], v)
		}
	}
	if got := strings.Join(cfg.Join, ","); got != "10.213.1.11:5002,10.213.2.11:5002,10.213.3.11:5002" {
		t.Errorf("join %s", got)
	}
	for path, mode := range map[string]os.FileMode{"etc/slipway": 0o750, "etc/slipway/slipway.json": 0o640,
		"etc/slipway/cluster.key": 0o640, "etc/slipway/admin-token": 0o640, "var/lib/slipway": 0o700, "usr/local/bin/slipway": 0o755} {
		st, err := os.Stat(filepath.Join(root, path))
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s has mode %o, want %o", path, st.Mode().Perm(), mode)
		}
	}

	// Again, the same: nothing changes.
	out, err = runInstall(t, nil, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if strings.Contains(out, "wrote") {
		t.Errorf("a second identical install rewrote files:\n%s", out)
	}
	if again, _ := os.ReadFile(cfgPath); string(again) != string(first) {
		t.Error("the config changed on a second identical install")
	}
	// Node data survives a reinstall.
	marker := filepath.Join(root, "var/lib/slipway/raft-marker")
	_ = os.WriteFile(marker, []byte("x"), 0o600)

	// Another zone: the config is rewritten.
	changed := append([]string(nil), args...)
	for i := range changed {
		if changed[i] == "--zone" {
			changed[i+1] = "b"
		}
	}
	out, err = runInstall(t, nil, changed...)
	if err != nil || !strings.Contains(out, "wrote "+cfgPath) {
		t.Fatalf("changing a flag should rewrite the config: %v\n%s", err, out)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Error("reinstalling removed the node's data")
	}

	// Uninstall keeps the data, --purge removes it.
	out, err = runInstall(t, nil, "--uninstall", "--root", root, "--no-systemd")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, p := range []string{"usr/local/bin/slipway", "etc/slipway"} {
		if _, err := os.Stat(filepath.Join(root, p)); !os.IsNotExist(err) {
			t.Errorf("%s still there after --uninstall", p)
		}
	}
	if _, err := os.Stat(marker); err != nil {
		t.Error("--uninstall without --purge removed the data")
	}
	root2, _ := ModuleRoot()
	out2, err := exec.Command(filepath.Join(root2, "install", "uninstall.sh"), "--root", root, "--no-systemd", "--purge").CombinedOutput()
	if err != nil {
		t.Fatalf("uninstall.sh --purge: %v\n%s", err, out2)
	}
	if _, err := os.Stat(filepath.Join(root, "var/lib/slipway")); !os.IsNotExist(err) {
		t.Error("--purge left the data directory")
	}
}

func TestInstallRejectsBadInput(t *testing.T) {
	files := testFiles(t)
	badKey := filepath.Join(t.TempDir(), "bad.key")
	_ = os.WriteFile(badKey, []byte("not base64 at all!\n"), 0o600)
	base := []string{"--no-systemd", "--binary", files.Binary, "--node-name", "n1", "--bind", "10.0.0.1"}
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--zone", "bad zone"}, "--zone 'bad zone'"},
		{[]string{"--bootstrap-expect", "three"}, "--bootstrap-expect must be a number"},
		{[]string{"--voters", "2"}, "--voters must be 1, 3 or 5"},
		{[]string{"--encrypt-key-file", badKey}, "base64 key of 16, 24 or 32 bytes"},
		{[]string{"--encrypt-key-file", "/nonexistent"}, "is not readable"},
		{[]string{"--bind", "0.0.0.0"}, "--advertise is required"},
		{[]string{"--log-level", "loud"}, "--log-level must be"},
		{[]string{"--frobnicate"}, "unknown option: --frobnicate"},
		{[]string{"--region"}, "--region needs a value"},
		{[]string{"--binary", "/nonexistent"}, "is not an executable file"},
		{[]string{"--data-dir", "relative"}, "--data-dir must be an absolute path"},
	} {
		root := filepath.Join(t.TempDir(), "r")
		out, err := runInstall(t, nil, append(append([]string{"--root", root}, base...), c.args...)...)
		if err == nil {
			t.Errorf("install.sh %v succeeded:\n%s", c.args, out)
			continue
		}
		if !strings.Contains(out, c.msg) {
			t.Errorf("install.sh %v: want %q in:\n%s", c.args, c.msg, out)
		}
		if _, err := os.Stat(filepath.Join(root, "etc/slipway/slipway.json")); err == nil {
			t.Errorf("install.sh %v wrote a config despite the error", c.args)
		}
	}
}

// The systemd path, run in a private mount namespace where /etc, /usr/local/bin,
// /var/lib and /run/systemd are empty tmpfs mounts, with systemctl,
// journalctl, useradd and userdel replaced by recorders: the real install
// paths are used without touching this machine.
const systemdHarness = `set -euo pipefail
for d in /etc /usr/local/bin /var/lib /run/systemd; do mount -t tmpfs tmpfs "$d"; done
mkdir -p /run/systemd/system
echo 'root:x:0:0:root:/root:/bin/bash' >/etc/passwd
echo 'root:x:0:' >/etc/group
export PATH="$SHIMS:$PATH"
run() { echo "### install.sh $*"; bash "$SCRIPT" "$@" 2>&1; echo "### exit $?"; }
run "${ARGS[@]}"
run "${ARGS[@]}"
run "${ARGS2[@]}"
echo "### unit"; cat /etc/systemd/system/slipway.service
echo "### ls"; stat -c '%n %U:%G %a' /etc/slipway /etc/slipway/* /var/lib/slipway /usr/local/bin/slipway
run --uninstall
echo "### after uninstall"; ls /etc/slipway /usr/local/bin/slipway 2>&1 || true; ls -d /var/lib/slipway
run --uninstall --purge
echo "### after purge"; ls -d /var/lib/slipway 2>&1 || true
`

func TestInstallSystemd(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatal("unshare (util-linux) is needed")
	}
	files := testFiles(t)
	shims := t.TempDir()
	state := t.TempDir()
	shim := func(name, body string) {
		if err := os.WriteFile(filepath.Join(shims, name), []byte("#!/bin/bash\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	shim("systemctl", `echo "systemctl $*" >>"$STATE/calls"
case "$*" in
*is-active*) [[ -f "$STATE/active" ]] ;;
*restart*|*start*) touch "$STATE/active" ;;
*disable*) rm -f "$STATE/active" ;;
esac`)
	shim("journalctl", `echo "journalctl $*" >>"$STATE/calls"`)
	shim("useradd", `echo "useradd $*" >>"$STATE/calls"
u="${@: -1}"
echo "$u:x:999:999::/var/lib/slipway:/usr/sbin/nologin" >>/etc/passwd
echo "$u:x:999:" >>/etc/group`)
	shim("userdel", `echo "userdel $*" >>"$STATE/calls"`)
	shim("sleep", `:`)

	p, _ := NewPlan(DefaultSpec(1), 0)
	args := p.InstallArgs(p.Nodes[0], files)
	args2 := append([]string(nil), args...)
	for i := range args2 {
		if args2[i] == "--zone" {
			args2[i+1] = "b"
		}
	}
	quote := func(a []string) string {
		var q []string
		for _, s := range a {
			q = append(q, "'"+strings.ReplaceAll(s, "'", `'\''`)+"'")
		}
		return "(" + strings.Join(q, " ") + ")"
	}
	script := "ARGS=" + quote(args) + "\nARGS2=" + quote(args2) + "\n" + systemdHarness
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "bash", "-c", script)
	cmd.Env = append(os.Environ(), "SHIMS="+shims, "STATE="+state, "SCRIPT="+installScript(t))
	outb, err := cmd.CombinedOutput()
	out := string(outb)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	callsb, _ := os.ReadFile(filepath.Join(state, "calls"))
	calls := string(callsb)
	t.Logf("output:\n%s\ncalls:\n%s", out, calls)

	runs := strings.Split(out, "### install.sh")
	if len(runs) != 6 {
		t.Fatalf("expected 5 runs, got %d", len(runs)-1)
	}
	for i, r := range runs[1:] {
		if !strings.Contains(r, "### exit 0") {
			t.Errorf("run %d failed:\n%s", i+1, r)
		}
	}
	if !strings.Contains(runs[1], "creating system user slipway") || !strings.Contains(runs[1], "starting slipway.service") {
		t.Errorf("first install should create the user and start the service:\n%s", runs[1])
	}
	if !strings.Contains(runs[2], "running and nothing changed") || strings.Contains(runs[2], "wrote") || strings.Contains(runs[2], "creating system user") {
		t.Errorf("an identical second install should change nothing:\n%s", runs[2])
	}
	if !strings.Contains(runs[3], "restarting slipway.service") {
		t.Errorf("a changed config should restart the service:\n%s", runs[3])
	}
	if strings.Count(calls, "useradd --system") != 1 {
		t.Errorf("useradd should run once:\n%s", calls)
	}
	for _, want := range []string{"systemctl daemon-reload", "systemctl enable slipway.service", "systemctl start slipway.service",
		"systemctl restart slipway.service", "systemctl disable --now slipway.service", "userdel slipway"} {
		if !strings.Contains(calls, want) {
			t.Errorf("no %q among the systemctl calls:\n%s", want, calls)
		}
	}
	unit := out[strings.Index(out, "### unit"):]
	for _, want := range []string{"ExecStart=/usr/local/bin/slipway agent --config /etc/slipway/slipway.json",
		"User=slipway", "Restart=always", "LimitNOFILE=", "EnvironmentFile=-/etc/slipway/slipway.env", "WantedBy=multi-user.target"} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	for _, want := range []string{"/etc/slipway root:slipway 750", "/etc/slipway/slipway.json root:slipway 640",
		"/etc/slipway/cluster.key root:slipway 640", "/var/lib/slipway slipway:slipway 700", "/usr/local/bin/slipway root:root 755"} {
		if !strings.Contains(out, want) {
			t.Errorf("want %q in the file listing", want)
		}
	}
	after := out[strings.Index(out, "### after uninstall"):]
	if !strings.Contains(after, "No such file") || !strings.Contains(after[:strings.Index(after, "### install.sh")], "/var/lib/slipway") {
		t.Errorf("--uninstall should remove the config and binary and keep the data:\n%s", after)
	}
	if purge := out[strings.Index(out, "### after purge"):]; !strings.Contains(purge, "No such file") {
		t.Errorf("--purge should remove the data:\n%s", purge)
	}
}

// install/slipway.example.json sets every setting the agent has, the agent
// accepts it, and docs/configuration.md documents each of its keys.
func TestExampleConfig(t *testing.T) {
	root, _ := ModuleRoot()
	path := filepath.Join(root, "install", "slipway.example.json")
	cfg := agent.DefaultConfig()
	if err := agent.LoadFile(&cfg, path); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	var example map[string]any
	if err := json.Unmarshal(b, &example); err != nil {
		t.Fatal(err)
	}
	docs, _ := os.ReadFile(filepath.Join(root, "docs", "configuration.md"))
	var walk func(t reflect.Type, prefix string, have map[string]any)
	walk = func(typ reflect.Type, prefix string, have map[string]any) {
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			key := strings.Split(f.Tag.Get("json"), ",")[0]
			if key == "" || key == "-" {
				continue
			}
			v, ok := have[key]
			if !ok {
				t.Errorf("install/slipway.example.json lacks %s%s", prefix, key)
				continue
			}
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(agent.Duration{}) {
				sub, _ := v.(map[string]any)
				walk(f.Type, prefix+key+".", sub)
				continue
			}
			if !strings.Contains(string(docs), "`"+prefix+key+"`") {
				t.Errorf("docs/configuration.md does not document %s%s", prefix, key)
			}
		}
	}
	walk(reflect.TypeOf(agent.Config{}), "", example)
}
