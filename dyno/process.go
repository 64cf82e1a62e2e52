package dyno

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
)

// Process is the "process" runtime: a dyno is a process group (a session,
// for an attached one-off) of the node, run by bash from the unpacked slug,
// with $HOME the slug's directory. It isolates nothing and runs as the
// agent's user: it is the development default, and works everywhere.
type Process struct{}

// Name implements Runtime.
func (Process) Name() string { return "process" }

// HomeDir implements Runtime: $HOME is the unpacked slug.
func (Process) HomeDir(hostAppDir string) string { return hostAppDir }

// AppOwner implements Runtime: files stay the agent's.
func (Process) AppOwner() (int, int) { return -1, -1 }

// statusFile is where the shim's fd 3 points, in the instance directory.
func statusFile(dir string) string { return filepath.Join(dir, "status") }

// readStatus reads the exit status the shim wrote.
func readStatus(dir string) Exit {
	b, err := os.ReadFile(statusFile(dir))
	if err != nil {
		return Exit{}
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 || n > 255 {
		return Exit{}
	}
	return Exit{Status: n, Known: true}
}

// Start implements Runtime.
func (Process) Start(_ context.Context, spec Spec) (Proc, error) {
	cmd := exec.Command("bash", "-c", shimScript, spec.Marker, startScript, spec.Command)
	cmd.Dir = spec.AppDir
	cmd.Env = spec.Env
	cmd.ExtraFiles = []*os.File{spec.Status}
	var master, slave *os.File
	if spec.TTY {
		var err error
		master, slave, err = pty.Open()
		if err != nil {
			return nil, fmt.Errorf("starting %s: terminal: %w", spec.Name, err)
		}
		if spec.Cols > 0 && spec.Rows > 0 {
			_ = pty.Setsize(master, &pty.Winsize{Cols: spec.Cols, Rows: spec.Rows})
		}
		// pty.Open leaves the master blocking: make it pollable so that
		// closing it ends a pending Read.
		if master, err = pollable(master); err != nil {
			slave.Close()
			return nil, fmt.Errorf("starting %s: terminal: %w", spec.Name, err)
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	} else {
		devnull, err := os.Open(os.DevNull)
		if err != nil {
			return nil, fmt.Errorf("starting %s: %w", spec.Name, err)
		}
		defer devnull.Close()
		cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, spec.Output, spec.Output
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	err := cmd.Start()
	if slave != nil {
		slave.Close()
	}
	if err != nil {
		if master != nil {
			master.Close()
		}
		return nil, fmt.Errorf("starting %s: %w", spec.Name, err)
	}
	pid := cmd.Process.Pid
	var start uint64
	if st, err := readProcStat(pid); err == nil {
		start = st.StartTime
	}
	p := &processProc{
		rec: Record{DynoID: spec.DynoID, Instance: spec.Instance, Name: spec.Name, Runtime: "process", Marker: spec.Marker,
			Pid: pid, StartTime: start, Dir: spec.Dir, StartedAt: time.Now().UTC(), TTY: spec.TTY},
		tty: master, done: make(chan struct{}), stop: make(chan struct{}),
	}
	go func() {
		_ = cmd.Wait()
		p.exit = exitOf(cmd.ProcessState)
		close(p.done)
	}()
	return p, nil
}

func exitOf(ps *os.ProcessState) Exit {
	if ps == nil {
		return Exit{}
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return Exit{Status: 128 + int(ws.Signal()), Known: true}
	}
	return Exit{Status: ps.ExitCode(), Known: true}
}

// Adopt implements Runtime: the recorded pid must still be the recorded
// process (same start time) and carry the dyno's marker.
func (Process) Adopt(_ context.Context, rec Record) (Proc, error) {
	if rec.Pid <= 0 || !alive(rec.Pid, rec.StartTime) || shimMarker(rec.Pid) != rec.Marker {
		return nil, ErrNotRunning
	}
	p := &processProc{rec: rec, polled: true, done: make(chan struct{}), stop: make(chan struct{})}
	go func() {
		if waitGone(rec.Pid, rec.StartTime, 200*time.Millisecond, p.stop) {
			p.exit = readStatus(rec.Dir)
			close(p.done)
		}
	}()
	return p, nil
}

// Sweep implements Runtime: it kills the process groups of shims carrying
// this node's marker that are not kept.
func (Process) Sweep(_ context.Context, prefix string, keep []Record) error {
	kept := map[int]bool{}
	for _, r := range keep {
		kept[r.Pid] = true
	}
	for _, pid := range allPids() {
		if kept[pid] || !strings.HasPrefix(shimMarker(pid), prefix) {
			continue
		}
		st, err := readProcStat(pid)
		if err != nil || st.Pgrp != pid {
			continue // not a group leader: not one of our shims
		}
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		if st.Session == pid {
			for _, p := range groupPids(0, pid) {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		}
	}
	return nil
}

type processProc struct {
	rec    Record
	tty    *os.File
	polled bool // adopted: not our child
	done   chan struct{}
	exit   Exit

	stopOnce sync.Once
	stop     chan struct{}
}

func (p *processProc) Record() Record { return p.rec }
func (p *processProc) TTY() *os.File  { return p.tty }

// Signal implements Proc: the process group, plus (on a terminal, where an
// interactive shell puts its jobs in groups of their own) the session.
func (p *processProc) Signal(sig syscall.Signal) error {
	err := syscall.Kill(-p.rec.Pid, sig)
	if p.rec.TTY {
		for _, pid := range groupPids(0, p.rec.Pid) {
			_ = syscall.Kill(pid, sig)
		}
	}
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signalling %s: %w", p.rec.Name, err)
	}
	return nil
}

func (p *processProc) Wait() Exit {
	<-p.done
	return p.exit
}

func (p *processProc) Remaining() int {
	sid := 0
	if p.rec.TTY {
		sid = p.rec.Pid
	}
	return len(groupPids(p.rec.Pid, sid))
}

func (p *processProc) Memory() (MemoryUsage, error) {
	sid := 0
	if p.rec.TTY {
		sid = p.rec.Pid
	}
	var pages int64
	for _, pid := range groupPids(p.rec.Pid, sid) {
		if st, err := readProcStat(pid); err == nil {
			pages += st.RSSPages
		}
	}
	return MemoryUsage{Bytes: pages * int64(os.Getpagesize())}, nil
}

// Release implements Proc: whatever the dyno left behind in its group dies
// with it, as on Heroku. The terminal stays open for its client to read
// the end of the output (the attach stream closes it).
func (p *processProc) Release() error {
	_ = p.Signal(syscall.SIGKILL)
	return nil
}

func (p *processProc) Detach() {
	p.stopOnce.Do(func() { close(p.stop) })
	if p.tty != nil {
		p.tty.Close()
	}
}
