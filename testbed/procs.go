package testbed

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Process is one process running in a node's network namespace: its
// agent, or a dyno (a dyno of the process runtime is a process group whose
// environment has DYNO and PORT).
type Process struct {
	PID  int
	PGID int
	// Env is the process's environment (from /proc/PID/environ).
	Env map[string]string
	// Cmd is its command line, arguments joined by spaces.
	Cmd string
}

// Processes lists the processes in a node's network namespace, whether or
// not its agent runs: what the machine would show if it were a real host.
// A process that ends while it is being read is left out.
func (tb *Testbed) Processes(ctx context.Context, node string) ([]Process, error) {
	if _, ok := tb.plan.Node(node); !ok {
		return nil, fmt.Errorf("no node %q", node)
	}
	out, err := command(ctx, "", "ip", "netns", "pids", nodeNS(tb.plan.Slot, node))
	if err != nil {
		return nil, err
	}
	var procs []Process
	for _, f := range strings.Fields(out) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		p, ok := readProcess(pid)
		if ok {
			procs = append(procs, p)
		}
	}
	sort.Slice(procs, func(i, j int) bool { return procs[i].PID < procs[j].PID })
	return procs, nil
}

// readProcess reads a process's group, environment and command line.
func readProcess(pid int) (Process, bool) {
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return Process{}, false
	}
	// pid (comm) state ppid pgrp ...: comm may hold spaces and parens,
	// so the fields start after the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return Process{}, false
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 3 {
		return Process{}, false
	}
	pgid, err := strconv.Atoi(fields[2])
	if err != nil {
		return Process{}, false
	}
	p := Process{PID: pid, PGID: pgid, Env: map[string]string{}}
	if env, err := os.ReadFile(filepath.Join(dir, "environ")); err == nil {
		for _, kv := range strings.Split(string(env), "\x00") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				p.Env[k] = v
			}
		}
	}
	if cmd, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil {
		p.Cmd = strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))
	}
	return p, true
}
