// Package dyno runs an app's dynos on a node: the per-node supervisor that
// converges the processes it runs towards the dynos the scheduler placed on
// its node (fsm.Snap.NodeDynos), the runtimes that start them (process: a
// process group in the unpacked slug; runc: an OCI container on a read-only
// stack with the slug at /app), the slug cache and its checked unpacking, and
// the attach endpoint of one-off dynos.
//
// The supervisor reports state changes (up, crashed, down) through a
// Reporter, writes the dynos' output and Heroku's platform events to a
// logplex.Sink, and never restarts a crashed dyno itself: the scheduler does,
// by giving the dyno a new Instance.
//
// Every dyno runs under a small bash "shim": it runs Heroku's start-up (source
// .profile.d/*.sh and .profile, then the command, all by bash), waits for it,
// and writes its exit status to a file the agent keeps open, so a dyno that
// outlives an agent restart is adopted again and its exit status is still
// known. Output goes through a named pipe that the dyno keeps open, so it is
// not lost (only delayed) while the agent restarts.
package dyno

import (
	"context"
	"errors"
	"os"
	"syscall"
	"time"
)

// ErrNotRunning says a recorded dyno process no longer runs (or is not the
// process the record describes).
var ErrNotRunning = errors.New("dyno process is not running")

// Runtime starts dynos. Implementations: Process and Runc.
type Runtime interface {
	// Name is "process" or "runc".
	Name() string
	// HomeDir is $HOME inside the dyno whose slug is unpacked at hostAppDir.
	HomeDir(hostAppDir string) string
	// AppOwner is the owner the unpacked slug must get so the dyno can write
	// to it; -1 leaves files owned by the agent's user.
	AppOwner() (uid, gid int)
	// Start starts a dyno. It returns once the dyno's process runs.
	Start(ctx context.Context, spec Spec) (Proc, error)
	// Adopt takes over a dyno started by an earlier agent. It returns
	// ErrNotRunning when the recorded process is gone or is not ours.
	Adopt(ctx context.Context, rec Record) (Proc, error)
	// Sweep stops and removes whatever this runtime started for this node
	// (cmdline marker prefix, or its container state directory) that is not
	// in keep: leftovers of an agent that died between starting a dyno and
	// recording it.
	Sweep(ctx context.Context, markerPrefix string, keep []Record) error
}

// Spec is what a runtime needs to start one dyno instance.
type Spec struct {
	DynoID   string
	Instance string
	Name     string // web.1
	// Marker identifies the dyno's processes (it is the shim's $0).
	Marker  string
	Command string
	// Env is the dyno's whole environment (KEY=VALUE), HOME included.
	Env []string
	// AppDir is the unpacked slug on the host; Dir is the instance's private
	// directory on the host (bundle, pipes, status file).
	AppDir string
	Dir    string
	Port   int
	// Limits from the dyno size.
	MemoryLimit int64 // bytes: the hard limit (R15)
	TmpBytes    int64 // size of the private /tmp
	CPUShares   uint64
	Pids        int64
	// Output receives stdout and stderr (nil with TTY). Status is given to
	// the shim as fd 3; it writes the command's exit status there.
	Output *os.File
	Status *os.File
	// TTY runs the dyno on a terminal (attached one-off dynos); Cols/Rows
	// size it.
	TTY        bool
	Cols, Rows uint16
}

// Record is what the supervisor persists about a running dyno to adopt it
// after an agent restart.
type Record struct {
	DynoID   string `json:"dyno_id"`
	Instance string `json:"instance"`
	AppID    string `json:"app_id"`
	Name     string `json:"name"`
	Runtime  string `json:"runtime"`
	Marker   string `json:"marker"`
	// Pid is the host pid of the dyno's first process (the shim); StartTime
	// is its start time in clock ticks (/proc/<pid>/stat field 22), which
	// tells it apart from a later process that reuses the pid.
	Pid         int       `json:"pid"`
	StartTime   uint64    `json:"start_time"`
	ContainerID string    `json:"container_id,omitempty"`
	Dir         string    `json:"dir"`
	StartedAt   time.Time `json:"started_at"`
	TTY         bool      `json:"tty,omitempty"`
}

// Exit is how a dyno's process ended.
type Exit struct {
	// Status is the shell's $?: the exit code, or 128+signal.
	Status int
	// Known is false when the status could not be learnt (an adopted dyno
	// killed before its shim could write it).
	Known bool
}

// MemoryUsage is a sample of a dyno's memory.
type MemoryUsage struct {
	Bytes int64
	// OOMKills counts processes the kernel killed for hitting the limit.
	OOMKills int
}

// Proc is a running dyno.
type Proc interface {
	Record() Record
	// Signal sends sig to every process of the dyno.
	Signal(sig syscall.Signal) error
	// Wait blocks until the dyno's first process has exited.
	Wait() Exit
	// Remaining counts the dyno's processes still running (after Wait,
	// those that outlive its first process).
	Remaining() int
	// Memory samples the dyno's memory use.
	Memory() (MemoryUsage, error)
	// TTY is the terminal's controlling side for an attached one-off (nil
	// otherwise).
	TTY() *os.File
	// Release cleans up after Wait: kills stragglers and removes the
	// runtime's state (the container). Not called for a detached dyno.
	Release() error
	// Detach stops watching the dyno and leaves it running (agent shutdown).
	Detach()
}
