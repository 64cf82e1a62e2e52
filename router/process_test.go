package router

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/fsm"
)

// TestMain doubles as a dyno: with ROUTER_TEST_DYNO=name@addr set, the
// test binary serves HTTP on addr as that dyno until killed.
func TestMain(m *testing.M) {
	if spec := os.Getenv("ROUTER_TEST_DYNO"); spec != "" {
		name, addr, _ := strings.Cut(spec, "@")
		err := http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Dyno", name)
			time.Sleep(time.Millisecond) // some service time, so requests are in flight when it dies
			io.WriteString(w, "hello from "+name)
		}))
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// startDynoProcess runs a dyno as a separate process.
func startDynoProcess(t *testing.T, name string) (addr string, cmd *exec.Cmd) {
	t.Helper()
	addr = freeAddr(t)
	cmd = exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "ROUTER_TEST_DYNO="+name+"@"+addr)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if !eventually(10*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		t.Fatalf("dyno %s never listened", name)
	}
	return addr, cmd
}

// Done means 1, in process: three routers (three nodes' worth, in zones a,
// b and c) on one replicated state, an app with three web dynos that are
// real processes. Requests to any router reach all three dynos; kill -9
// of one dyno during a steady stream fails no request.
func TestThreeRoutersThreeDynoProcessesKillNine(t *testing.T) {
	tr := newTestRouter(t, Options{Zone: "a"})
	var routers []string
	routers = append(routers, tr.addr)
	for _, zone := range []string{"b", "c"} {
		rt, err := New(Options{Region: "local", Zone: zone, State: tr.f, Sink: tr.sink})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); rt.Run(ctx) }()
		go func() { defer wg.Done(); _ = rt.Serve(ln) }()
		t.Cleanup(func() { rt.Close(); cancel(); wg.Wait() })
		routers = append(routers, ln.Addr().String())
	}
	app := tr.createApp("demo")
	var cmds []*exec.Cmd
	for i, zone := range []string{"a", "b", "c"} {
		name := fmt.Sprintf("web.%d", i+1)
		addr, cmd := startDynoProcess(t, name)
		cmds = append(cmds, cmd)
		tr.addDyno(app, name, addr, "node-"+zone, zone, fsm.DynoUp)
	}
	tr.waitTable()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()
	get := func(router string) (string, error) {
		req, _ := http.NewRequest("GET", "http://"+router+"/", nil)
		req.Host = "demo.localhost"
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return "", err
		}
		if resp.StatusCode != 200 {
			return "", fmt.Errorf("status %d: %.80s", resp.StatusCode, b)
		}
		return resp.Header.Get("X-Dyno"), nil
	}
	// Every router reaches every dyno.
	for _, r := range routers {
		seen := map[string]bool{}
		for i := 0; i < 60 && len(seen) < 3; i++ {
			d, err := get(r)
			if err != nil {
				t.Fatalf("router %s: %v", r, err)
			}
			seen[d] = true
		}
		if len(seen) != 3 {
			t.Fatalf("router %s reached only %v", r, seen)
		}
	}
	// A steady stream through all three routers; kill -9 web.2 midway.
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 9; g++ {
		wg.Add(1)
		go func(r string) {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := get(r); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
			}
		}(routers[g%3])
	}
	eventually(10*time.Second, func() bool { return ok.Load() > 500 })
	if err := cmds[1].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	before := ok.Load()
	eventually(20*time.Second, func() bool { return ok.Load() > before+1500 })
	close(stop)
	wg.Wait()
	t.Logf("%d requests ok, %d failed", ok.Load(), failed.Load())
	if failed.Load() > 0 {
		t.Fatalf("%d requests failed after kill -9 of a dyno (first: %v)", failed.Load(), firstErr.Load())
	}
}
