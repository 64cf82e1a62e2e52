package logplex

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rsyslog is a private rsyslogd: its own config, work directory, pid file
// and port, writing every message it receives on TCP to out.log as
// "HOSTNAME|APP-NAME|PROCID|MSG". The system's rsyslog is never touched.
type rsyslog struct {
	t    *testing.T
	dir  string
	bin  string
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

func startRsyslog(t *testing.T) *rsyslog {
	bin, err := exec.LookPath("rsyslogd")
	if err != nil {
		for _, p := range []string{"/usr/sbin/rsyslogd", "/sbin/rsyslogd"} {
			if _, e := os.Stat(p); e == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("rsyslogd is required in CI (apt-get install rsyslog): %v", err)
		}
		t.Skip("rsyslogd not installed (apt-get install rsyslog)")
	}
	r := &rsyslog{t: t, dir: t.TempDir()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conf := fmt.Sprintf(`global(workDirectory=%q)
module(load="imtcp")
template(name="fields" type="string" string="%%hostname%%|%%app-name%%|%%procid%%|%%msg%%\n")
ruleset(name="drain") {
  action(type="omfile" file=%q template="fields")
}
input(type="imtcp" address="127.0.0.1" port="%d" ruleset="drain")
`, r.dir, filepath.Join(r.dir, "out.log"), r.port)
	if err := os.WriteFile(filepath.Join(r.dir, "rsyslog.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.stop)
	r.bin = bin
	r.start()
	return r
}

func (r *rsyslog) start() {
	r.t.Helper()
	r.cmd = exec.Command(r.bin, "-n", "-f", filepath.Join(r.dir, "rsyslog.conf"), "-i", filepath.Join(r.dir, "rsyslogd.pid"))
	out, err := os.Create(filepath.Join(r.dir, "rsyslogd.stderr"))
	if err != nil {
		r.t.Fatal(err)
	}
	r.cmd.Stdout, r.cmd.Stderr = out, out
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("starting rsyslogd: %v", err)
	}
	done := make(chan struct{})
	r.done = done
	go func() { r.cmd.Wait(); out.Close(); close(done) }()
	eventually(r.t, 20*time.Second, "rsyslogd listening", func() error {
		select {
		case <-done:
			b, _ := os.ReadFile(filepath.Join(r.dir, "rsyslogd.stderr"))
			r.t.Fatalf("rsyslogd exited: %s", b)
		default:
		}
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(r.port))
		if err != nil {
			return err
		}
		c.Close()
		return nil
	})
}

func (r *rsyslog) stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(15 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
	}
	r.cmd = nil
}

func (r *rsyslog) lines() []string {
	b, _ := os.ReadFile(filepath.Join(r.dir, "out.log"))
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// restartableHTTPS is an HTTPS drain receiver that can be stopped (its
// port closed) and started again on the same address.
type restartableHTTPS struct {
	*httpsReceiver
	addr string
	conf *tls.Config
	hs   *http.Server
}

func newRestartableHTTPS(t *testing.T) (*restartableHTTPS, *x509.CertPool) {
	h := &httpsReceiver{frameIDs: map[string]int{}}
	tmp := httptest.NewTLSServer(nil) // for a certificate
	pool := x509.NewCertPool()
	pool.AddCert(tmp.Certificate())
	cert := tmp.TLS.Certificates[0]
	tmp.Close()
	r := &restartableHTTPS{httpsReceiver: h, conf: &tls.Config{Certificates: []tls.Certificate{cert}}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.serve(ln)
	t.Cleanup(r.stop)
	return r, pool
}

func (r *restartableHTTPS) serve(ln net.Listener) {
	r.hs = &http.Server{Handler: http.HandlerFunc(r.httpsReceiver.serve)}
	go r.hs.Serve(tls.NewListener(ln, r.conf))
}

func (r *restartableHTTPS) stop() {
	if r.hs != nil {
		r.hs.Close()
		r.hs = nil
	}
}

func (r *restartableHTTPS) start(t *testing.T) {
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	r.serve(ln)
}

// checkStream verifies one drain's received lines: every line at most
// once, in order per dyno, and that received + the L10 counts account for
// every line emitted.
func checkStream(t *testing.T, name string, msgs []string, emitted map[string]int) (l10s, dropped int) {
	t.Helper()
	last := map[string]int{}
	got := 0
	for _, m := range msgs {
		if strings.HasPrefix(m, "Error L10 (output buffer overflow): ") {
			var n int
			if _, err := fmt.Sscanf(m, "Error L10 (output buffer overflow): %d messages dropped since", &n); err != nil {
				t.Fatalf("%s: L10 %q", name, m)
			}
			l10s++
			dropped += n
			continue
		}
		var dyno string
		var i int
		if _, err := fmt.Sscanf(m, "%s line %d", &dyno, &i); err != nil {
			t.Fatalf("%s: unexpected message %q", name, m)
		}
		if prev, ok := last[dyno]; ok && i <= prev {
			t.Fatalf("%s: %s line %d after line %d (repeated or out of order)", name, dyno, i, prev)
		}
		last[dyno] = i
		got++
	}
	total := 0
	for _, n := range emitted {
		total += n
	}
	if got+dropped != total {
		t.Fatalf("%s: received %d lines and L10s report %d dropped, but %d were emitted", name, got, dropped, total)
	}
	return l10s, dropped
}

// TestRealReceivers drains an app to a real rsyslogd (syslog://) and to an
// HTTPS receiver (https://), from three dynos at once; both receivers are
// then stopped while lines keep coming, and restarted.
func TestRealReceivers(t *testing.T) {
	rs := startRsyslog(t)
	hr, pool := newRestartableHTTPS(t)
	st := newTestState(t)
	app := st.createApp("demo")
	sd := st.addDrain(app, fmt.Sprintf("syslog://127.0.0.1:%d", rs.port))
	st.addDrain(app, "https://"+hr.addr+"/logs")
	const buffer = 200
	p := New(Options{NodeName: "n1", State: st, InputRate: MaxInputRate, DrainBuffer: buffer, DrainBackoff: fastBackoff(),
		DrainTLS: &tls.Config{RootCAs: pool}})
	defer p.Close()
	eventually(t, 5*time.Second, "drain workers", func() error {
		if len((*p.drains.Load())[app]) != 2 {
			return fmt.Errorf("no workers")
		}
		return nil
	})
	dynos := []string{"web.1", "web.2", "worker.1"}
	emitted := map[string]int{}
	emit := func(n int) {
		for i := 0; i < n; i++ {
			for _, d := range dynos {
				p.Emit(Line{AppID: app, Source: SourceApp, Proc: d, Text: fmt.Sprintf("%s line %d", d, emitted[d])})
				emitted[d]++
			}
		}
	}
	syslogMsgs := func() []string {
		var out []string
		for _, l := range rs.lines() {
			f := strings.SplitN(l, "|", 4)
			if len(f) != 4 {
				t.Fatalf("rsyslog line %q", l)
			}
			host, appName, proc, msg := f[0], f[1], f[2], strings.TrimPrefix(f[3], " ")
			if host != sd.Token {
				t.Fatalf("rsyslog saw hostname %q, want the drain token %s", host, sd.Token)
			}
			if strings.HasPrefix(msg, "Error L10") {
				if appName != "heroku" || proc != "logplex" {
					t.Fatalf("L10 from %s[%s]", appName, proc)
				}
			} else if appName != "app" || !strings.HasPrefix(msg, proc+" line ") {
				t.Fatalf("rsyslog parsed %q as app-name %q procid %q", l, appName, proc)
			}
			out = append(out, msg)
		}
		return out
	}
	httpsMsgs := func() []string {
		var out []string
		for _, m := range hr.messages() {
			f := httpsRE.FindStringSubmatch(m)
			if f == nil {
				t.Fatalf("https frame %q", m)
			}
			out = append(out, f[5])
		}
		return out
	}
	total := func() int {
		n := 0
		for _, v := range emitted {
			n += v
		}
		return n
	}
	waitAll := func(what string) {
		eventually(t, 30*time.Second, what, func() error {
			s, h := syslogMsgs(), httpsMsgs()
			for _, w := range p.DrainHealthLocal(app) {
				if w.Buffered != 0 {
					return fmt.Errorf("lines still buffered")
				}
			}
			want := total()
			if len(s) < want-int(p.DrainHealthLocal(app)[sd.ID].Dropped) || len(h) == 0 {
				return fmt.Errorf("rsyslog has %d, https %d of %d", len(s), len(h), want)
			}
			for _, d := range dynos {
				tail := fmt.Sprintf("%s line %d", d, emitted[d]-1)
				if !slices.Contains(s, tail) || !slices.Contains(h, tail) {
					return fmt.Errorf("%q not delivered yet", tail)
				}
			}
			return nil
		})
	}

	for i := 0; i < 10; i++ { // 300 lines, paced so the buffer never overflows
		emit(10)
		eventually(t, 10*time.Second, "an empty buffer", func() error {
			for _, w := range p.DrainHealthLocal(app) {
				if w.Buffered != 0 {
					return fmt.Errorf("lines still buffered")
				}
			}
			return nil
		})
	}
	waitAll("the first 300 lines")
	if l10, _ := checkStream(t, "rsyslog", syslogMsgs(), emitted); l10 != 0 {
		t.Fatalf("L10 without overflow")
	}
	if l10, _ := checkStream(t, "https", httpsMsgs(), emitted); l10 != 0 {
		t.Fatalf("L10 without overflow")
	}

	// Stop both receivers; a small outage fits in the buffer: nothing lost.
	rs.stop()
	hr.stop()
	emit(30) // 90 lines < buffer
	time.Sleep(500 * time.Millisecond)
	rs.start()
	hr.start(t)
	waitAll("the lines sent during a short outage")
	for name, msgs := range map[string][]string{"rsyslog": syslogMsgs(), "https": httpsMsgs()} {
		if l10, _ := checkStream(t, name, msgs, emitted); l10 != 0 {
			t.Fatalf("%s: lines were dropped during an outage that fits in the buffer", name)
		}
	}

	// A long outage: exactly one L10 per drain, with the right count.
	rs.stop()
	hr.stop()
	emit(200) // 600 lines > buffer
	time.Sleep(500 * time.Millisecond)
	rs.start()
	hr.start(t)
	waitAll("the lines after a long outage")
	for name, msgs := range map[string][]string{"rsyslog": syslogMsgs(), "https": httpsMsgs()} {
		l10, dropped := checkStream(t, name, msgs, emitted)
		if l10 != 1 || dropped < 600-buffer-httpBatch || dropped > 600-buffer {
			t.Fatalf("%s: %d L10 lines reporting %d dropped; want one, about %d", name, l10, dropped, 600-buffer)
		}
	}
}
