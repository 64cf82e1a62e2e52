package dyno

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/slipwayhq/slipway/fsm"
)

// Why a runner stops its dyno.
type stopReason int

const (
	stopNone     stopReason = iota
	stopAsked               // the dyno is wanted stopped: report down
	stopReplaced            // a new instance replaces it: nothing to report
	stopGone                // deleted or placed elsewhere: nothing to report
	stopDetach              // the agent stops: leave the dyno running
)

// runner runs one instance of a dyno, from slug to exit.
type runner struct {
	s         *Supervisor
	d         fsm.Dyno
	instance  string
	prev      *runner // the instance this one replaces: it must end first
	prevState string  // for "State changed from crashed to starting"
	adopted   Proc
	attached  *localStream // an attached one-off's client side
	lines     lineSink

	mu       sync.Mutex
	state    string // starting or up, for the log
	reason   stopReason
	stopping chan struct{} // closed on the first stop request
	done     chan struct{}
	attachCh chan attachReq
}

type attachReq struct {
	ctx   context.Context
	reply chan attachReply
}

type attachReply struct {
	s   Stream
	err error
}

func newRunner(s *Supervisor, d fsm.Dyno, prev *runner, prevState string) *runner {
	return &runner{s: s, d: d, instance: d.Instance, prev: prev, prevState: prevState, lines: s.lines(&d),
		state: fsm.DynoStarting, stopping: make(chan struct{}), done: make(chan struct{}), attachCh: make(chan attachReq)}
}

func (r *runner) requestStop(why stopReason) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reason != stopNone {
		if why == stopDetach && r.reason != stopDetach {
			return // already stopping for good
		}
		if r.reason == stopAsked && why == stopGone {
			r.reason = stopGone // nothing left to report to
		}
		return
	}
	r.reason = why
	close(r.stopping)
}

func (r *runner) stopReason() stopReason {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reason
}

func (r *runner) currentState() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state
}

func (r *runner) setState(st string) {
	r.mu.Lock()
	r.state = st
	r.mu.Unlock()
}

func (r *runner) isWeb() bool { return r.d.Type == "web" && !r.d.OneOff }

// launchError is a dyno that could not be started.
type launchError struct {
	reason string // R-code reason for the report
	err    error
}

func (e *launchError) Error() string { return e.err.Error() }

func (r *runner) run() {
	finalState := ""
	defer func() {
		close(r.done)
		r.s.runnerDone(r, finalState)
	}()
	if r.prevState != "" && r.adopted == nil {
		r.lines.heroku("State changed from %s to starting", r.prevState)
	}
	if r.prev != nil {
		select {
		case <-r.prev.done:
		case <-r.stopping:
			<-r.prev.done
		}
	}
	proc := r.adopted
	var out *os.File
	if proc == nil {
		var err error
		proc, out, err = r.launch()
		if err != nil {
			finalState = r.launchFailed(err)
			return
		}
	} else if !proc.Record().TTY {
		var err error
		if out, err = openOutputPipe(filepath.Join(proc.Record().Dir, "out")); err != nil {
			r.s.log.Warn("dyno output lost", "dyno", r.d.Name, "err", err)
		}
	}
	finalState = r.supervise(proc, out)
}

// launchFailed reports a dyno that never started.
func (r *runner) launchFailed(err error) string {
	switch why := r.stopReason(); {
	case why == stopDetach:
		return ""
	case why != stopNone:
		if why == stopAsked {
			r.lines.heroku("State changed from starting to down")
			r.s.report(&r.d, r.instance, fsm.DynoDown, nil, "")
		}
		return fsm.DynoDown
	}
	var le *launchError
	reason := "R99 Platform error"
	if errors.As(err, &le) {
		reason = le.reason
	}
	switch reason {
	case "R13 Attach error":
		r.lines.heroku("Error R13 (Attach error) -> Failed to attach to process")
	case "R17 Checksum error":
		r.lines.heroku("Error R17 (Checksum error) -> Checksum does not match")
	default:
		r.lines.heroku("Error R99 (Platform error) -> Failed to launch the dyno: %v", err)
	}
	r.s.log.Warn("dyno did not start", "dyno", r.d.Name, "instance", r.instance, "err", err)
	r.lines.heroku("State changed from starting to crashed")
	r.s.report(&r.d, r.instance, fsm.DynoCrashed, nil, truncateReason(reason+": "+err.Error()))
	return fsm.DynoCrashed
}

func truncateReason(s string) string {
	if len(s) > 500 {
		return s[:500]
	}
	return s
}

// launchCtx is cancelled when the runner is asked to stop.
func (r *runner) launchCtx() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(r.s.ctx)
	go func() {
		select {
		case <-r.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// launch fetches and unpacks the slug, waits for an attached one-off's
// client, and starts the dyno. It returns the read side of its output.
func (r *runner) launch() (Proc, *os.File, error) {
	ctx, cancel := r.launchCtx()
	defer cancel()
	ok := false
	snap := r.s.cfg.Snap()
	var rel *fsm.Release
	var slug *fsm.Slug
	digest := r.d.SlugDigest // a build dyno runs a given slug, maybe without a release
	if r.d.ReleaseID != "" {
		rel, ok = snap.Release(r.d.AppID, r.d.ReleaseID)
		if !ok && digest == "" {
			return nil, nil, &launchError{"R99 Platform error", fmt.Errorf("release %s not found", r.d.ReleaseID)}
		}
	}
	if digest == "" {
		if rel == nil {
			return nil, nil, &launchError{"R99 Platform error", errors.New("the dyno has neither a release nor a slug")}
		}
		if slug, ok = snap.Slug(rel.SlugID); !ok || slug.BlobDigest == "" {
			return nil, nil, &launchError{"R99 Platform error", fmt.Errorf("release v%d has no uploaded slug", rel.Version)}
		}
		digest = slug.BlobDigest
	}
	app, _ := snap.App(r.d.AppID)
	command := r.d.Command
	if command == "" && slug != nil {
		command = slug.ProcessTypes[r.d.Type]
	}
	if command == "" {
		return nil, nil, &launchError{"R99 Platform error", fmt.Errorf("no command for process type %s", r.d.Type)}
	}
	archive, err := r.fetchSlug(ctx, digest)
	if err != nil {
		return nil, nil, err
	}
	dir := filepath.Join(r.s.runs, containerID(r.d.ID, r.instance))
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, &launchError{"R99 Platform error", err}
	}
	started := false
	defer func() {
		if !started {
			_ = os.RemoveAll(dir)
		}
	}()
	appDir := filepath.Join(dir, "app")
	uid, gid := r.s.cfg.Runtime.AppOwner()
	f, err := os.Open(archive)
	if err != nil {
		return nil, nil, &launchError{"R99 Platform error", err}
	}
	err = Unpack(f, appDir, UnpackOptions{MaxBytes: r.s.cfg.MaxSlugBytes, UID: uid, GID: gid})
	f.Close()
	if err != nil {
		return nil, nil, &launchError{"R99 Platform error", err}
	}
	if uid >= 0 {
		// The instance directory must let the dyno's user reach /app.
		_ = os.Chmod(dir, 0o711)
	}

	var cols, rows uint16
	tty := r.d.OneOff && r.d.Attach
	var pending *attachReq
	if tty {
		req, err := r.waitAttach(ctx)
		if err != nil {
			return nil, nil, err
		}
		pending = req
		cols, rows = termSize(r.d.Env)
	}
	fail := func(err error) (Proc, *os.File, error) {
		if pending != nil {
			pending.reply <- attachReply{err: err}
		}
		return nil, nil, err
	}

	quota := int64(r.s.cfg.QuotaMB(r.d.Size)) << 20
	env := BuildEnv(EnvInput{Dyno: &r.d, App: app, Release: rel, Slug: slug, Home: r.s.cfg.Runtime.HomeDir(appDir),
		Metadata: snap.FeatureEnabled(r.d.AppID, "runtime-dyno-metadata")})
	status, err := os.OpenFile(statusFile(dir), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fail(&launchError{"R99 Platform error", err})
	}
	defer status.Close()
	var outW, outR *os.File
	if !tty {
		if outW, outR, err = makeOutputPipe(filepath.Join(dir, "out")); err != nil {
			return fail(&launchError{"R99 Platform error", err})
		}
		defer outW.Close()
	}
	spec := Spec{DynoID: r.d.ID, Instance: r.instance, Name: r.d.Name, Marker: dynoMarker(r.s.markerNode, r.d.ID, r.instance),
		Command: command, Env: env, AppDir: appDir, Dir: dir, Port: r.d.Port,
		MemoryLimit: 2 * quota, TmpBytes: quota, CPUShares: uint64(1024 * computeOf(r.d.Size)), Pids: pidsLimit(quota),
		Output: outW, Status: status, TTY: tty, Cols: cols, Rows: rows}
	if r.isWeb() && r.listening() {
		r.s.log.Warn("another process already listens on the dyno's port: it may be reported up too early", "dyno", r.d.Name, "port", r.d.Port)
	}
	proc, err := r.s.cfg.Runtime.Start(ctx, spec)
	if err != nil {
		if outR != nil {
			outR.Close()
		}
		return fail(&launchError{"R99 Platform error", err})
	}
	rec := proc.Record()
	rec.AppID = r.d.AppID
	if err := r.s.recs.save(rec); err != nil {
		r.s.log.Warn("dyno record not saved: the dyno will not be adopted after an agent restart", "dyno", r.d.Name, "err", err)
	}
	started = true
	r.lines.heroku("Starting process with command `%s`", command)
	if pending != nil {
		r.attached = newLocalStream(proc.TTY())
		pending.reply <- attachReply{s: r.attached}
	}
	return proc, outR, nil
}

// fetchSlug gets the slug archive, retrying a few times (a blob may be on
// its way to this node's zone).
func (r *runner) fetchSlug(ctx context.Context, digest string) (string, error) {
	var err error
	for attempt, wait := 0, time.Second; attempt < 4; attempt, wait = attempt+1, wait*3 {
		var p string
		if p, err = r.s.slugs.Get(ctx, digest); err == nil {
			return p, nil
		}
		var ce *ChecksumError
		if errors.As(err, &ce) {
			return "", &launchError{"R17 Checksum error", err}
		}
		if ctx.Err() != nil {
			break
		}
		r.s.log.Warn("fetching slug", "dyno", r.d.Name, "digest", digest, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	return "", &launchError{"R99 Platform error", err}
}

// waitAttach waits for the client of an attached one-off.
func (r *runner) waitAttach(ctx context.Context) (*attachReq, error) {
	deadline := r.d.CreatedAt.Add(r.s.cfg.AttachTimeout)
	if left := time.Until(deadline); r.d.CreatedAt.IsZero() || left > r.s.cfg.AttachTimeout || left <= 0 {
		deadline = time.Now().Add(r.s.cfg.AttachTimeout)
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for {
		select {
		case req := <-r.attachCh:
			if req.ctx.Err() != nil {
				continue
			}
			return &req, nil
		case <-t.C:
			return nil, &launchError{"R13 Attach error", errors.New("no client attached")}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// termSize reads COLUMNS and LINES, which `heroku run` sends.
func termSize(env map[string]string) (cols, rows uint16) {
	c, _ := strconv.Atoi(env["COLUMNS"])
	l, _ := strconv.Atoi(env["LINES"])
	if c <= 0 || c > 1000 || l <= 0 || l > 1000 {
		return 80, 24
	}
	return uint16(c), uint16(l)
}

func computeOf(size string) int {
	if s, ok := fsm.LookupDynoSize(size); ok && s.Compute > 0 {
		return s.Compute
	}
	return 1
}

// pidsLimit is Heroku's process/thread limit for a memory quota.
func pidsLimit(quota int64) int64 {
	switch mb := quota >> 20; {
	case mb <= 512:
		return 256
	case mb <= 1024:
		return 512
	case mb <= 2560:
		return 16384
	}
	return 32768
}

// supervise watches a running dyno until it exits or is detached, and
// returns the state it ended in ("" when detached).
func (r *runner) supervise(proc Proc, out *os.File) string {
	rec := proc.Record()
	pumped := make(chan struct{})
	if out != nil {
		go func() {
			defer close(pumped)
			pumpLines(out, r.lines.app)
		}()
	} else {
		close(pumped)
	}
	exitCh := make(chan Exit, 1)
	go func() { exitCh <- proc.Wait() }()

	cfg := r.s.cfg
	quota := int64(cfg.QuotaMB(r.d.Size)) << 20
	booted := r.currentState() == fsm.DynoUp
	if !booted && !r.isWeb() {
		booted = true
		r.up()
	}
	var probe <-chan time.Time
	var probeT *time.Ticker
	probeFast := time.Now().Add(2 * time.Second)
	if !booted {
		// Often at first (start time counts), then less.
		probeT = time.NewTicker(10 * time.Millisecond)
		defer probeT.Stop()
		probe = probeT.C
	}
	bootDeadline := rec.StartedAt.Add(cfg.BootTimeout)
	memT := time.NewTicker(cfg.MemoryInterval)
	defer memT.Stop()
	oomBase := -1
	if m, err := proc.Memory(); err == nil {
		oomBase = m.OOMKills
	}
	var lastR14 time.Time

	var expire <-chan time.Time // a one-off's time_to_live
	if r.d.ExpiresAt != nil {
		t := time.NewTimer(time.Until(*r.d.ExpiresAt))
		defer t.Stop()
		expire = t.C
	}
	var stopping <-chan struct{} = r.stopping
	var killTimer, hupTimer <-chan time.Time
	var detached <-chan struct{}
	if r.attached != nil {
		detached = r.attached.detached
	}
	killed, crashReason := false, ""
	kill := func(reason, line string) {
		if killed {
			return
		}
		killed = true
		if crashReason == "" {
			crashReason = reason
		}
		r.lines.heroku("%s", line)
		if err := proc.Signal(syscall.SIGKILL); err != nil {
			r.s.log.Warn("killing dyno", "dyno", r.d.Name, "err", err)
		}
	}
	var exit Exit
loop:
	for {
		select {
		case exit = <-exitCh:
			break loop
		case <-stopping:
			stopping = nil
			if r.stopReason() == stopDetach {
				proc.Detach()
				if out != nil {
					out.Close()
				}
				<-pumped
				return ""
			}
			r.lines.heroku("Stopping all processes with SIGTERM")
			if err := proc.Signal(syscall.SIGTERM); err != nil {
				r.s.log.Warn("stopping dyno", "dyno", r.d.Name, "err", err)
			}
			killTimer = time.After(cfg.StopTimeout)
		case <-killTimer:
			killTimer = nil
			r.lines.heroku("Error R12 (Exit timeout) -> At least one process failed to exit within %d seconds of SIGTERM", int(cfg.StopTimeout.Seconds()))
			kill("R12 Exit timeout", "Stopping remaining processes with SIGKILL")
		case <-probe:
			if !probeFast.IsZero() && time.Now().After(probeFast) {
				probeFast = time.Time{}
				probeT.Reset(100 * time.Millisecond)
			}
			if r.listening() {
				probeT.Stop()
				probe = nil
				r.up()
			} else if time.Now().After(bootDeadline) && !killed {
				probeT.Stop()
				probe = nil
				r.lines.heroku("Error R10 (Boot timeout) -> Web process failed to bind to $PORT within %d seconds of launch", int(cfg.BootTimeout.Seconds()))
				kill("R10 Boot timeout", "Stopping process with SIGKILL")
			}
		case <-memT.C:
			m, err := proc.Memory()
			if err != nil || killed {
				continue
			}
			pct := float64(m.Bytes) * 100 / float64(quota)
			switch {
			case oomBase >= 0 && m.OOMKills > oomBase, m.Bytes >= 2*quota:
				r.lines.heroku("Process running mem=%dM(%.1f%%)", m.Bytes>>20, pct)
				r.lines.heroku("Error R15 (Memory quota vastly exceeded)")
				kill("R15 Memory quota vastly exceeded", "Stopping process with SIGKILL")
			case m.Bytes > quota && time.Since(lastR14) >= cfg.R14Interval:
				lastR14 = time.Now()
				r.lines.heroku("Process running mem=%dM(%.1f%%)", m.Bytes>>20, pct)
				r.lines.heroku("Error R14 (Memory quota exceeded)")
			}
		case <-expire:
			expire = nil
			r.s.log.Info("dyno reached its time to live", "dyno", r.d.Name)
			r.requestStop(stopAsked)
		case req := <-r.attachCh:
			req.reply <- attachReply{err: ErrAlreadyAttached}
		case <-detached:
			detached = nil
			_ = proc.Signal(syscall.SIGHUP)
			hupTimer = time.After(cfg.StopTimeout)
		case <-hupTimer:
			hupTimer = nil
			r.lines.heroku("Error R16 (Detached) -> An attached process is not responding to SIGHUP after its external connection was closed.")
			kill("R16 Detached", "Stopping all processes with SIGKILL")
		}
	}
	// A stopping dyno is down once all its processes are: wait for those
	// that outlive its first one, up to the stop timeout.
	if stopping == nil && !killed && proc.Remaining() > 0 {
		t := time.NewTicker(100 * time.Millisecond)
		for !killed && proc.Remaining() > 0 {
			select {
			case <-t.C:
			case <-killTimer:
				r.lines.heroku("Error R12 (Exit timeout) -> At least one process failed to exit within %d seconds of SIGTERM", int(cfg.StopTimeout.Seconds()))
				kill("R12 Exit timeout", "Stopping remaining processes with SIGKILL")
				exit = Exit{Status: 128 + int(syscall.SIGKILL), Known: true}
			}
		}
		t.Stop()
	}
	// The kernel may have killed the dyno at its memory limit.
	if m, err := proc.Memory(); err == nil && oomBase >= 0 && m.OOMKills > oomBase && crashReason == "" {
		r.lines.heroku("Error R15 (Memory quota vastly exceeded)")
		crashReason = "R15 Memory quota vastly exceeded"
	}
	select {
	case <-pumped:
	case <-time.After(2 * time.Second): // a child still holds the pipe
	}
	if err := proc.Release(); err != nil {
		r.s.log.Warn("cleaning up dyno", "dyno", r.d.Name, "err", err)
	}
	if out != nil {
		out.Close()
	}
	if !exit.Known && killed {
		exit = Exit{Status: 128 + int(syscall.SIGKILL), Known: true}
	}
	if exit.Known {
		r.lines.heroku("Process exited with status %d", exit.Status)
	} else {
		r.lines.heroku("Process exited")
	}
	var status *int
	if exit.Known {
		st := exit.Status
		status = &st
	}
	from := r.currentState()
	final := fsm.DynoCrashed
	switch why := r.stopReason(); {
	case why == stopAsked:
		final = fsm.DynoDown
		r.lines.heroku("State changed from %s to down", from)
		r.s.report(&r.d, r.instance, fsm.DynoDown, status, crashReason)
	case why == stopGone:
		final = fsm.DynoDown
		r.lines.heroku("State changed from %s to down", from)
	case why == stopReplaced:
		final = fsm.DynoDown
	case r.d.OneOff && exit.Known && exit.Status == 0 && crashReason == "":
		final = fsm.DynoDown
		r.lines.heroku("State changed from %s to complete", from)
		r.s.report(&r.d, r.instance, fsm.DynoDown, status, "")
	default:
		r.lines.heroku("State changed from %s to crashed", from)
		if crashReason == "" {
			crashReason = exitReason(exit)
		}
		r.s.report(&r.d, r.instance, fsm.DynoCrashed, status, crashReason)
	}
	r.s.recs.remove(rec)
	if err := os.RemoveAll(rec.Dir); err != nil {
		r.s.log.Warn("removing dyno files", "dyno", r.d.Name, "err", err)
	}
	return final
}

// up records and reports that the dyno is up.
func (r *runner) up() {
	r.setState(fsm.DynoUp)
	r.lines.heroku("State changed from starting to up")
	r.s.report(&r.d, r.instance, fsm.DynoUp, nil, "")
}

// listening reports whether the dyno's $PORT accepts connections.
func (r *runner) listening() bool {
	if r.d.Port <= 0 {
		return false
	}
	hosts := []string{"127.0.0.1"}
	if r.d.Addr != "" && r.d.Addr != "127.0.0.1" {
		hosts = append(hosts, r.d.Addr)
	}
	for _, h := range hosts {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(h, strconv.Itoa(r.d.Port)), 250*time.Millisecond)
		if err == nil {
			c.Close()
			return true
		}
	}
	return false
}

// attach hands the terminal of an attached one-off to a client.
func (r *runner) attach(ctx context.Context) (Stream, error) {
	if !r.d.OneOff || !r.d.Attach {
		return nil, ErrNotAttachable
	}
	req := attachReq{ctx: ctx, reply: make(chan attachReply, 1)}
	select {
	case r.attachCh <- req:
	case <-r.done:
		return nil, ErrNotAttachable
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case rep := <-req.reply:
		return rep.s, rep.err
	case <-ctx.Done():
		// The dyno may start anyway; its client has gone: SIGHUP (R16).
		go func() {
			if rep := <-req.reply; rep.s != nil {
				rep.s.Close()
			}
		}()
		return nil, ctx.Err()
	}
}
