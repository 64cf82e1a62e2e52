package router

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/net/websocket"

	"github.com/slipwayhq/slipway/fsm"
)

func wsEchoBackend(t *testing.T) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(websocket.Handler(func(ws *websocket.Conn) { io.Copy(ws, ws) }))
	t.Cleanup(s.Close)
	return s
}

// dialWS opens a WebSocket to host through the router.
func (tr *testRouter) dialWS(t *testing.T, host string) *websocket.Conn {
	t.Helper()
	cfg, err := websocket.NewConfig("ws://"+host+"/echo", "http://"+host+"/")
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", tr.addr)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := websocket.NewClient(cfg, c)
	if err != nil {
		c.Close()
		t.Fatalf("websocket handshake through the router: %v", err)
	}
	return ws
}

func TestWebSocketEchoSurvivesTableChanges(t *testing.T) {
	tr := newTestRouter(t, Options{})
	app := tr.createApp("demo")
	id := tr.addDyno(app, "web.1", hostPort(wsEchoBackend(t)), "n1", "a", fsm.DynoUp)
	tr.waitTable()
	ws := tr.dialWS(t, "demo.localhost")
	defer ws.Close()
	echo := func(msg string) {
		t.Helper()
		ws.SetDeadline(time.Now().Add(10 * time.Second))
		if err := websocket.Message.Send(ws, msg); err != nil {
			t.Fatal(err)
		}
		// The echo dyno may answer a big message in several frames.
		var got string
		for len(got) < len(msg) {
			var part string
			if err := websocket.Message.Receive(ws, &part); err != nil {
				t.Fatalf("echo of %d bytes: %v after %d bytes", len(msg), err, len(got))
			}
			got += part
		}
		if got != msg {
			t.Fatalf("echo of %d bytes came back different (%d bytes)", len(msg), len(got))
		}
	}
	echo("hello")
	tr.sink.waitLine(t, "status=101", "dyno=web.1")
	// The dyno leaves the table (scaled down, replaced): the open socket
	// is not cut.
	tr.removeDyno(id)
	tr.addDyno(app, "web.2", hostPort(wsEchoBackend(t)), "n1", "a", fsm.DynoUp)
	tr.waitTable()
	echo(strings.Repeat("big", 50000))
	echo("still here")
	// New sockets go to the new dyno.
	ws2 := tr.dialWS(t, "demo.localhost")
	ws2.Close()
	tr.sink.waitLine(t, "status=101", "dyno=web.2")
}

func TestWebSocketIdleTimeout(t *testing.T) {
	tr := newTestRouter(t, Options{IdleTimeout: 300 * time.Millisecond})
	app := tr.createApp("demo")
	tr.addDyno(app, "web.1", hostPort(wsEchoBackend(t)), "n1", "a", fsm.DynoUp)
	tr.waitTable()
	ws := tr.dialWS(t, "demo.localhost")
	defer ws.Close()
	// Traffic keeps it open past the idle window...
	for i := 0; i < 6; i++ {
		time.Sleep(100 * time.Millisecond)
		ws.SetDeadline(time.Now().Add(10 * time.Second))
		websocket.Message.Send(ws, "ping")
		var got string
		if err := websocket.Message.Receive(ws, &got); err != nil {
			t.Fatalf("socket closed while active: %v", err)
		}
	}
	// ...silence closes it.
	ws.SetDeadline(time.Now().Add(10 * time.Second))
	var got string
	if err := websocket.Message.Receive(ws, &got); err == nil || isTimeout(err) {
		t.Fatalf("idle socket: %q %v", got, err)
	}
}

// testCert makes a self-signed certificate for names, returning PEMs.
func testCert(t *testing.T, names ...string) (certPEM, keyPEM string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), DNSNames: names,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	cert, _ = x509.ParseCertificate(der)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})), cert
}

func TestHTTP2OverTLSWithSNICertificates(t *testing.T) {
	tr := newTestRouter(t, Options{Domain: "localhost"})
	app := tr.createApp("demo")
	var protos sync.Map
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		protos.Store(r.Proto, true)
		fmt.Fprintf(w, "proto=%s xfp=%s port=%s", r.Proto, r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Port"))
	}))
	defer s.Close()
	tr.addDyno(app, "web.1", hostPort(s), "n1", "a", fsm.DynoUp)
	for _, h := range []string{"secure.example.com", "*.example.org"} {
		tr.ok(fsm.CmdDomainCreate, fsm.DomainCreate{Domain: fsm.Domain{ID: uuid.NewString(), AppID: app.ID, Hostname: h}})
	}
	certA, keyA, leafA := testCert(t, "secure.example.com")
	certB, keyB, leafB := testCert(t, "*.example.org")
	for i, c := range [][2]string{{certA, keyA}, {certB, keyB}} {
		tr.ok(fsm.CmdCertPut, fsm.CertPut{Cert: fsm.Cert{ID: uuid.NewString(), AppID: app.ID, Name: "cert-" + strconv.Itoa(i),
			ChainPEM: c[0], KeyPEM: c[1], Hostnames: map[int][]string{0: {"secure.example.com"}, 1: {"*.example.org"}}[i]}})
	}
	tr.waitTable()
	_, tlsPort, _ := net.SplitHostPort(tr.tlsURL)
	get := func(host string) (*http.Response, *x509.Certificate, string) {
		t.Helper()
		var peer *x509.Certificate
		client := &http.Client{Transport: &http.Transport{
			ForceAttemptHTTP2: true,
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: host,
				VerifyConnection: func(cs tls.ConnectionState) error { peer = cs.PeerCertificates[0]; return nil }},
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "tcp", tr.tlsURL)
			},
		}}
		req, _ := http.NewRequest("GET", "https://"+host+"/", nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET https://%s: %v", host, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, peer, string(b)
	}
	resp, peer, body := get("secure.example.com")
	if resp.ProtoMajor != 2 {
		t.Fatalf("client protocol %s, want HTTP/2", resp.Proto)
	}
	if want := "proto=HTTP/1.1 xfp=https port=" + tlsPort; body != want {
		t.Fatalf("dyno saw %q, want %q", body, want)
	}
	if !peer.Equal(leafA) {
		t.Fatalf("secure.example.com served %v", peer.DNSNames)
	}
	if _, peer, _ := get("www.example.org"); !peer.Equal(leafB) {
		t.Fatalf("www.example.org served %v", peer.DNSNames)
	}
	// No app certificate: the router's default (self-signed, *.localhost).
	if _, peer, _ := get("demo.localhost"); peer.Subject.CommonName != "*.localhost" {
		t.Fatalf("default certificate %v", peer.Subject)
	}
	tr.sink.waitLine(t, "host=secure.example.com", "status=200", "protocol=https")
	if _, ok := protos.Load("HTTP/2.0"); ok {
		t.Fatal("a dyno received HTTP/2")
	}
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// countConns counts this process's TCP connections to a port (ESTABLISHED
// or otherwise live) from /proc/net/tcp.
func socketsTo(t *testing.T, addrs []string) int {
	t.Helper()
	want := map[string]bool{}
	for _, a := range addrs {
		_, p, _ := net.SplitHostPort(a)
		n, _ := strconv.Atoi(p)
		want[fmt.Sprintf("%04X", n)] = true
	}
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Skip("no /proc/net/tcp")
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		remPort := f[2][strings.IndexByte(f[2], ':')+1:]
		if want[remPort] && f[3] == "01" { // ESTABLISHED
			n++
		}
	}
	return n
}

func TestTableChurnUnderLoadDropsNothingAndLeaksNothing(t *testing.T) {
	tr := newTestRouter(t, Options{BackendIdleTimeout: 200 * time.Millisecond, MembersPoll: 20 * time.Millisecond})
	app := tr.createApp("demo")
	var backends []string
	for i := 0; i < 4; i++ {
		backends = append(backends, hostPort(echoBackend(t, "b"+strconv.Itoa(i))))
	}
	tr.addDyno(app, "web.1", backends[0], "n1", "a", fsm.DynoUp)
	tr.waitTable()
	// Warm up, then take the baseline.
	for i := 0; i < 10; i++ {
		tr.get("demo.localhost", "/")
	}
	tr.client.CloseIdleConnections()
	time.Sleep(300 * time.Millisecond)
	baseG, baseFD := runtime.NumGoroutine(), openFDs(t)

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("POST", "http://"+tr.addr+"/", strings.NewReader("payload"))
				req.Host = "demo.localhost"
				resp, err := tr.client.Do(req)
				if err == nil {
					var b []byte
					b, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && (resp.StatusCode != 200 || !strings.HasSuffix(string(b), ":payload")) {
						err = fmt.Errorf("status %d body %q", resp.StatusCode, b)
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
			}
		}()
	}
	// Scale up and down in a loop: dynos 2..4 come and go (and move
	// between backends) while web.1 stays.
	var extra []string
	changes := 0
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if len(extra) < 3 {
			extra = append(extra, tr.addDyno(app, "web."+strconv.Itoa(len(extra)+2), backends[1+changes%3], "n1", "a", fsm.DynoUp))
		} else {
			for _, id := range extra {
				tr.removeDyno(id)
			}
			extra = nil
		}
		changes++
		time.Sleep(2 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	t.Logf("%d requests, %d table changes", ok.Load(), changes)
	if failed.Load() > 0 || ok.Load() < 100 {
		t.Fatalf("%d failed, %d ok (first error: %v)", failed.Load(), ok.Load(), firstErr.Load())
	}
	// Nothing leaks: goroutines and fds come back to the baseline once
	// idle connections time out (client side closed here, dyno side by
	// the router's reaper).
	tr.client.CloseIdleConnections()
	var g, fd, socks int
	if !eventually(10*time.Second, func() bool {
		g, fd, socks = runtime.NumGoroutine(), openFDs(t), socketsTo(t, backends)
		return g <= baseG+2 && fd <= baseFD+2 && socks <= 2
	}) {
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		t.Fatalf("leak: goroutines %d (baseline %d), fds %d (baseline %d), sockets to dynos %d\n%s", g, baseG, fd, baseFD, socks, buf[:n])
	}
}
