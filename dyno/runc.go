package dyno

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// RuncConfig configures the runc runtime.
type RuncConfig struct {
	// Binary is the runc program (default "runc", found on $PATH).
	Binary string
	// StateDir is runc's --root: this node's container state.
	StateDir string
	// Stack is "host" (the node's own /usr, /etc, /bin, /lib... mounted
	// read-only: nothing to download) or the path of a root filesystem
	// (install/build-stack.sh builds one with debootstrap).
	Stack string
	// StackDir is where the "host" stack's skeleton root is made.
	StackDir string
	// UID and GID run the dyno (default 20000, a user the stack need not know).
	UID, GID int
	// Hide lists host paths a dyno must never see (the agent's data dir and
	// secrets) in case the stack mounts them; they are masked.
	Hide []string
	// CgroupParent holds the dynos' cgroups (default /slipway).
	CgroupParent string
}

// DefaultDynoUID is the uid (and gid) dynos run as under runc.
const DefaultDynoUID = 20000

// HostStack names the stack made of the node's own system directories.
const HostStack = "host"

// hostStackDirs are the node's directories a "host" stack mounts read-only
// (or links, where the node links them, as on merged-/usr systems).
var hostStackDirs = [...]string{"usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32"}

// alwaysMasked are host files and directories hidden from dynos on a host
// stack (secrets of the node), besides runc's usual /proc and /sys paths.
var alwaysMasked = [...]string{
	"/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/sudoers", "/etc/sudoers.d",
	"/etc/ssh", "/etc/ssl/private", "/etc/slipway",
}

// Runc is the "runc" runtime: each dyno is an OCI container with its own
// pid, mount, UTS and IPC namespaces on the host network, a read-only stack
// root with the slug at /app (read-write) and a private /tmp, cgroup limits
// from its size, no capabilities, and a non-root user.
type Runc struct {
	cfg      RuncConfig
	bin      string
	rootfs   string
	hostBind []string // absolute dirs bind-mounted from the host (host stack)
	masked   []string
	cgroupV2 bool
	memsw    bool
}

// NewRunc checks runc and prepares the stack.
func NewRunc(cfg RuncConfig) (*Runc, error) {
	if cfg.Binary == "" {
		cfg.Binary = "runc"
	}
	if cfg.Stack == "" {
		cfg.Stack = HostStack
	}
	if cfg.UID == 0 {
		cfg.UID = DefaultDynoUID
	}
	if cfg.GID == 0 {
		cfg.GID = cfg.UID
	}
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = "/slipway"
	}
	if cfg.StateDir == "" {
		return nil, errors.New("runc runtime: no state directory")
	}
	bin, err := exec.LookPath(cfg.Binary)
	if err != nil {
		return nil, fmt.Errorf("runc runtime: %w (install runc, or use dyno_runtime \"process\")", err)
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("runc runtime: the agent must run as root (or use dyno_runtime \"process\")")
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("runc runtime: %w", err)
	}
	r := &Runc{cfg: cfg, bin: bin}
	r.cgroupV2 = fileExists("/sys/fs/cgroup/cgroup.controllers")
	r.memsw = r.cgroupV2 || fileExists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
	if err := r.prepareStack(); err != nil {
		return nil, err
	}
	if r.cgroupV2 {
		if err := r.delegateV2(); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// prepareStack makes the host stack's skeleton root (empty mount points and
// the node's top-level links), or checks a given root filesystem.
func (r *Runc) prepareStack() error {
	var hidden []string
	for _, h := range r.cfg.Hide {
		if h != "" {
			if abs, err := filepath.Abs(h); err == nil {
				hidden = append(hidden, abs)
			}
		}
	}
	if r.cfg.Stack != HostStack {
		root, err := filepath.Abs(r.cfg.Stack)
		if err != nil {
			return fmt.Errorf("runc runtime: stack: %w", err)
		}
		if !fileExists(filepath.Join(root, "bin", "bash")) {
			return fmt.Errorf("runc runtime: stack %s has no /bin/bash (build one with install/build-stack.sh)", root)
		}
		r.rootfs = root
		r.masked = hidden // a stack built for dynos holds no node secrets
		return nil
	}
	if r.cfg.StackDir == "" {
		return errors.New("runc runtime: no directory for the host stack")
	}
	root := filepath.Join(r.cfg.StackDir, "host")
	for _, d := range []string{"app", "tmp", "proc", "dev", "sys", "run", "var/tmp", "home"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return fmt.Errorf("runc runtime: host stack: %w", err)
		}
	}
	// runc gives a tmpfs the mode of the directory it is mounted on.
	for _, d := range []string{"tmp", "var/tmp"} {
		if err := os.Chmod(filepath.Join(root, d), 0o777|os.ModeSticky); err != nil {
			return fmt.Errorf("runc runtime: host stack: %w", err)
		}
	}
	for _, d := range hostStackDirs {
		host := "/" + d
		fi, err := os.Lstat(host)
		if err != nil {
			continue
		}
		dst := filepath.Join(root, d)
		if fi.Mode()&os.ModeSymlink != 0 {
			target, err := os.Readlink(host)
			if err != nil {
				return fmt.Errorf("runc runtime: host stack: %w", err)
			}
			if cur, err := os.Readlink(dst); err == nil && cur == target {
				continue
			}
			_ = os.Remove(dst)
			if err := os.Symlink(target, dst); err != nil {
				return fmt.Errorf("runc runtime: host stack: %w", err)
			}
			continue
		}
		if !fi.IsDir() {
			continue
		}
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return fmt.Errorf("runc runtime: host stack: %w", err)
		}
		r.hostBind = append(r.hostBind, host)
	}
	r.rootfs = root
	r.masked = append(r.masked, alwaysMasked[:]...)
	for _, h := range hidden {
		for _, b := range r.hostBind {
			if h == b || strings.HasPrefix(h, b+"/") {
				r.masked = append(r.masked, h)
			}
		}
	}
	return nil
}

// delegateV2 makes sure the memory, cpu and pids controllers reach the
// dynos' parent cgroup on a cgroup v2 host.
func (r *Runc) delegateV2() error {
	base := "/sys/fs/cgroup"
	dirs := []string{base}
	cur := base
	for _, part := range strings.Split(strings.Trim(r.cfg.CgroupParent, "/"), "/") {
		cur = filepath.Join(cur, part)
		dirs = append(dirs, cur)
	}
	for i, d := range dirs {
		if i > 0 {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("runc runtime: cgroup %s: %w", d, err)
			}
		}
		b, err := os.ReadFile(filepath.Join(d, "cgroup.subtree_control"))
		if err != nil {
			return fmt.Errorf("runc runtime: cgroup %s: %w", d, err)
		}
		have := strings.Fields(string(b))
		for _, c := range []string{"memory", "pids", "cpu"} {
			if contains(have, c) {
				continue
			}
			if err := os.WriteFile(filepath.Join(d, "cgroup.subtree_control"), []byte("+"+c), 0o644); err != nil {
				return fmt.Errorf("runc runtime: enabling the %s controller in %s (cgroup v2 needs it delegated to the agent: run it as a systemd service with Delegate=yes, or in its own cgroup): %w", c, d, err)
			}
		}
	}
	return nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// Name implements Runtime.
func (*Runc) Name() string { return "runc" }

// HomeDir implements Runtime: the slug is at /app.
func (*Runc) HomeDir(string) string { return "/app" }

// AppOwner implements Runtime: the dyno's user owns /app.
func (r *Runc) AppOwner() (int, int) { return r.cfg.UID, r.cfg.GID }

// containerID names a dyno instance's container.
func containerID(dynoID, instance string) string {
	clean := func(s string) string {
		return strings.Map(func(c rune) rune {
			if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
				return c
			}
			return '_'
		}, s)
	}
	return clean(dynoID) + "." + clean(instance)
}

func (r *Runc) cgroupPath(cid string) string { return r.cfg.CgroupParent + "/" + cid }

// runc runs a runc command for this node's state directory.
func (r *Runc) runc(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, r.bin, append([]string{"--root", r.cfg.StateDir}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("runc %s: %w: %s", args[0], err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

// Start implements Runtime.
func (r *Runc) Start(ctx context.Context, s Spec) (Proc, error) {
	cid := containerID(s.DynoID, s.Instance)
	bundle := filepath.Join(s.Dir, "bundle")
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		return nil, fmt.Errorf("starting %s: %w", s.Name, err)
	}
	b, err := json.MarshalIndent(r.ociSpec(s, cid), "", "  ")
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", s.Name, err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o600); err != nil {
		return nil, fmt.Errorf("starting %s: %w", s.Name, err)
	}
	pidFile := filepath.Join(bundle, "pid")
	logFile := filepath.Join(bundle, "runc.log")
	args := []string{"--root", r.cfg.StateDir, "--log", logFile, "run", "--detach", "--bundle", bundle, "--pid-file", pidFile, "--preserve-fds", "1"}
	var console *consoleSocket
	if s.TTY {
		if console, err = newConsoleSocket(); err != nil {
			return nil, fmt.Errorf("starting %s: %w", s.Name, err)
		}
		defer console.Close()
		args = append(args, "--console-socket", console.path)
	}
	args = append(args, cid)
	// Not the caller's context: a runc killed half-way leaves a container
	// behind.
	rctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(rctx, r.bin, args...)
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", s.Name, err)
	}
	defer devnull.Close()
	cmd.Stdin = devnull
	if s.Output != nil {
		// Without a terminal, the container gets runc's stdio.
		cmd.Stdout, cmd.Stderr = s.Output, s.Output
	}
	cmd.ExtraFiles = []*os.File{s.Status}
	if err := cmd.Run(); err != nil {
		_, _ = r.runc(context.Background(), "delete", "--force", cid)
		return nil, fmt.Errorf("starting %s: runc: %w%s", s.Name, err, runcLogErrors(logFile))
	}
	var tty *os.File
	if console != nil {
		if tty, err = console.receive(10 * time.Second); err != nil {
			_, _ = r.runc(context.Background(), "delete", "--force", cid)
			return nil, fmt.Errorf("starting %s: %w", s.Name, err)
		}
		if s.Cols > 0 && s.Rows > 0 {
			_ = setWinsize(tty, s.Cols, s.Rows)
		}
	}
	pb, err := os.ReadFile(pidFile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pb)))
	if err != nil || pid <= 0 {
		_, _ = r.runc(context.Background(), "delete", "--force", cid)
		return nil, fmt.Errorf("starting %s: no pid from runc: %v", s.Name, err)
	}
	var start uint64
	if st, err := readProcStat(pid); err == nil {
		start = st.StartTime
	}
	rec := Record{DynoID: s.DynoID, Instance: s.Instance, Name: s.Name, Runtime: "runc", Marker: s.Marker,
		Pid: pid, StartTime: start, ContainerID: cid, Dir: s.Dir, StartedAt: time.Now().UTC(), TTY: s.TTY}
	return r.watch(rec, tty), nil
}

// runcLogErrors returns the error messages of a runc log file.
func runcLogErrors(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var msgs []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l struct{ Level, Msg string }
		if json.Unmarshal(sc.Bytes(), &l) == nil && (l.Level == "error" || l.Level == "fatal") {
			msgs = append(msgs, l.Msg)
		} else if l.Msg == "" && len(sc.Bytes()) > 0 {
			msgs = append(msgs, sc.Text())
		}
	}
	if len(msgs) == 0 {
		return ""
	}
	return ": " + strings.Join(msgs, "; ")
}

func (r *Runc) watch(rec Record, tty *os.File) *runcProc {
	p := &runcProc{r: r, rec: rec, tty: tty, done: make(chan struct{}), stop: make(chan struct{})}
	go func() {
		// The container's first process is runc's child, not ours: poll.
		if waitGone(rec.Pid, rec.StartTime, 100*time.Millisecond, p.stop) {
			p.exit = readStatus(rec.Dir)
			close(p.done)
		}
	}()
	return p
}

// Adopt implements Runtime: the container must still run the recorded
// process.
func (r *Runc) Adopt(ctx context.Context, rec Record) (Proc, error) {
	if rec.ContainerID == "" {
		return nil, ErrNotRunning
	}
	out, err := r.runc(ctx, "state", rec.ContainerID)
	if err != nil {
		return nil, ErrNotRunning
	}
	var st struct {
		Status string `json:"status"`
		Pid    int    `json:"pid"`
	}
	if json.Unmarshal(out, &st) != nil || st.Status != "running" || st.Pid != rec.Pid || !alive(rec.Pid, rec.StartTime) {
		return nil, ErrNotRunning
	}
	return r.watch(rec, nil), nil
}

// Sweep implements Runtime: containers in this node's state directory that
// are not kept are removed.
func (r *Runc) Sweep(ctx context.Context, _ string, keep []Record) error {
	out, err := r.runc(ctx, "list", "--format", "json")
	if err != nil {
		return err
	}
	var list []struct {
		ID string `json:"id"`
	}
	if len(bytes.TrimSpace(out)) > 0 && !bytes.Equal(bytes.TrimSpace(out), []byte("null")) {
		if err := json.Unmarshal(out, &list); err != nil {
			return fmt.Errorf("runc list: %w", err)
		}
	}
	kept := map[string]bool{}
	for _, k := range keep {
		kept[k.ContainerID] = true
	}
	var errs []error
	for _, c := range list {
		if !kept[c.ID] {
			if _, err := r.runc(ctx, "delete", "--force", c.ID); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

type runcProc struct {
	r    *Runc
	rec  Record
	tty  *os.File
	done chan struct{}
	exit Exit

	stopOnce sync.Once
	stop     chan struct{}
}

func (p *runcProc) Record() Record { return p.rec }
func (p *runcProc) TTY() *os.File  { return p.tty }

func (p *runcProc) Signal(sig syscall.Signal) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := p.r.runc(ctx, "kill", "--all", p.rec.ContainerID, strconv.Itoa(int(sig)))
	if err != nil && sig == syscall.SIGKILL {
		// Killing the pid namespace's first process kills the rest.
		if kerr := syscall.Kill(p.rec.Pid, syscall.SIGKILL); kerr == nil || errors.Is(kerr, syscall.ESRCH) {
			return nil
		}
	}
	if err != nil && !alive(p.rec.Pid, p.rec.StartTime) {
		return nil
	}
	return err
}

func (p *runcProc) Wait() Exit {
	<-p.done
	return p.exit
}

// Remaining implements Proc: the processes left in the container's cgroup
// (none once its first process is gone: the pid namespace dies with it).
func (p *runcProc) Remaining() int {
	b, err := os.ReadFile(filepath.Join(p.cgroupDir(), "cgroup.procs"))
	if err != nil {
		return 0
	}
	return len(strings.Fields(string(b)))
}

// cgroupDir is the dyno's memory cgroup.
func (p *runcProc) cgroupDir() string {
	if p.r.cgroupV2 {
		return filepath.Join("/sys/fs/cgroup", p.r.cgroupPath(p.rec.ContainerID))
	}
	return filepath.Join("/sys/fs/cgroup/memory", p.r.cgroupPath(p.rec.ContainerID))
}

// Memory implements Proc: the cgroup's usage less inactive page cache (what
// `docker stats` shows), and the kernel's OOM kills.
func (p *runcProc) Memory() (MemoryUsage, error) {
	dir := p.cgroupDir()
	usageFile, statKey, eventsFile := "memory.usage_in_bytes", "total_inactive_file", "memory.oom_control"
	if p.r.cgroupV2 {
		usageFile, statKey, eventsFile = "memory.current", "inactive_file", "memory.events"
	}
	b, err := os.ReadFile(filepath.Join(dir, usageFile))
	if err != nil {
		return MemoryUsage{}, fmt.Errorf("memory of %s: %w", p.rec.Name, err)
	}
	usage, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return MemoryUsage{}, fmt.Errorf("memory of %s: %w", p.rec.Name, err)
	}
	stat := readKeyed(filepath.Join(dir, "memory.stat"))
	if inactive := stat[statKey]; inactive < usage {
		usage -= inactive
	}
	return MemoryUsage{Bytes: usage, OOMKills: int(readKeyed(filepath.Join(dir, eventsFile))["oom_kill"])}, nil
}

// readKeyed reads a cgroup "key value" file.
func readKeyed(path string) map[string]int64 {
	out := map[string]int64{}
	b, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			if v, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				out[f[0]] = v
			}
		}
	}
	return out
}

func (p *runcProc) Release() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := p.r.runc(ctx, "delete", "--force", p.rec.ContainerID); err != nil {
		if _, serr := p.r.runc(ctx, "state", p.rec.ContainerID); serr != nil {
			return nil // already gone
		}
		return err
	}
	return nil
}

func (p *runcProc) Detach() {
	p.stopOnce.Do(func() { close(p.stop) })
	if p.tty != nil {
		p.tty.Close()
	}
}

// consoleSocket receives the terminal's master side from runc.
type consoleSocket struct {
	dir, path string
	ln        *net.UnixListener
}

func newConsoleSocket() (*consoleSocket, error) {
	dir, err := os.MkdirTemp("", "slipway-console-")
	if err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	p := filepath.Join(dir, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("console socket: %w", err)
	}
	return &consoleSocket{dir: dir, path: p, ln: ln}, nil
}

func (c *consoleSocket) receive(timeout time.Duration) (*os.File, error) {
	_ = c.ln.SetDeadline(time.Now().Add(timeout))
	conn, err := c.ln.AcceptUnix()
	if err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	defer conn.Close()
	buf := make([]byte, 4096)
	oob := make([]byte, syscall.CmsgSpace(4))
	_ = conn.SetDeadline(time.Now().Add(timeout))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) == 0 {
		return nil, fmt.Errorf("console socket: no terminal received: %v", err)
	}
	fds, err := syscall.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("console socket: no terminal received: %v", err)
	}
	if err := syscall.SetNonblock(fds[0], true); err != nil {
		syscall.Close(fds[0])
		return nil, fmt.Errorf("console socket: %w", err)
	}
	syscall.CloseOnExec(fds[0])
	return os.NewFile(uintptr(fds[0]), string(buf[:n])), nil
}

func (c *consoleSocket) Close() {
	c.ln.Close()
	os.RemoveAll(c.dir)
}
