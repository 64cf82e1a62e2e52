package logplex

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/slipwayhq/slipway/fsm"
)

// testState is a real FSM that tests write commands to directly.
type testState struct {
	t   testing.TB
	f   *fsm.FSM
	idx atomic.Uint64
}

func newTestState(t testing.TB) *testState {
	f, err := fsm.New(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return &testState{t: t, f: f}
}

func (s *testState) Snap() *fsm.Snap { return s.f.Snap() }

func (s *testState) apply(typ string, payload any) *fsm.Result {
	s.t.Helper()
	cmd, err := fsm.NewCommand(typ, uuid.NewString(), time.Now(), "", payload)
	if err != nil {
		s.t.Fatal(err)
	}
	b, err := cmd.Encode()
	if err != nil {
		s.t.Fatal(err)
	}
	return s.f.ApplyCommand(s.idx.Add(1), b)
}

func (s *testState) createApp(name string) string {
	s.t.Helper()
	id := uuid.NewString()
	res := s.apply(fsm.CmdAppCreate, fsm.AppCreate{App: fsm.App{ID: id, Name: name, Region: "local"},
		ReleaseID: uuid.NewString(), DefaultDomainID: uuid.NewString(), DefaultHostname: name + ".localhost"})
	if res.Err != nil {
		s.t.Fatal(res.Err)
	}
	return id
}

func (s *testState) addDrain(appID, url string) fsm.LogDrain {
	s.t.Helper()
	d := fsm.LogDrain{ID: uuid.NewString(), AppID: appID, URL: url, Token: "d." + uuid.NewString()}
	if res := s.apply(fsm.CmdDrainCreate, fsm.DrainCreate{Drain: d}); res.Err != nil {
		s.t.Fatal(res.Err)
	}
	return d
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
}

// frameReceiver is an octet-counting syslog receiver (TCP) for tests: it
// records each frame's message. Stop closes the listener and connections;
// Start listens again on the same address.
type frameReceiver struct {
	t    testing.TB
	addr string

	wrap func(net.Listener) net.Listener // TLS, when set

	mu    sync.Mutex
	ln    net.Listener
	conns []net.Conn
	msgs  []string
	bad   []string
}

func newFrameReceiver(t testing.TB) *frameReceiver {
	r := &frameReceiver{t: t}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.serve(ln)
	t.Cleanup(r.Stop)
	return r
}

func (r *frameReceiver) serve(ln net.Listener) {
	r.mu.Lock()
	r.ln = ln
	r.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.conns = append(r.conns, c)
			r.mu.Unlock()
			go r.read(c)
		}
	}()
}

func (r *frameReceiver) read(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		n, err := br.ReadString(' ')
		if err != nil {
			return
		}
		size, err := strconv.Atoi(n[:len(n)-1])
		if err != nil || size <= 0 || size > 1<<20 {
			r.mu.Lock()
			r.bad = append(r.bad, n)
			r.mu.Unlock()
			c.Close()
			return
		}
		buf := make([]byte, size)
		if _, err := io.ReadFull(br, buf); err != nil {
			return
		}
		r.mu.Lock()
		r.msgs = append(r.msgs, string(buf))
		r.mu.Unlock()
	}
}

func (r *frameReceiver) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ln != nil {
		r.ln.Close()
		r.ln = nil
	}
	for _, c := range r.conns {
		c.Close()
	}
	r.conns = nil
}

func (r *frameReceiver) Start() {
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		r.t.Fatal(err)
	}
	if r.wrap != nil {
		ln = r.wrap(ln)
	}
	r.serve(ln)
}

func (r *frameReceiver) Messages() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}
