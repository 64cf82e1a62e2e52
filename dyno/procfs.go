package dyno

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// procStat is the part of /proc/<pid>/stat the supervisor uses.
type procStat struct {
	State     byte
	PPid      int
	Pgrp      int
	Session   int
	StartTime uint64
	RSSPages  int64
}

// readProcStat parses /proc/<pid>/stat.
func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	return parseProcStat(b)
}

func parseProcStat(b []byte) (procStat, error) {
	// The command name is in parentheses and may itself hold spaces and
	// parentheses: the fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return procStat{}, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+2:]))
	if len(f) < 22 {
		return procStat{}, errors.New("short /proc stat")
	}
	var s procStat
	var err error
	s.State = f[0][0]
	num := func(k int) int64 {
		if err != nil {
			return 0
		}
		var v int64
		v, err = strconv.ParseInt(f[k], 10, 64)
		return v
	}
	s.PPid = int(num(1))
	s.Pgrp = int(num(2))
	s.Session = int(num(3))
	s.StartTime = uint64(num(19))
	s.RSSPages = num(21)
	if err != nil {
		return procStat{}, fmt.Errorf("parsing /proc stat: %w", err)
	}
	return s, nil
}

// alive reports whether pid is still the process that started at startTime
// (and not a zombie).
func alive(pid int, startTime uint64) bool {
	s, err := readProcStat(pid)
	return err == nil && s.StartTime == startTime && s.State != 'Z' && s.State != 'X'
}

// cmdline returns a process's arguments.
func cmdline(pid int) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return nil, err
	}
	b = bytes.TrimRight(b, "\x00")
	if len(b) == 0 {
		return nil, nil
	}
	return strings.Split(string(b), "\x00"), nil
}

// shimMarker returns the marker of a dyno shim process ($0 of `bash -c SHIM
// $0 ...`), or "".
func shimMarker(pid int) string {
	args, err := cmdline(pid)
	if err != nil || len(args) < 4 || filepath.Base(args[0]) != "bash" || args[1] != "-c" {
		return ""
	}
	if !strings.HasPrefix(args[3], markerPrefix) {
		return ""
	}
	return args[3]
}

// allPids lists the processes in /proc.
func allPids() []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// groupPids lists the processes in process group pgid or session sid (0:
// not looked at).
func groupPids(pgid, sid int) []int {
	var out []int
	for _, pid := range allPids() {
		s, err := readProcStat(pid)
		if err != nil || s.State == 'Z' {
			continue
		}
		if (pgid > 0 && s.Pgrp == pgid) || (sid > 0 && s.Session == sid) {
			out = append(out, pid)
		}
	}
	return out
}

// waitGone polls until the process is gone (or a zombie); it returns false
// if stop closes first.
func waitGone(pid int, startTime uint64, every time.Duration, stop <-chan struct{}) bool {
	t := time.NewTicker(every)
	defer t.Stop()
	for alive(pid, startTime) {
		select {
		case <-stop:
			return false
		case <-t.C:
		}
	}
	return true
}
