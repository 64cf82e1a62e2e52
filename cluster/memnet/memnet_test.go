package memnet

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
)

// waitTimeout bounds every poll; generous for slow, -race machines.
const waitTimeout = 30 * time.Second

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkGoroutines polls until no more goroutines run than at baseline.
func checkGoroutines(t *testing.T, baseline int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		n := runtime.NumGoroutine()
		if n <= baseline {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines running, want at most %d:\n%s", n, baseline, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// recvResult carries the outcome of a Read done in another goroutine.
type recvResult struct {
	n   int
	err error
}

// readAsync starts a one-byte-buffer Read on c.
func readAsync(c net.Conn) <-chan recvResult {
	ch := make(chan recvResult, 1)
	go func() {
		n, err := c.Read(make([]byte, 1))
		ch <- recvResult{n, err}
	}()
	return ch
}

func awaitResult(t *testing.T, ch <-chan recvResult) recvResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(waitTimeout):
		t.Fatal("blocked operation did not return")
		return recvResult{}
	}
}

// serveEcho accepts connections on ln and echoes them until ln is closed.
func serveEcho(ln net.Listener) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
}

// within runs f in a goroutine and fails the test if it does not return
// within waitTimeout, so that broken deadlines cannot hang the test.
func within[T any](t *testing.T, what string, f func() T) T {
	t.Helper()
	ch := make(chan T, 1)
	go func() { ch <- f() }()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("%s did not return", what)
		var zero T
		return zero
	}
}

// echoOK reports whether a round trip of a short message over c works. It
// does not rely on deadlines to return.
func echoOK(c net.Conn, msg string) error {
	ch := make(chan error, 1)
	go func() { ch <- echo(c, msg) }()
	select {
	case err := <-ch:
		return err
	case <-time.After(waitTimeout + 5*time.Second):
		_ = c.Close()
		return errors.New("echo hung despite its deadline")
	}
}

func echo(c net.Conn, msg string) error {
	if err := c.SetDeadline(time.Now().Add(waitTimeout)); err != nil {
		return fmt.Errorf("set deadline: %w", err)
	}
	if _, err := io.WriteString(c, msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if string(buf) != msg {
		return fmt.Errorf("echo returned %q, want %q", buf, msg)
	}
	return nil
}

func dial(t *testing.T, from *Host, addr string) net.Conn {
	t.Helper()
	c, err := from.Dial(context.Background(), addr)
	if err != nil {
		t.Fatalf("dial %s -> %s: %v", from.Name(), addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func listen(t *testing.T, h *Host, port int) net.Listener {
	t.Helper()
	ln, err := h.Listen(port)
	if err != nil {
		t.Fatalf("listen on %s:%d: %v", h.Name(), port, err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAddresses(t *testing.T) {
	n := New()
	defer n.Close()
	a, b := n.Host("a"), n.Host("b")
	if got := a.IP().String(); got != "10.77.0.1" {
		t.Errorf("a.IP() = %s, want 10.77.0.1", got)
	}
	if got := b.IP().String(); got != "10.77.0.2" {
		t.Errorf("b.IP() = %s, want 10.77.0.2", got)
	}
	if n.Host("a") != a {
		t.Error("Host(a) returned a new host on second use")
	}
	if a.Name() != "a" {
		t.Errorf("a.Name() = %q", a.Name())
	}
	ip := a.IP()
	ip[3] = 99
	if a.IP().String() != "10.77.0.1" {
		t.Error("modifying the result of IP() changed the host's address")
	}
}

func TestStreamEcho(t *testing.T) {
	n := New()
	defer n.Close()
	a, b := n.Host("a"), n.Host("b")

	ln := listen(t, b, 80)
	if got := ln.Addr().String(); got != "10.77.0.2:80" {
		t.Errorf("listener address %s, want 10.77.0.2:80", got)
	}
	serveEcho(ln)
	c := dial(t, a, b.Addr(80))
	if err := echoOK(c, "hello"); err != nil {
		t.Fatal(err)
	}
	if la := c.LocalAddr().(*net.TCPAddr); !la.IP.Equal(a.IP()) || la.Port == 0 {
		t.Errorf("LocalAddr = %v, want %s:<ephemeral>", la, a.IP())
	}
	if ra := c.RemoteAddr().String(); ra != "10.77.0.2:80" {
		t.Errorf("RemoteAddr = %s, want 10.77.0.2:80", ra)
	}
	// Dialling by host name works too.
	c2 := dial(t, a, "b:80")
	if err := echoOK(c2, "by name"); err != nil {
		t.Fatal(err)
	}
}

func TestStreamConcurrentBulkTransfer(t *testing.T) {
	const size = 4 << 20
	n := New()
	defer n.Close()
	a, b := n.Host("a"), n.Host("b")
	ln := listen(t, b, 81)

	fromA, fromB := randomBytes(t, size), randomBytes(t, size)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	ca := dial(t, a, b.Addr(81))
	cb, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	defer cb.Close()
	if ra := cb.RemoteAddr().(*net.TCPAddr); !ra.IP.Equal(a.IP()) {
		t.Errorf("server side RemoteAddr = %v, want IP %s", ra, a.IP())
	}
	for _, c := range []net.Conn{ca, cb} {
		if err := c.SetDeadline(time.Now().Add(2 * waitTimeout)); err != nil {
			t.Fatal(err)
		}
	}

	// Each side writes in small chunks while reading concurrently.
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	got := make([][]byte, 2)
	send := func(c net.Conn, data []byte) {
		defer wg.Done()
		for len(data) > 0 {
			k := min(len(data), 32<<10)
			if _, err := c.Write(data[:k]); err != nil {
				errs <- fmt.Errorf("write: %w", err)
				return
			}
			data = data[k:]
		}
		if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
			errs <- fmt.Errorf("close write: %w", err)
		}
	}
	recv := func(c net.Conn, i int) {
		defer wg.Done()
		b, err := io.ReadAll(c)
		if err != nil {
			errs <- fmt.Errorf("read: %w", err)
		}
		got[i] = b
	}
	wg.Add(4)
	go send(ca, fromA)
	go send(cb, fromB)
	go recv(cb, 0)
	go recv(ca, 1)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if !bytes.Equal(got[0], fromA) {
		t.Errorf("b received %d bytes, not the %d bytes a sent", len(got[0]), len(fromA))
	}
	if !bytes.Equal(got[1], fromB) {
		t.Errorf("a received %d bytes, not the %d bytes b sent", len(got[1]), len(fromB))
	}
}

func TestStreamWriteIsBuffered(t *testing.T) {
	const size = 4 << 20
	n := New()
	defer n.Close()
	a, b := n.Host("a"), n.Host("b")
	ln := listen(t, b, 82)
	c := dial(t, a, b.Addr(82))
	data := randomBytes(t, size)
	// Nobody reads yet: the write must still complete.
	if err := c.SetWriteDeadline(time.Now().Add(waitTimeout)); err != nil {
		t.Fatal(err)
	}
	if k, err := c.Write(data); err != nil || k != size {
		t.Fatalf("unread write = %d, %v; want %d, nil", k, err, size)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// Data written before Close is still delivered, followed by EOF.
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := io.ReadAll(s)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, err %v; want the %d bytes written", len(got), err, size)
	}
	// Writing to a peer that closed fails.
	if _, err := s.Write([]byte("x")); !errors.Is(err, syscall.EPIPE) {
		t.Errorf("write to closed peer: %v, want EPIPE", err)
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close: %v, want net.ErrClosed", err)
	}
}

func TestRefusedAndListenAgain(t *testing.T) {
	n := New()
	defer n.Close()
	a, b := n.Host("a"), n.Host("b")

	if _, err := a.Dial(context.Background(), b.Addr(90)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial without listener: %v, want ECONNREFUSED", err)
	}
	if _, err := a.Dial(context.Background(), "10.77.9.9:90"); !errors.Is(err, syscall.EHOSTUNREACH) {
		t.Errorf("dial to unknown IP: %v, want EHOSTUNREACH", err)
	}
	if _, err := a.DialTimeout("nosuchhost:90", time.Second); err == nil {
		t.Error("dial to unknown host name succeeded")
	}
	if _, err := a.DialTimeout("garbage", time.Second); err == nil {
		t.Error("dial to malformed address succeeded")
	}
	if _, err := b.Listen(-1); err == nil {
		t.Error("Listen(-1) succeeded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := a.Dial(ctx, b.Addr(90)); !errors.Is(err, context.Canceled) {
		t.Errorf("dial with cancelled context: %v, want context.Canceled", err)
	}

	for round := range 3 {
		ln, err := b.Listen(90)
		if err != nil {
			t.Fatalf("round %d: listen: %v", round, err)
		}
		if _, err := b.Listen(90); !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("round %d: second listen: %v, want EADDRINUSE", round, err)
		}
		serveEcho(ln)
		c, err := a.DialTimeout(b.Addr(90), time.Second)
		if err != nil {
			t.Fatalf("round %d: dial: %v", round, err)
		}
		if err := echoOK(c, "round"); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		_ = c.Close()
		if err := ln.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("accept after close: %v, want net.ErrClosed", err)
		}
		if _, err := a.Dial(context.Background(), b.Addr(90)); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("round %d: dial after close: %v, want ECONNREFUSED", round, err)
		}
	}

	// Port 0 picks distinct free ports.
	l1, l2 := listen(t, b, 0), listen(t, b, 0)
	p1, p2 := l1.Addr().(*net.TCPAddr).Port, l2.Addr().(*net.TCPAddr).Port
	if p1 == 0 || p1 == p2 {
		t.Errorf("port 0 listeners got ports %d and %d", p1, p2)
	}

	// Datagram ports are freed by Close as well.
	pc, err := b.ListenPacket(53)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.ListenPacket(53); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("second ListenPacket: %v, want EADDRINUSE", err)
	}
	_ = pc.Close()
	pc, err = b.ListenPacket(53)
	if err != nil {
		t.Fatalf("ListenPacket after close: %v", err)
	}
	_ = pc.Close()
}

func TestListenerCloseResetsPending(t *testing.T) {
	n := New()
	defer n.Close()
	a, b := n.Host("a"), n.Host("b")
	ln, err := b.Listen(91)
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, a, b.Addr(91)) // never accepted
	_ = ln.Close()
	r := awaitResult(t, readAsync(c))
	if !errors.Is(r.err, syscall.ECONNRESET) {
		t.Errorf("read on unaccepted conn after listener close: %v, want ECONNRESET", r.err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() && errors.Is(err, os.ErrDeadlineExceeded)
}

func TestDeadlines(t *testing.T) {
	n := New()
	defer n.Close()
	a, b := n.Host("a"), n.Host("b")
	ln := listen(t, b, 80)
	c := dial(t, a, b.Addr(80))
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// A read on an idle connection times out.
	if err := c.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if r := awaitResult(t, readAsync(c)); !isTimeout(r.err) {
		t.Fatalf("read past deadline: %v, want a timeout", r.err)
	}
	// Clearing the deadline makes the connection usable again.
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if r := awaitResult(t, readAsync(c)); r.err != nil || r.n != 1 {
		t.Fatalf("read after clearing deadline: %d, %v", r.n, r.err)
	}

	// Moving the deadline into the past wakes a blocked reader (net/http does this).
	ch := readAsync(c)
	time.Sleep(10 * time.Millisecond)
	if err := c.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if r := awaitResult(t, ch); !isTimeout(r.err) {
		t.Fatalf("blocked read after deadline moved to the past: %v, want a timeout", r.err)
	}
	_ = c.SetReadDeadline(time.Time{})

	// A write that does not fit in the buffer times out, possibly after
	// writing what fits (unless the deadline passed before it started).
	if k, err := s.Write(make([]byte, StreamBufferSize-10)); err != nil {
		t.Fatalf("filling the buffer: %d, %v", k, err)
	}
	if err := s.SetWriteDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	r := within(t, "oversized write", func() recvResult {
		k, err := s.Write(make([]byte, 20))
		return recvResult{k, err}
	})
	if !isTimeout(r.err) || (r.n != 0 && r.n != 10) {
		t.Fatalf("write to a full buffer = %d, %v; want 10 or 0 and a timeout", r.n, r.err)
	}

	// Close wakes a blocked reader with net.ErrClosed.
	_ = s.SetDeadline(time.Time{})
	ch = readAsync(s)
	time.Sleep(10 * time.Millisecond)
	_ = s.Close()
	if r := awaitResult(t, ch); !errors.Is(r.err, net.ErrClosed) {
		t.Fatalf("blocked read after Close: %v, want net.ErrClosed", r.err)
	}

	// Packet conns honour read deadlines too.
	pc, err := a.ListenPacket(0)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	_ = pc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	err = within(t, "ReadFrom with deadline", func() error {
		_, _, err := pc.ReadFrom(make([]byte, 10))
		return err
	})
	if !isTimeout(err) {
		t.Fatalf("ReadFrom past deadline: %v, want a timeout", err)
	}
}

func TestPartition(t *testing.T) {
	n := New()
	defer n.Close()
	a, b, c, d := n.Host("a"), n.Host("b"), n.Host("c"), n.Host("d")
	for _, h := range []*Host{a, b, c, d} {
		serveEcho(listen(t, h, 80))
	}
	raw := listen(t, c, 90)

	ab := dial(t, a, b.Addr(80))
	ba := dial(t, b, a.Addr(80))
	ac := dial(t, a, c.Addr(90))
	ca, err := raw.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	cd := dial(t, c, d.Addr(80))
	for _, conn := range []net.Conn{ab, ba, cd} {
		if err := echoOK(conn, "before"); err != nil {
			t.Fatal(err)
		}
	}
	blocked := readAsync(ac)

	// d is in no group, so it forms a third group.
	n.Partition([]string{"a", "b"}, []string{"c"})

	if r := awaitResult(t, blocked); !errors.Is(r.err, syscall.ECONNRESET) {
		t.Errorf("blocked read across the partition: %v, want ECONNRESET", r.err)
	}
	if _, err := ca.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read on the other end: %v, want ECONNRESET", err)
	}
	if _, err := ca.Write([]byte("x")); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("write on the other end: %v, want ECONNRESET", err)
	}
	if err := echoOK(cd, "split"); err == nil {
		t.Error("connection c->d survived the partition")
	}
	for _, conn := range []net.Conn{ab, ba} {
		if err := echoOK(conn, "within"); err != nil {
			t.Errorf("connection within a group: %v", err)
		}
	}
	for _, tc := range []struct {
		from, to string
		want     bool
	}{
		{"a", "b", true}, {"b", "a", true}, {"a", "c", false}, {"c", "a", false},
		{"c", "d", false}, {"a", "d", false}, {"d", "e", true}, {"c", "c", true},
	} {
		if got := n.CanReach(tc.from, tc.to); got != tc.want {
			t.Errorf("CanReach(%s, %s) = %v, want %v", tc.from, tc.to, got, tc.want)
		}
	}
	if _, err := a.Dial(context.Background(), c.Addr(80)); !errors.Is(err, syscall.ENETUNREACH) {
		t.Errorf("dial across the partition: %v, want ENETUNREACH", err)
	}
	if err := echoOK(dial(t, a, b.Addr(80)), "new within"); err != nil {
		t.Errorf("new connection within a group: %v", err)
	}
	// A host can always talk to itself.
	if err := echoOK(dial(t, c, c.Addr(80)), "self"); err != nil {
		t.Errorf("connection to self: %v", err)
	}

	n.Heal()
	if !n.CanReach("a", "c") {
		t.Error("CanReach(a, c) = false after Heal")
	}
	if err := echoOK(dial(t, a, c.Addr(80)), "healed"); err != nil {
		t.Errorf("dial after Heal: %v", err)
	}

	// Isolate cuts one host off from everybody.
	ac2 := dial(t, a, c.Addr(80))
	n.Isolate("b")
	if err := echoOK(ab, "isolated"); err == nil {
		t.Error("connection a->b survived isolating b")
	}
	if err := echoOK(ac2, "not isolated"); err != nil {
		t.Errorf("connection a->c after isolating b: %v", err)
	}
	if n.CanReach("b", "a") || n.CanReach("d", "b") {
		t.Error("isolated host is reachable")
	}
	if _, err := b.Dial(context.Background(), a.Addr(80)); !errors.Is(err, syscall.ENETUNREACH) {
		t.Errorf("dial from isolated host: %v, want ENETUNREACH", err)
	}
	// A later partition keeps the isolation.
	n.Partition([]string{"a", "b"})
	if n.CanReach("a", "b") {
		t.Error("Partition lifted an isolation")
	}
	n.Heal()
	if err := echoOK(dial(t, b, a.Addr(80)), "healed again"); err != nil {
		t.Errorf("dial after Heal: %v", err)
	}
}

// readPacket reads one datagram with a deadline.
func readPacket(t *testing.T, pc net.PacketConn, wait time.Duration) (string, net.Addr, error) {
	t.Helper()
	if err := pc.SetReadDeadline(time.Now().Add(wait)); err != nil {
		return "", nil, err
	}
	type result struct {
		msg  string
		from net.Addr
		err  error
	}
	r := within(t, "ReadFrom", func() result {
		buf := make([]byte, 2048)
		k, from, err := pc.ReadFrom(buf)
		return result{string(buf[:k]), from, err}
	})
	return r.msg, r.from, r.err
}

func TestPackets(t *testing.T) {
	n := New()
	defer n.Close()
	a, b, c := n.Host("a"), n.Host("b"), n.Host("c")
	pcs := map[string]net.PacketConn{}
	for _, h := range []*Host{a, b, c} {
		pc, err := h.ListenPacket(53)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		pcs[h.Name()] = pc
	}
	send := func(from, to, msg string) {
		t.Helper()
		addr := &net.UDPAddr{IP: n.Host(to).IP(), Port: 53}
		if k, err := pcs[from].WriteTo([]byte(msg), addr); err != nil || k != len(msg) {
			t.Fatalf("WriteTo %s->%s = %d, %v", from, to, k, err)
		}
	}

	send("a", "b", "hello")
	msg, from, err := readPacket(t, pcs["b"], waitTimeout)
	if err != nil || msg != "hello" {
		t.Fatalf("b read %q, %v; want hello", msg, err)
	}
	if from.String() != "10.77.0.1:53" {
		t.Errorf("packet from %s, want 10.77.0.1:53", from)
	}

	n.Partition([]string{"a"}, []string{"b", "c"})
	send("a", "b", "lost")
	send("b", "c", "within")
	if msg, _, err := readPacket(t, pcs["c"], waitTimeout); err != nil || msg != "within" {
		t.Fatalf("c read %q, %v; want within", msg, err)
	}
	if msg, _, err := readPacket(t, pcs["b"], 200*time.Millisecond); !isTimeout(err) {
		t.Fatalf("b read %q, %v across the partition; want a timeout", msg, err)
	}

	n.Heal()
	send("a", "b", "healed")
	if msg, _, err := readPacket(t, pcs["b"], waitTimeout); err != nil || msg != "healed" {
		t.Fatalf("b read %q, %v after Heal; want healed (the dropped packet must not arrive)", msg, err)
	}

	// Datagrams to a port nobody listens on vanish without an error.
	if _, err := pcs["a"].WriteTo([]byte("x"), &net.UDPAddr{IP: b.IP(), Port: 54}); err != nil {
		t.Errorf("WriteTo unused port: %v", err)
	}
	// Long datagrams are truncated to the reader's buffer.
	send("a", "c", "0123456789")
	_ = pcs["c"].SetReadDeadline(time.Now().Add(waitTimeout))
	buf := make([]byte, 4)
	if k, _, err := pcs["c"].ReadFrom(buf); err != nil || string(buf[:k]) != "0123" {
		t.Errorf("truncated read = %q, %v", buf[:k], err)
	}
	// A closed conn reports net.ErrClosed.
	_ = pcs["c"].Close()
	if _, _, err := pcs["c"].ReadFrom(buf); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ReadFrom after Close: %v, want net.ErrClosed", err)
	}
	if _, err := pcs["c"].WriteTo([]byte("x"), pcs["a"].LocalAddr()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("WriteTo after Close: %v, want net.ErrClosed", err)
	}
}

func TestRemove(t *testing.T) {
	n := New()
	defer n.Close()
	a, b := n.Host("a"), n.Host("b")
	serveEcho(listen(t, b, 80))
	pc, err := b.ListenPacket(53)
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, a, b.Addr(80))
	if err := echoOK(c, "alive"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Time{})
	blocked := readAsync(c)

	n.Remove("b")
	if r := awaitResult(t, blocked); !errors.Is(r.err, syscall.ECONNRESET) {
		t.Errorf("read from a removed host's connection: %v, want ECONNRESET", r.err)
	}
	if _, err := a.Dial(context.Background(), b.Addr(80)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial to removed host: %v, want ECONNREFUSED", err)
	}
	if _, err := b.Listen(81); !errors.Is(err, ErrHostRemoved) || !errors.Is(err, syscall.ENETDOWN) {
		t.Errorf("Listen on removed host: %v, want ErrHostRemoved", err)
	}
	if _, err := b.Dial(context.Background(), a.Addr(80)); !errors.Is(err, ErrHostRemoved) {
		t.Errorf("Dial from removed host: %v, want ErrHostRemoved", err)
	}
	if _, _, err := pc.ReadFrom(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ReadFrom on removed host: %v, want net.ErrClosed", err)
	}
	n.Remove("b") // no-op

	b2 := n.Host("b")
	if b2 == b || !b2.IP().Equal(b.IP()) {
		t.Fatalf("restarted host: same object %v, IP %s (was %s)", b2 == b, b2.IP(), b.IP())
	}
	serveEcho(listen(t, b2, 80))
	if err := echoOK(dial(t, a, b.Addr(80)), "restarted"); err != nil {
		t.Errorf("dial to restarted host: %v", err)
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	baseline := runtime.NumGoroutine()
	n := New()
	a, b := n.Host("a"), n.Host("b")
	ln, err := b.Listen(80)
	if err != nil {
		t.Fatal(err)
	}
	serveEcho(ln)
	var results []<-chan recvResult
	for range 5 {
		c, err := a.Dial(context.Background(), b.Addr(80))
		if err != nil {
			t.Fatal(err)
		}
		if err := echoOK(c, "x"); err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(time.Hour))
		results = append(results, readAsync(c))
	}
	pc, err := a.ListenPacket(0)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _, _ = pc.ReadFrom(make([]byte, 10)) }()
	tr, err := b.MemberlistTransport(0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.DialTimeout(tr.Addr(), time.Second); err != nil {
		t.Fatal(err)
	}
	// The stream is waiting to be handed to memberlist, which does not exist.
	waitFor(t, "transport goroutine to accept", func() bool {
		tr.ln.mu.Lock()
		defer tr.ln.mu.Unlock()
		return len(tr.ln.queue) == 0
	})

	n.Close()
	for _, ch := range results {
		if r := awaitResult(t, ch); !errors.Is(r.err, syscall.ECONNRESET) {
			t.Errorf("read after Network.Close: %v, want ECONNRESET", r.err)
		}
	}
	if err := within(t, "transport shutdown", tr.Shutdown); err != nil {
		t.Fatal(err)
	}
	checkGoroutines(t, baseline)
	n.mu.Lock()
	left := len(n.conns)
	n.mu.Unlock()
	if left != 0 {
		t.Errorf("%d connections still tracked after Close", left)
	}
}

func TestConnsAreForgotten(t *testing.T) {
	n := New()
	defer n.Close()
	a, b := n.Host("a"), n.Host("b")
	serveEcho(listen(t, b, 80))
	for range 10 {
		c := dial(t, a, b.Addr(80))
		if err := echoOK(c, "x"); err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
	}
	waitFor(t, "closed connections to be forgotten", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return len(n.conns) == 0
	})
}

// memberlistNode is one member of the test cluster.
type memberlistNode struct {
	name string
	tr   *MemberlistTransport
	ml   *memberlist.Memberlist
}

func startMemberlist(t *testing.T, h *Host) *memberlistNode {
	t.Helper()
	tr, err := h.MemberlistTransport(7946)
	if err != nil {
		t.Fatal(err)
	}
	cfg := memberlist.DefaultLANConfig()
	cfg.Name = h.Name()
	cfg.Transport = tr
	cfg.Logger = log.New(io.Discard, "", 0)
	cfg.ProbeInterval = 100 * time.Millisecond
	cfg.ProbeTimeout = 50 * time.Millisecond
	cfg.GossipInterval = 20 * time.Millisecond
	cfg.SuspicionMult = 2
	cfg.PushPullInterval = 500 * time.Millisecond
	cfg.TCPTimeout = 2 * time.Second
	cfg.GossipToTheDeadTime = time.Second
	cfg.RetransmitMult = 2
	ml, err := memberlist.Create(cfg)
	if err != nil {
		_ = tr.Shutdown()
		t.Fatalf("memberlist.Create(%s): %v", h.Name(), err)
	}
	return &memberlistNode{name: h.Name(), tr: tr, ml: ml}
}

// aliveMembers returns the sorted names of the members node sees as alive.
func aliveMembers(node *memberlistNode) []string {
	var names []string
	for _, m := range node.ml.Members() {
		if m.State == memberlist.StateAlive {
			names = append(names, m.Name)
		}
	}
	slices.Sort(names)
	return names
}

func TestMemberlistCluster(t *testing.T) {
	baseline := runtime.NumGoroutine()
	n := New()
	var nodes []*memberlistNode
	for _, name := range []string{"n1", "n2", "n3"} {
		nodes = append(nodes, startMemberlist(t, n.Host(name)))
	}
	defer func() {
		for _, node := range nodes {
			_ = node.ml.Shutdown()
		}
		n.Close()
	}()
	if got := nodes[0].ml.LocalNode().Address(); got != "10.77.0.1:7946" {
		t.Errorf("advertised address %s, want 10.77.0.1:7946", got)
	}

	for _, node := range nodes[1:] {
		if _, err := node.ml.Join([]string{nodes[0].tr.Addr()}); err != nil {
			t.Fatalf("%s join: %v", node.name, err)
		}
	}
	all := []string{"n1", "n2", "n3"}
	waitAll := func(what string, nodes []*memberlistNode, want []string) {
		t.Helper()
		waitFor(t, what, func() bool {
			for _, node := range nodes {
				if !slices.Equal(aliveMembers(node), want) {
					return false
				}
			}
			return true
		})
	}
	waitAll("all nodes to see each other", nodes, all)

	n.Isolate("n3")
	waitFor(t, "n1 and n2 to declare n3 dead", func() bool {
		for _, node := range nodes[:2] {
			for _, m := range node.ml.Members() { // Members omits dead nodes
				if m.Name == "n3" {
					return false
				}
			}
		}
		return true
	})
	waitAll("n1 and n2 to see each other alive", nodes[:2], []string{"n1", "n2"})

	n.Heal()
	if _, err := nodes[2].ml.Join([]string{nodes[0].tr.Addr()}); err != nil {
		t.Fatalf("rejoin: %v", err)
	}
	waitAll("n3 to be alive again everywhere", nodes, all)

	for _, node := range nodes {
		if err := node.ml.Shutdown(); err != nil {
			t.Errorf("%s shutdown: %v", node.name, err)
		}
	}
	n.Close()
	checkGoroutines(t, baseline)
}

func TestRaftStreamLayer(t *testing.T) {
	n := New()
	defer n.Close()
	a, b := n.Host("a"), n.Host("b")
	la, err := a.RaftStreamLayer(0)
	if err != nil {
		t.Fatal(err)
	}
	lb, err := b.RaftStreamLayer(8300)
	if err != nil {
		t.Fatal(err)
	}
	ta := raft.NewNetworkTransport(la, 2, 2*time.Second, io.Discard)
	tb := raft.NewNetworkTransport(lb, 2, 2*time.Second, io.Discard)
	defer ta.Close()
	defer tb.Close()
	if got := tb.LocalAddr(); got != "10.77.0.2:8300" {
		t.Errorf("raft LocalAddr = %s, want 10.77.0.2:8300", got)
	}

	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case rpc := <-tb.Consumer():
				req, _ := rpc.Command.(*raft.AppendEntriesRequest)
				var term uint64
				if req != nil {
					term = req.Term
				}
				rpc.Respond(&raft.AppendEntriesResponse{Term: term, Success: true}, nil)
			case <-done:
				return
			}
		}
	}()
	appendEntries := func(term uint64) error {
		var resp raft.AppendEntriesResponse
		req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax}, Term: term}
		if err := ta.AppendEntries("b", tb.LocalAddr(), req, &resp); err != nil {
			return err
		}
		if !resp.Success || resp.Term != term {
			return fmt.Errorf("unexpected response %+v", resp)
		}
		return nil
	}
	if err := appendEntries(1); err != nil {
		t.Fatalf("AppendEntries: %v", err)
	}
	n.Partition([]string{"a"}, []string{"b"})
	if err := appendEntries(2); err == nil {
		t.Fatal("AppendEntries across a partition succeeded")
	}
	n.Heal()
	var last error
	waitFor(t, "AppendEntries to work after Heal", func() bool {
		last = appendEntries(3)
		return last == nil
	})
}

func TestHTTP(t *testing.T) {
	n := New()
	defer n.Close()
	a, b := n.Host("a"), n.Host("b")
	ln := listen(t, b, 8080)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello from b to "+r.RemoteAddr)
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	tr := &http.Transport{DialContext: a.DialContext}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: waitTimeout}
	get := func() (string, error) {
		resp, err := client.Get("http://" + b.Addr(8080) + "/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return string(body), err
	}
	body, err := get()
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	if !strings.HasPrefix(body, "hello from b to 10.77.0.1:") {
		t.Errorf("GET returned %q", body)
	}
	n.Partition([]string{"a"}, []string{"b"})
	if _, err := get(); !errors.Is(err, syscall.ENETUNREACH) && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("GET across a partition: %v, want ENETUNREACH or ECONNRESET", err)
	}
	n.Heal()
	var last error
	waitFor(t, "GET to work after Heal", func() bool {
		_, last = get()
		return last == nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("server shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
	}
}
