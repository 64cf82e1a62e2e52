package dyno

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/slipwayhq/slipway/cluster/clustertest"
	"github.com/slipwayhq/slipway/fsm"
)

// httpRPC is an RPCRequester over plain HTTP (cluster.Node adds its
// authentication header and transport).
type httpRPC struct{ c *http.Client }

func (h httpRPC) RPCRequest(ctx context.Context, method, addr, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, body)
	if err != nil {
		return nil, err
	}
	return h.c.Do(req)
}

func TestAttachOverInternalRPC(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Process{})
	h.deploy(makeSlug(t), map[string]string{"web": "bin/dynoapp web"})
	h.start()
	mux := http.NewServeMux()
	mux.Handle("POST "+AttachRPCPath, h.sup.AttachHandler())
	srv := httptest.NewServer(mux)
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	rpc := httpRPC{c: srv.Client()}

	d := h.place(dynoSpec{name: "run.5", command: "cat; echo done", oneOff: true, attach: true})
	ctx, cancel := context.WithCancel(context.Background())
	st, err := DialAttach(ctx, rpc, addr, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	cancel() // the stream outlives the request's context
	big := strings.Repeat("y", 100*1024)
	go func() {
		_, _ = io.WriteString(st, "abc\n")
		time.Sleep(100 * time.Millisecond)
		_, _ = io.WriteString(st, big[:1000]+"\n")
		_ = st.CloseWrite()
	}()
	out := readAll(t, st)
	st.Close()
	if !strings.Contains(out, "abc") || !strings.Contains(out, "done") || !strings.Contains(out, big[:1000]) {
		t.Fatalf("attached output %q", out)
	}
	h.waitState(d.ID, fsm.DynoDown)

	// Errors: a second client, a dyno that is not an attached one-off, a
	// dyno on another node.
	d2 := h.place(dynoSpec{name: "run.6", command: "sleep 1000", oneOff: true, attach: true})
	st2, err := DialAttach(context.Background(), rpc, addr, d2.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	if _, err := DialAttach(context.Background(), rpc, addr, d2.ID); !errors.Is(err, ErrAlreadyAttached) {
		t.Fatalf("second client: %v", err)
	}
	w := h.place(dynoSpec{name: "worker.1", command: "sleep 1000"})
	if _, err := DialAttach(context.Background(), rpc, addr, w.ID); !errors.Is(err, ErrNotAttachable) {
		t.Fatalf("formation dyno: %v", err)
	}
	elsewhere := h.place(dynoSpec{name: "run.8", command: "true", oneOff: true, attach: true})
	h.apply(fsm.CmdDynoPlan, fsm.DynoPlan{Place: []fsm.Placement{{ID: elsewhere.ID, Node: "other", Port: 1, Instance: uuid.NewString()}}}, nil)
	h.waitFor("moved", func() bool { _, ok := h.sup.Running()[elsewhere.ID]; return !ok })
	if _, err := DialAttach(context.Background(), rpc, addr, elsewhere.ID); !errors.Is(err, ErrUnknownDyno) || !strings.Contains(err.Error(), "another node") {
		t.Fatalf("dyno elsewhere: %v", err)
	}
}

// TestAttachThroughClusterRPC attaches through a real cluster node's
// internal RPC (its authentication, its transport).
func TestAttachThroughClusterRPC(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Process{})
	h.deploy(makeSlug(t), map[string]string{"web": "bin/dynoapp web"})
	h.start()
	c := clustertest.New(t, clustertest.Options{Voters: 1})
	m := c.Start("a", "z1", 1)
	m.Node.HandleRPC("POST "+AttachRPCPath, h.sup.AttachHandler())
	addr, ok := m.Node.RPCAddr("a")
	if !ok {
		t.Fatal("no RPC address")
	}
	d := h.place(dynoSpec{name: "run.9", command: "read x; echo \"remote $x\"", oneOff: true, attach: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := DialAttach(ctx, m.Node, addr, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(st, "hi\n"); err != nil {
		t.Fatal(err)
	}
	if out := readAll(t, st); !strings.Contains(out, "remote hi") {
		t.Fatalf("attached output %q", out)
	}
	st.Close()
	h.waitState(d.ID, fsm.DynoDown)
}
