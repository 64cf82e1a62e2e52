package dyno

import (
	"os"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// nofile is a dyno's open file limit (Heroku's is 10,000).
const nofile = 10000

// runcMaskedPaths and runcReadonlyPaths are runc's defaults for /proc and /sys.
var (
	runcMaskedPaths = [...]string{
		"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
		"/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
	}
	runcReadonlyPaths = [...]string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

// ociSpec builds a dyno's OCI runtime configuration.
func (r *Runc) ociSpec(s Spec, cid string) *specs.Spec {
	tmpSize := s.TmpBytes
	if tmpSize <= 0 {
		tmpSize = 512 << 20
	}
	mounts := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777", "size=" + strconv.FormatInt(tmpSize, 10)}},
	}
	for _, d := range r.hostBind {
		mounts = append(mounts, specs.Mount{Destination: d, Type: "bind", Source: d, Options: []string{"rbind", "ro", "nosuid", "nodev"}})
	}
	if r.cfg.Stack != HostStack {
		// The host network's name resolution.
		for _, f := range []string{"/etc/resolv.conf", "/etc/hosts"} {
			if fileExists(f) {
				mounts = append(mounts, specs.Mount{Destination: f, Type: "bind", Source: f, Options: []string{"bind", "ro", "nosuid", "nodev", "noexec"}})
			}
		}
	}
	mounts = append(mounts, specs.Mount{Destination: "/app", Type: "bind", Source: s.AppDir, Options: []string{"rbind", "rw", "nosuid", "nodev"}})

	masked := append([]string(nil), runcMaskedPaths[:]...)
	masked = append(masked, r.masked...)

	memLimit := s.MemoryLimit
	res := &specs.LinuxResources{
		Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
	}
	if memLimit > 0 {
		res.Memory = &specs.LinuxMemory{Limit: &memLimit}
		if r.memsw {
			swap := memLimit // memory+swap: no swap beyond the limit
			res.Memory.Swap = &swap
		}
	}
	if s.CPUShares > 0 {
		shares := s.CPUShares
		res.CPU = &specs.LinuxCPU{Shares: &shares}
	}
	if s.Pids > 0 {
		res.Pids = &specs.LinuxPids{Limit: s.Pids}
	}
	p := &specs.Process{
		Terminal:        s.TTY,
		User:            specs.User{UID: uint32(r.cfg.UID), GID: uint32(r.cfg.GID)},
		Args:            []string{"/bin/bash", "-c", shimScript, s.Marker, startScript, s.Command},
		Env:             s.Env,
		Cwd:             "/app",
		Capabilities:    &specs.LinuxCapabilities{},
		Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: nofile, Soft: nofile}},
		NoNewPrivileges: true,
	}
	if s.TTY && s.Cols > 0 && s.Rows > 0 {
		p.ConsoleSize = &specs.Box{Height: uint(s.Rows), Width: uint(s.Cols)}
	}
	return &specs.Spec{
		Version:  specs.Version,
		Root:     &specs.Root{Path: r.rootfs, Readonly: true},
		Hostname: hostname(s.DynoID),
		Process:  p,
		Mounts:   mounts,
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.UTSNamespace}, {Type: specs.IPCNamespace},
			},
			CgroupsPath:   r.cgroupPath(cid),
			Resources:     res,
			MaskedPaths:   masked,
			ReadonlyPaths: runcReadonlyPaths[:],
		},
	}
}

// setWinsize sizes a terminal without making its file blocking (as
// File.Fd would).
func setWinsize(f *os.File, cols, rows uint16) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Col: cols, Row: rows})
	}); err != nil {
		return err
	}
	return ierr
}

// pollable returns f as a non-blocking file served by the runtime poller,
// so that closing it ends a blocked Read; f is closed.
func pollable(f *os.File) (*os.File, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) { nfd, derr = unix.Dup(int(fd)) }); err != nil {
		return nil, err
	}
	name := f.Name()
	f.Close()
	if derr != nil {
		return nil, derr
	}
	unix.CloseOnExec(nfd)
	if err := unix.SetNonblock(nfd, true); err != nil {
		unix.Close(nfd)
		return nil, err
	}
	return os.NewFile(uintptr(nfd), name), nil
}

// hostname is a dyno's host name: its id, as on Heroku (at most 63 bytes).
func hostname(id string) string {
	if len(id) > 63 {
		return id[:63]
	}
	return id
}
