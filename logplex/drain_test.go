package logplex

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseDrainURL(t *testing.T) {
	good := []string{
		"syslog://logs.example.com:514", "syslog+tls://logs.example.com:6514", "SYSLOG://10.0.0.1:514",
		"syslog://[::1]:514", "https://logs.example.com/drain?x=1", "https://user:pw@example.com:8443/p",
		"http://127.0.0.1:8080/", "syslog://host_name.example:1/",
	}
	for _, u := range good {
		if _, err := ParseDrainURL(u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	bad := map[string]string{
		"":                                     "blank",
		"logs.example.com:514":                 "scheme",
		"ftp://example.com":                    "not supported",
		"syslog://example.com":                 "port",
		"syslog://:514":                        "host",
		"syslog://user:pw@example.com:514":     "credentials",
		"syslog://example.com:514/path":        "path",
		"syslog://example.com:99999":           "port",
		"syslog://example.com:0":               "port",
		"syslog://example.com:514?x=1":         "query",
		"https://example.com/#frag":            "fragment",
		"https://exa mple.com/":                "spaces",
		"https://ex%41mple.com/":               "invalid",
		"https://-bad-.example.com/":           "host",
		"https://0.0.0.0/":                     "unicast",
		"https://:pw@example.com/":             "user name",
		"syslog:example.com:514":               "host",
		"https://" + strings.Repeat("a", 3000): "too long",
		"https://a..b/":                        "host",
	}
	for u, want := range bad {
		_, err := ParseDrainURL(u)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one mentioning %q", u, err, want)
		}
	}
}

func FuzzParseDrainURL(f *testing.F) {
	for _, s := range []string{"syslog://h:1", "https://u:p@h/p?q", "syslog+tls://[::1]:6514", "http://h:80/#x", "%", "syslog://h:1/../"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseDrainURL(s)
		if err != nil {
			return
		}
		switch u.Scheme {
		case SchemeSyslog, SchemeSyslogTLS:
			if u.User != nil || u.Port() == "" || u.RawQuery != "" {
				t.Fatalf("accepted %q", s)
			}
		case SchemeHTTPS, SchemeHTTP:
		default:
			t.Fatalf("accepted scheme %q", u.Scheme)
		}
		if u.Hostname() == "" {
			t.Fatalf("accepted %q without a host", s)
		}
	})
}

// syslogRE parses what syslog drains get.
var syslogRE = regexp.MustCompile(`^<(\d+)>1 (\S+) (d\.[0-9a-f-]{36}) (app|heroku) (\S+) - - (.*)$`)

func fastBackoff() Backoff { return Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond} }

// TestSyslogDrainRestartAndOverflow: every line arrives once and in order;
// while the receiver is down the buffer keeps the newest lines and exactly
// one L10 reports how many were dropped.
func TestSyslogDrainRestartAndOverflow(t *testing.T) {
	for _, scheme := range []string{"syslog", "syslog+tls"} {
		t.Run(scheme, func(t *testing.T) {
			st := newTestState(t)
			app := st.createApp("demo")
			var rcv *frameReceiver
			var tlsConf *tls.Config
			if scheme == "syslog" {
				rcv = newFrameReceiver(t)
			} else {
				rcv, tlsConf = newTLSFrameReceiver(t)
			}
			d := st.addDrain(app, scheme+"://"+rcv.addr)
			p := New(Options{NodeName: "n1", State: st, InputRate: MaxInputRate, DrainBuffer: 50, DrainBackoff: fastBackoff(), DrainTLS: tlsConf})
			defer p.Close()
			eventually(t, 5*time.Second, "drain worker", func() error {
				if len((*p.drains.Load())[app]) != 1 {
					return fmt.Errorf("no worker")
				}
				return nil
			})
			emit := func(from, to int) {
				for i := from; i < to; i++ {
					p.Emit(Line{AppID: app, Source: SourceApp, Proc: "web.1", Text: fmt.Sprint("line ", i)})
				}
			}
			emit(0, 30)
			eventually(t, 10*time.Second, "30 lines", func() error {
				if n := len(rcv.Messages()); n != 30 {
					return fmt.Errorf("%d lines", n)
				}
				return nil
			})
			rcv.Stop()
			emit(30, 130) // 100 lines while down: at most 50 (+ a batch in flight) survive
			time.Sleep(300 * time.Millisecond)
			rcv.Start()
			var msgs []string
			eventually(t, 20*time.Second, "delivery after restart", func() error {
				msgs = rcv.Messages()
				if p.DrainHealthLocal(app)[d.ID].Buffered != 0 || !strings.Contains(strings.Join(msgs, "\n"), "line 129") {
					rcv.mu.Lock()
					defer rcv.mu.Unlock()
					return fmt.Errorf("%d messages so far (bad frames %q, conns %d, health %+v)", len(msgs), rcv.bad, len(rcv.conns), p.DrainHealthLocal(app)[d.ID])
				}
				return nil
			})
			seen := map[int]bool{}
			last := -1
			l10s, dropped := 0, 0
			for _, m := range msgs {
				f := syslogRE.FindStringSubmatch(m)
				if f == nil || f[3] != d.Token {
					t.Fatalf("malformed message %q", m)
				}
				if strings.HasPrefix(f[6], "Error L10") {
					l10s++
					if f[4] != "heroku" || f[5] != "logplex" {
						t.Fatalf("L10 from %s[%s]", f[4], f[5])
					}
					n, err := fmt.Sscanf(f[6], "Error L10 (output buffer overflow): %d messages dropped since", &dropped)
					if n != 1 || err != nil {
						t.Fatalf("L10 text %q", f[6])
					}
					continue
				}
				i, err := strconv.Atoi(strings.TrimPrefix(f[6], "line "))
				if err != nil || seen[i] || i <= last {
					t.Fatalf("line %q repeated or out of order (after %d)", f[6], last)
				}
				seen[i], last = true, i
			}
			if l10s != 1 {
				t.Fatalf("%d L10 lines, want 1", l10s)
			}
			if len(seen)+dropped != 130 || len(seen) < 30+50 {
				t.Fatalf("received %d lines, L10 says %d dropped: they should add up to 130", len(seen), dropped)
			}
			h := p.DrainHealthLocal(app)[d.ID]
			if h.Status != DrainOK || h.Dropped != uint64(dropped) || h.Delivered != uint64(len(seen)+1) {
				t.Fatalf("health %+v", h)
			}
		})
	}
}

// newTLSFrameReceiver is a frameReceiver behind TLS, with a client config
// trusting it.
func newTLSFrameReceiver(t *testing.T) (*frameReceiver, *tls.Config) {
	srv := httptest.NewUnstartedServer(nil)
	srv.StartTLS() // only for its certificate
	cert := srv.TLS.Certificates[0]
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	srv.Close()
	r := &frameReceiver{t: t}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	conf := &tls.Config{Certificates: []tls.Certificate{cert}}
	r.wrap = func(l net.Listener) net.Listener { return tls.NewListener(l, conf) }
	r.serve(r.wrap(ln))
	t.Cleanup(r.Stop)
	return r, &tls.Config{RootCAs: pool, ServerName: "example.com"}
}

// httpsReceiver is an HTTPS drain endpoint that records frames and can
// fail on demand.
type httpsReceiver struct {
	srv *httptest.Server

	mu       sync.Mutex
	status   int // answered when not 0
	msgs     []string
	frameIDs map[string]int
	headers  []http.Header
}

func newHTTPSReceiver(t *testing.T) *httpsReceiver {
	h := &httpsReceiver{frameIDs: map[string]int{}}
	h.srv = httptest.NewTLSServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *httpsReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.frameIDs[r.Header.Get("Logplex-Frame-Id")]++
	if h.status != 0 {
		w.WriteHeader(h.status)
		return
	}
	h.headers = append(h.headers, r.Header.Clone())
	br := bufio.NewReader(bytes.NewReader(body))
	var got []string
	for {
		n, err := br.ReadString(' ')
		if err != nil {
			break
		}
		size, _ := strconv.Atoi(strings.TrimSuffix(n, " "))
		buf := make([]byte, size)
		if _, err := io.ReadFull(br, buf); err != nil {
			w.WriteHeader(400)
			return
		}
		got = append(got, string(buf))
	}
	if c, _ := strconv.Atoi(r.Header.Get("Logplex-Msg-Count")); c != len(got) {
		w.WriteHeader(400)
		return
	}
	h.msgs = append(h.msgs, got...)
}

func (h *httpsReceiver) set(status int) {
	h.mu.Lock()
	h.status = status
	h.mu.Unlock()
}

func (h *httpsReceiver) messages() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.msgs...)
}

var httpsRE = regexp.MustCompile(`^<(\d+)>1 (\S+) host (app|heroku) (\S+) - (.*)\n$`)

func TestHTTPSDrain(t *testing.T) {
	st := newTestState(t)
	app := st.createApp("demo")
	rcv := newHTTPSReceiver(t)
	pool := x509.NewCertPool()
	pool.AddCert(rcv.srv.Certificate())
	d := st.addDrain(app, strings.Replace(rcv.srv.URL, "https://", "https://user:secret@", 1)+"/logs")
	p := New(Options{NodeName: "n1", State: st, InputRate: MaxInputRate, DrainBuffer: 40, DrainBackoff: fastBackoff(),
		DrainTLS: &tls.Config{RootCAs: pool}, Version: "test"})
	defer p.Close()
	eventually(t, 5*time.Second, "drain worker", func() error {
		if len((*p.drains.Load())[app]) != 1 {
			return fmt.Errorf("no worker")
		}
		return nil
	})
	for i := 0; i < 10; i++ {
		p.Emit(Line{AppID: app, Source: SourceApp, Proc: "web.1", Text: fmt.Sprint("a ", i)})
	}
	eventually(t, 10*time.Second, "10 lines", func() error {
		if n := len(rcv.messages()); n != 10 {
			return fmt.Errorf("%d", n)
		}
		return nil
	})
	rcv.mu.Lock()
	hd := rcv.headers[0]
	rcv.mu.Unlock()
	if hd.Get("Content-Type") != "application/logplex-1" || hd.Get("Logplex-Drain-Token") != d.Token ||
		!strings.HasPrefix(hd.Get("User-Agent"), "Logplex/") || hd.Get("Logplex-Frame-Id") == "" || hd.Get("Authorization") == "" {
		t.Fatalf("headers: %v", hd)
	}
	// The receiver fails for a while: the same frame is retried.
	rcv.set(503)
	for i := 10; i < 100; i++ {
		p.Emit(Line{AppID: app, Source: SourceApp, Proc: "web.1", Text: fmt.Sprint("a ", i)})
	}
	eventually(t, 10*time.Second, "a failing status", func() error {
		if h := p.DrainHealthLocal(app)[d.ID]; h.Status != DrainFailing || !strings.Contains(h.LastError, "503") {
			return fmt.Errorf("health %+v", h)
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond)
	rcv.set(0)
	var msgs []string
	eventually(t, 10*time.Second, "delivery", func() error {
		msgs = rcv.messages()
		if !strings.Contains(strings.Join(msgs, ""), "a 99\n") {
			return fmt.Errorf("%d messages", len(msgs))
		}
		return nil
	})
	rcv.mu.Lock()
	retried := 0
	for _, n := range rcv.frameIDs {
		if n > 1 {
			retried++
		}
	}
	rcv.mu.Unlock()
	if retried == 0 {
		t.Fatal("no frame id was seen more than once: retries must keep the frame id")
	}
	got, l10, dropped := 0, 0, 0
	for _, m := range msgs {
		f := httpsRE.FindStringSubmatch(m)
		if f == nil {
			t.Fatalf("malformed %q", m)
		}
		if strings.HasPrefix(f[5], "Error L10") {
			l10++
			fmt.Sscanf(f[5], "Error L10 (output buffer overflow): %d", &dropped)
			continue
		}
		got++
	}
	if l10 != 1 || got+dropped != 100 {
		t.Fatalf("%d lines + L10 says %d dropped (%d L10s); want a total of 100 and one L10", got, dropped, l10)
	}
	// A 4xx rejects the batch instead of retrying forever.
	rcv.set(400)
	p.Emit(Line{AppID: app, Source: SourceApp, Proc: "web.1", Text: "rejected"})
	eventually(t, 10*time.Second, "a rejection", func() error {
		if h := p.DrainHealthLocal(app)[d.ID]; h.Rejected != 1 {
			return fmt.Errorf("health %+v", h)
		}
		return nil
	})
}

func TestDrainDownNeverBlocksEmit(t *testing.T) {
	st := newTestState(t)
	app := st.createApp("demo")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// A receiver that accepts and never reads.
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	defer ln.Close()
	st.addDrain(app, "syslog://"+ln.Addr().String())
	p := New(Options{NodeName: "n1", State: st, InputRate: MaxInputRate, DrainBackoff: fastBackoff()})
	defer p.Close()
	eventually(t, 5*time.Second, "drain worker", func() error {
		if len((*p.drains.Load())[app]) != 1 {
			return fmt.Errorf("no worker")
		}
		return nil
	})
	done := make(chan struct{})
	go func() {
		big := strings.Repeat("x", 5000)
		for i := 0; i < 20000; i++ {
			p.Emit(Line{AppID: app, Source: SourceApp, Proc: "web.1", Text: big})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("Emit blocked behind a stuck drain")
	}
	if got := len(p.history(app, Filter{}, 10)); got != 10 {
		t.Fatalf("history has %d lines", got)
	}
}
