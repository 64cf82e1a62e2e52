// Command router benchmarks Slipway's router against a direct connection
// and against nginx with upstream keep-alive, on one machine, in one run.
//
//	go run ./bench/router [-d 10s] [-runs 1] [-conns 16,64,256] [-bodies 1k,64k]
//
// The backend (a static nginx serving ~1 KB and ~64 KB files) and wrk are
// pinned to CPU 0; each proxy gets CPU 1 alone (taskset; GOMAXPROCS=1 for
// the router, worker_processes 1 for nginx). Both proxies add the same
// forwarding headers and keep connections to the backend alive; neither
// writes access logs (the router formats its log line and discards it).
// For each case it prints requests/s, p50/p99 latency, the proxy's CPU
// time per request (Δ utime+stime from /proc/PID/stat ÷ requests), and
// the ratios router/direct and router/nginx. It needs nginx, wrk and
// taskset (apt-get install nginx wrk util-linux).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/slipwayhq/slipway/fsm"
	"github.com/slipwayhq/slipway/logplex"
	"github.com/slipwayhq/slipway/router"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve-router" {
		if err := serveRouter(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "serve-router:", err)
			os.Exit(1)
		}
		return
	}
	dur := flag.Duration("d", 10*time.Second, "duration of each wrk run")
	warm := flag.Duration("warmup", 3*time.Second, "warm-up before each target's runs")
	runs := flag.Int("runs", 1, "runs per case (the median is reported)")
	connsFlag := flag.String("conns", "16,64,256", "wrk connection counts")
	bodiesFlag := flag.String("bodies", "1k,64k", "response bodies: 1k and/or 64k")
	proxyCPU := flag.String("proxy-cpu", "1", "CPU the proxy is pinned to")
	loadCPU := flag.String("load-cpu", "0", "CPU wrk and the backend are pinned to")
	profile := flag.String("profile", "", "write the router's CPU and allocation profiles (whole run) to PREFIX.cpu and PREFIX.allocs")
	withNetHTTP := flag.Bool("nethttp", false, "also measure the router with net/http serving plain HTTP (target router-std)")
	flag.Parse()
	if err := run(*dur, *warm, *runs, *connsFlag, *bodiesFlag, *proxyCPU, *loadCPU, *profile, *withNetHTTP); err != nil {
		fmt.Fprintln(os.Stderr, "bench/router:", err)
		os.Exit(1)
	}
}

type result struct {
	rps, p50, p99 float64 // req/s, ms, ms
	cpuUS         float64 // µs of proxy (or backend) CPU per request
	errors        int
}

func run(dur, warm time.Duration, runs int, connsFlag, bodiesFlag, proxyCPU, loadCPU, profile string, withNetHTTP bool) error {
	for _, tool := range []string{"nginx", "wrk", "taskset"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (apt-get install nginx wrk util-linux): %w", tool, err)
		}
	}
	dir, err := os.MkdirTemp("", "bench-router-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	ports, err := freePorts(4)
	if err != nil {
		return err
	}
	backendPort, nginxPort, routerPort, stdPort := ports[0], ports[1], ports[2], ports[3]
	www := filepath.Join(dir, "www")
	if err := os.MkdirAll(www, 0o755); err != nil {
		return err
	}
	for name, size := range map[string]int{"1k": 1024, "64k": 64 << 10} {
		if err := os.WriteFile(filepath.Join(www, name), []byte(strings.Repeat("x", size)), 0o644); err != nil {
			return err
		}
	}
	backend, err := startNginx(ctx, dir, "backend", loadCPU, backendConf(dir, www, backendPort))
	if err != nil {
		return err
	}
	defer stopProc(backend)
	nginxProxy, err := startNginx(ctx, dir, "proxy", proxyCPU, proxyConf(dir, nginxPort, backendPort))
	if err != nil {
		return err
	}
	defer stopProc(nginxProxy)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"-c", proxyCPU, self, "serve-router", "-listen", fmt.Sprintf("127.0.0.1:%d", routerPort), "-backend", fmt.Sprintf("127.0.0.1:%d", backendPort)}
	if profile != "" {
		args = append(args, "-cpuprofile", profile+".cpu", "-memprofile", profile+".allocs")
	}
	rcmd, err := startRouter(ctx, args)
	if err != nil {
		return err
	}
	defer stopProc(rcmd)
	var scmd *exec.Cmd
	if withNetHTTP {
		sargs := []string{"-c", proxyCPU, self, "serve-router", "-nethttp", "-listen", fmt.Sprintf("127.0.0.1:%d", stdPort), "-backend", fmt.Sprintf("127.0.0.1:%d", backendPort)}
		if scmd, err = startRouter(ctx, sargs); err != nil {
			return err
		}
		defer stopProc(scmd)
		if err := waitPort(stdPort); err != nil {
			return err
		}
	}
	for _, p := range []int{backendPort, nginxPort, routerPort} {
		if err := waitPort(p); err != nil {
			return err
		}
	}
	gover := runtime.Version()
	nver, _ := exec.Command("nginx", "-v").CombinedOutput()
	fmt.Printf("router bench: %s, %s, GOGC=%s, GOMAXPROCS=1 (router), worker_processes 1 (nginx); proxy on CPU %s, wrk+backend on CPU %s; %d run(s) of %s per case\n",
		gover, strings.TrimSpace(string(nver)), envOr("GOGC", "100"), proxyCPU, loadCPU, runs, dur)

	type target struct {
		name string
		port int
		pid  int
	}
	targets := []target{{"direct", backendPort, backend.Process.Pid}, {"router", routerPort, rcmd.Process.Pid}, {"nginx", nginxPort, nginxProxy.Process.Pid}}
	if scmd != nil {
		targets = append(targets, target{"router-std", stdPort, scmd.Process.Pid})
	}
	conns := splitInts(connsFlag)
	bodies := strings.Split(bodiesFlag, ",")
	res := map[string]result{}
	for _, body := range bodies {
		for _, tg := range targets {
			url := fmt.Sprintf("http://127.0.0.1:%d/%s", tg.port, body)
			if _, err := wrk(ctx, loadCPU, url, 64, warm, tg.pid); err != nil {
				return fmt.Errorf("warm-up %s: %w", tg.name, err)
			}
			for _, c := range conns {
				var rs []result
				for i := 0; i < runs; i++ {
					r, err := wrk(ctx, loadCPU, url, c, dur, tg.pid)
					if err != nil {
						return fmt.Errorf("%s %s c=%d: %w", tg.name, body, c, err)
					}
					rs = append(rs, r)
				}
				res[fmt.Sprintf("%s/%s/%d", tg.name, body, c)] = median(rs)
			}
		}
	}
	fmt.Println()
	fmt.Printf("%-5s %5s  %-7s %10s %9s %9s %11s %7s\n", "body", "conns", "target", "req/s", "p50 ms", "p99 ms", "cpu µs/req", "errors")
	for _, body := range bodies {
		for _, c := range conns {
			for _, tg := range targets {
				r := res[fmt.Sprintf("%s/%s/%d", tg.name, body, c)]
				fmt.Printf("%-5s %5d  %-7s %10.0f %9.2f %9.2f %11.1f %7d\n", body, c, tg.name, r.rps, r.p50, r.p99, r.cpuUS, r.errors)
			}
			d, ro, n := res[fmt.Sprintf("direct/%s/%d", body, c)], res[fmt.Sprintf("router/%s/%d", body, c)], res[fmt.Sprintf("nginx/%s/%d", body, c)]
			fmt.Printf("%-5s %5d  ratios: router/direct rps %.2f, router/nginx rps %.2f, cpu/req router/nginx %.2f; added p99 router %+.2f ms, nginx %+.2f ms\n\n",
				body, c, ro.rps/d.rps, ro.rps/n.rps, ro.cpuUS/n.cpuUS, ro.p99-d.p99, n.p99-d.p99)
		}
	}
	return nil
}

func startRouter(ctx context.Context, args []string) (*exec.Cmd, error) {
	cmd := exec.CommandContext(ctx, "taskset", args...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the router: %w", err)
	}
	return cmd, nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func splitInts(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func median(rs []result) result {
	best := rs[0]
	if len(rs) > 2 {
		// sort by rps, take the middle
		for i := range rs {
			for j := i + 1; j < len(rs); j++ {
				if rs[j].rps < rs[i].rps {
					rs[i], rs[j] = rs[j], rs[i]
				}
			}
		}
		best = rs[len(rs)/2]
	}
	return best
}

var (
	reRPS     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	reReqs    = regexp.MustCompile(`(\d+) requests in`)
	rePct     = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	reNon2xx  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	reSockErr = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// wrk runs wrk pinned to cpu and measures pid's CPU time over the run.
func wrk(ctx context.Context, cpu, url string, conns int, d time.Duration, pid int) (result, error) {
	before, err := cpuTicks(pid)
	if err != nil {
		return result{}, err
	}
	out, err := exec.CommandContext(ctx, "taskset", "-c", cpu, "wrk", "-t1", "-c"+strconv.Itoa(conns),
		"-d"+strconv.Itoa(int(d.Seconds()))+"s", "--latency", "-H", "Host: bench.localhost", url).CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("wrk: %w: %s", err, out)
	}
	after, err := cpuTicks(pid)
	if err != nil {
		return result{}, err
	}
	s := string(out)
	var r result
	if m := reRPS.FindStringSubmatch(s); m != nil {
		r.rps, _ = strconv.ParseFloat(m[1], 64)
	}
	reqs := 0.0
	if m := reReqs.FindStringSubmatch(s); m != nil {
		reqs, _ = strconv.ParseFloat(m[1], 64)
	}
	for _, m := range rePct.FindAllStringSubmatch(s, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		switch m[3] {
		case "us":
			v /= 1000
		case "s":
			v *= 1000
		}
		if m[1] == "50" {
			r.p50 = v
		} else {
			r.p99 = v
		}
	}
	if m := reNon2xx.FindStringSubmatch(s); m != nil {
		n, _ := strconv.Atoi(m[1])
		r.errors += n
	}
	if m := reSockErr.FindStringSubmatch(s); m != nil {
		for _, f := range m[1:] {
			n, _ := strconv.Atoi(f)
			r.errors += n
		}
	}
	if reqs > 0 {
		hz := 100.0 // USER_HZ on Linux
		r.cpuUS = float64(after-before) / hz * 1e6 / reqs
	}
	return r, nil
}

// cpuTicks is utime+stime of a process, in clock ticks.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	// Fields after the command name (which may contain spaces) in parentheses.
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return ut + st, nil
}

func backendConf(dir, www string, port int) string {
	return fmt.Sprintf(`worker_processes 1; master_process off; daemon off; pid %[1]s/backend.pid; error_log %[1]s/backend-error.log warn;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 10000000; keepalive_timeout 75s; default_type application/octet-stream;
  client_body_temp_path %[1]s/tmp; proxy_temp_path %[1]s/tmp; fastcgi_temp_path %[1]s/tmp; uwsgi_temp_path %[1]s/tmp; scgi_temp_path %[1]s/tmp;
  server { listen 127.0.0.1:%[3]d backlog=4096; root %[2]s; location / { } } }
`, dir, www, port)
}

func proxyConf(dir string, port, backend int) string {
	return fmt.Sprintf(`worker_processes 1; master_process off; daemon off; pid %[1]s/proxy.pid; error_log %[1]s/proxy-error.log warn; worker_rlimit_nofile 65536;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 10000000; keepalive_timeout 75s;
  client_body_temp_path %[1]s/tmp; proxy_temp_path %[1]s/tmp; fastcgi_temp_path %[1]s/tmp; uwsgi_temp_path %[1]s/tmp; scgi_temp_path %[1]s/tmp;
  upstream dyno { server 127.0.0.1:%[3]d; keepalive 512; keepalive_requests 10000000; keepalive_timeout 60s; }
  server { listen 127.0.0.1:%[2]d backlog=4096;
    location / {
      proxy_pass http://dyno; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host $host; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme; proxy_set_header X-Forwarded-Port $server_port;
      proxy_set_header X-Request-Id $request_id; proxy_set_header X-Request-Start $msec;
      proxy_set_header Via "1.1 nginx";
    } } }
`, dir, port, backend)
}

func startNginx(ctx context.Context, dir, name, cpu, conf string) (*exec.Cmd, error) {
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, name+".conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "taskset", "-c", cpu, "nginx", "-p", dir, "-c", path, "-e", filepath.Join(dir, name+"-error.log"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting nginx (%s): %w", name, err)
	}
	return cmd, nil
}

func stopProc(c *exec.Cmd) {
	if c.Process == nil {
		return
	}
	_ = c.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = c.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = c.Process.Kill()
		<-done
	}
}

func freePorts(n int) ([]int, error) {
	var out []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

func waitPort(p int) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on port %d", p)
}

// serveRouter runs the router under test: a real FSM holding one app with
// one up web dyno (the backend), served on -listen.
func serveRouter(args []string) error {
	fs := flag.NewFlagSet("serve-router", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	backend := fs.String("backend", "", "backend host:port")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile here")
	netHTTP := fs.Bool("nethttp", false, "serve with net/http instead of the router's HTTP/1.1 server")
	memprofile := fs.String("memprofile", "", "write an allocation profile here at exit")
	_ = fs.Parse(args)
	host, portS, err := net.SplitHostPort(*backend)
	if err != nil {
		return err
	}
	port, _ := strconv.Atoi(portS)
	f, err := fsm.New(slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	var idx uint64
	apply := func(typ string, data any) error {
		c, err := fsm.NewCommand(typ, uuid.NewString(), time.Now(), "", data)
		if err != nil {
			return err
		}
		b, _ := c.Encode()
		idx++
		if res := f.ApplyCommand(idx, b); res.Err != nil {
			return fmt.Errorf("%s: %v", typ, res.Err)
		}
		return nil
	}
	appID := uuid.NewString()
	if err := apply(fsm.CmdAppCreate, fsm.AppCreate{App: fsm.App{ID: appID, Name: "bench", Region: "local"},
		ReleaseID: uuid.NewString(), DefaultDomainID: uuid.NewString(), DefaultHostname: "bench.localhost"}); err != nil {
		return err
	}
	d := fsm.Dyno{ID: uuid.NewString(), AppID: appID, Name: "web.1", Type: "web", Command: "x", Size: "Basic"}
	inst := uuid.NewString()
	if err := apply(fsm.CmdDynoPlan, fsm.DynoPlan{Create: []fsm.Dyno{d}, Place: []fsm.Placement{{ID: d.ID, Node: "n1", Zone: "a", Addr: host, Port: port, Instance: inst}}}); err != nil {
		return err
	}
	if err := apply(fsm.CmdDynoReport, fsm.DynoReport{ID: d.ID, Instance: inst, Node: "n1", State: fsm.DynoUp}); err != nil {
		return err
	}
	// H11's backlog (200 per dyno, as Heroku) would answer 503s at 256
	// connections to one dyno; nginx has no such limit, so it is lifted.
	sink := discard{lines: new(atomic.Int64)}
	rt, err := router.New(router.Options{Region: "local", Zone: "a", State: f, Sink: sink, BacklogPerDyno: 1 << 20, NetHTTP: *netHTTP})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go rt.Run(ctx)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	if *cpuprofile != "" {
		stopProf, err := startProfile(*cpuprofile)
		if err != nil {
			return err
		}
		defer stopProf()
	}
	go func() { <-ctx.Done(); _ = rt.Close() }()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	if err := rt.Serve(ln); err != nil && err != http.ErrServerClosed {
		return err
	}
	runtime.ReadMemStats(&ms1)
	if *memprofile != "" {
		if f, err := os.Create(*memprofile); err == nil {
			_ = pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
	}
	if n := sink.lines.Load(); n > 0 {
		fmt.Fprintf(os.Stderr, "router (nethttp=%v): %d requests, %.1f allocs and %.0f bytes allocated per request, %d GC cycles\n",
			*netHTTP, n, float64(ms1.Mallocs-ms0.Mallocs)/float64(n), float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(n), ms1.NumGC-ms0.NumGC)
	}
	return nil
}

// discard is the log sink of the benchmark (nginx's access_log is off
// too); it counts the lines, one per request.
type discard struct{ lines *atomic.Int64 }

func (d discard) Emit(logplex.Line) { d.lines.Add(1) }
