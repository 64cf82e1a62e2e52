package rendezvous

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/slipwayhq/slipway/fsm"
	"github.com/slipwayhq/slipway/pki"
)

type state struct {
	t     *testing.T
	f     *fsm.FSM
	index uint64
}

func (s *state) apply(typ string, data any, into any) {
	s.t.Helper()
	cmd, _ := fsm.NewCommand(typ, uuid.NewString(), time.Now(), "", data)
	b, _ := cmd.Encode()
	s.index++
	if err := s.f.ApplyCommand(s.index, b).Decode(into); err != nil {
		s.t.Fatalf("%s: %v", typ, err)
	}
}

// oneOff makes an app with a release and an attached one-off dyno.
func oneOff(t *testing.T, secret string) (*state, *fsm.Dyno) {
	f, _ := fsm.New(nil)
	s := &state{t: t, f: f}
	var app fsm.App
	s.apply(fsm.CmdAppCreate, fsm.AppCreate{App: fsm.App{ID: uuid.NewString(), Name: "demo", Region: "r"}, ReleaseID: uuid.NewString()}, &app)
	slug := fsm.Slug{ID: uuid.NewString(), AppID: app.ID, ProcessTypes: map[string]string{"web": "x"}}
	s.apply(fsm.CmdSlugCreate, fsm.SlugCreate{Slug: slug}, nil)
	s.apply(fsm.CmdSlugUploaded, fsm.SlugUploaded{SlugID: slug.ID, Digest: "sha256:" + strings.Repeat("a", 64)}, nil)
	s.apply(fsm.CmdReleaseCreate, fsm.ReleaseCreate{AppID: app.ID, ReleaseID: uuid.NewString(), SlugID: slug.ID}, nil)
	var d fsm.Dyno
	s.apply(fsm.CmdDynoRun, fsm.DynoRun{Dyno: fsm.Dyno{ID: uuid.NewString(), AppID: app.ID, Name: "run.1", Command: "bash", Size: "Basic",
		Attach: true, AttachSecret: SecretHash(secret)}}, &d)
	return s, &d
}

func server(t *testing.T, s *state, attach AttachFunc) (addr string, roots *tls.Config) {
	ca, err := pki.NewCA("test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue("n1", []string{"127.0.0.1"}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	srv := &Server{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, Snap: s.f.Snap, Attach: attach,
		PlaceTimeout: 5 * time.Second, FirstLineGap: 10 * time.Millisecond}
	go srv.Serve(ctx, ln)
	pool, _ := ca.Pool()
	return ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

// echoAttach is a dyno terminal that echoes input upper-cased, then exits.
func echoAttach(ctx context.Context, d *fsm.Dyno) (io.ReadWriteCloser, error) {
	a, b := net.Pipe()
	go func() {
		defer b.Close()
		sc := bufio.NewScanner(b)
		for sc.Scan() {
			if sc.Text() == "exit" {
				return
			}
			io.WriteString(b, strings.ToUpper(sc.Text())+"\n")
		}
	}()
	return a, nil
}

func TestRendezvousSession(t *testing.T) {
	s, d := oneOff(t, "s3cret")
	addr, cfg := server(t, s, echoAttach)
	// Place the dyno a moment later: the server waits for it.
	go func() {
		time.Sleep(200 * time.Millisecond)
		s.apply(fsm.CmdDynoPlan, fsm.DynoPlan{Place: []fsm.Placement{{ID: d.ID, Node: "n1", Instance: uuid.NewString()}}}, nil)
	}()
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "s3cret\r\n")
	br := bufio.NewReader(c)
	first, err := br.ReadString('\n')
	if err != nil || first != "rendezvous\r\n" {
		t.Fatalf("first line %q, %v", first, err)
	}
	io.WriteString(c, "hello\n")
	got, err := br.ReadString('\n')
	if err != nil || got != "HELLO\n" {
		t.Fatalf("echo %q, %v", got, err)
	}
	io.WriteString(c, "exit\n")
	rest, _ := io.ReadAll(br)
	if len(rest) != 0 {
		t.Fatalf("unexpected output after exit: %q", rest)
	}
}

func TestRendezvousRejectsUnknownSecret(t *testing.T) {
	s, _ := oneOff(t, "right")
	addr, cfg := server(t, s, echoAttach)
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "wrong\r\n")
	b, _ := io.ReadAll(c)
	if !strings.Contains(string(b), "no dyno waits for this secret") {
		t.Fatalf("got %q", b)
	}
}

func TestSessionOutlivesClientInput(t *testing.T) {
	s, d := oneOff(t, "s3cret")
	s.apply(fsm.CmdDynoPlan, fsm.DynoPlan{Place: []fsm.Placement{{ID: d.ID, Node: "n1", Instance: uuid.NewString()}}}, nil)
	// A dyno that prints after its input has ended.
	slow := func(ctx context.Context, d *fsm.Dyno) (io.ReadWriteCloser, error) {
		a, b := net.Pipe()
		go func() {
			io.Copy(io.Discard, b)
		}()
		go func() {
			time.Sleep(300 * time.Millisecond)
			io.WriteString(b, "late output\n")
			b.Close()
		}()
		return a, nil
	}
	addr, cfg := server(t, s, slow)
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "s3cret\r\n")
	br := bufio.NewReader(c)
	if first, _ := br.ReadString('\n'); first != "rendezvous\r\n" {
		t.Fatalf("first line %q", first)
	}
	c.CloseWrite() // stdin at EOF
	rest, _ := io.ReadAll(br)
	if string(rest) != "late output\n" {
		t.Fatalf("after the client's input ended: %q", rest)
	}
}
