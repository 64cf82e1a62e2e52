package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/api"
	"github.com/slipwayhq/slipway/client"
)

// injectLines emits lines on one node through the admin endpoint (the
// dynos and the router are not needed to produce lines on a node).
func (d *dev) injectLines(node, app, source, dyno string, lines ...string) {
	d.t.Helper()
	c := d.client(node)
	_, err := c.Do(context.Background(), http.MethodPost, client.Path("cluster", "log-lines", app),
		api.LogLinesRequest{Lines: lines, Source: source, Dyno: dyno}, nil, nil)
	if err != nil {
		d.t.Fatalf("injecting lines on %s: %v", node, err)
	}
}

var logLineRE = regexp.MustCompile(`^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00) (app|heroku)\[([\w.-]+)\]: (.*)$`)

// TestHerokuLogs reads a 3-node cluster's logs with the unmodified heroku
// CLI: history merged from every node in time order, filters, a tail that
// sees every node, drains, and a node killed.
func TestHerokuLogs(t *testing.T) {
	bin := herokuCLI(t)
	d := startDev(t, 3, "")
	home := t.TempDir()
	herokuEnv := func(node string) []string {
		a := d.node(node).API
		return []string{"HOME=" + home, "HEROKU_HOST=" + a, "HEROKU_API_KEY=" + d.token, "HEROKU_PARTICLEBOARD_URL=" + a,
			"DISABLE_TELEMETRY=true", "HEROKU_SKIP_NEW_VERSION_CHECK=true", "HEROKU_DISABLE_AUTOUPDATE=1", "NO_COLOR=1", "FORCE_COLOR=0"}
	}
	heroku := func(node string, args ...string) string {
		t.Helper()
		out, err := d.run(herokuEnv(node), bin, args...)
		if err != nil {
			t.Fatalf("heroku %s (via %s): %v\n%s", strings.Join(args, " "), node, err, out)
		}
		return out
	}
	herokuFails := func(node, want string, args ...string) {
		t.Helper()
		out, err := d.run(herokuEnv(node), bin, args...)
		if err == nil || !strings.Contains(out, want) {
			t.Fatalf("heroku %s: want a failure mentioning %q, got %v:\n%s", strings.Join(args, " "), want, err, out)
		}
	}

	// Platform events are born on the node that handled each write.
	heroku("node-1", "apps:create", "demo")
	heroku("node-2", "config:set", "A=1", "-a", "demo")
	heroku("node-3", "domains:add", "www.example.com", "-a", "demo")
	for _, n := range []string{"node-1", "node-2", "node-3"} {
		d.injectLines(n, "demo", "app", "web.1", "hello from "+n)
		d.injectLines(n, "demo", "heroku", "router", "at=info path=/ from "+n)
	}

	out := heroku("node-2", "logs", "-n", "200", "-a", "demo")
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if !logLineRE.MatchString(l) {
			t.Fatalf("not a log line: %q\n%s", l, out)
		}
		lines = append(lines, l)
	}
	if !sort.SliceIsSorted(lines, func(i, j int) bool { return lines[i][:32] < lines[j][:32] }) {
		t.Fatalf("lines are not in time order:\n%s", out)
	}
	for _, want := range []string{
		`app\[api\]: Initial release by user admin@localhost`, `app\[api\]: Release v1 created by user admin@localhost`,
		`app\[api\]: Set A config vars by user admin@localhost`, `app\[api\]: Release v2 created by user`,
		`app\[api\]: Add www.example.com domain by user`,
		`app\[web.1\]: hello from node-1`, `app\[web.1\]: hello from node-2`, `app\[web.1\]: hello from node-3`,
		`heroku\[router\]: at=info path=/ from node-3`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Fatalf("heroku logs lacks %q:\n%s", want, out)
		}
	}
	// -n and filters.
	if got := strings.Count(heroku("node-3", "logs", "-n", "2", "-a", "demo"), "\n"); got != 2 {
		t.Fatalf("-n 2 printed %d lines", got)
	}
	out = heroku("node-1", "logs", "-s", "heroku", "-a", "demo")
	if strings.Count(out, "heroku[router]") != 3 || strings.Contains(out, "app[") {
		t.Fatalf("--source heroku:\n%s", out)
	}
	out = heroku("node-1", "logs", "-p", "web", "-a", "demo")
	if strings.Count(out, "app[web.1]") != 3 || strings.Contains(out, "[api]") || strings.Contains(out, "router") {
		t.Fatalf("--process-type web:\n%s", out)
	}
	out = heroku("node-1", "logs", "-d", "api", "-a", "demo")
	if !strings.Contains(out, "app[api]") || strings.Contains(out, "web.1") {
		t.Fatalf("--dyno-name api:\n%s", out)
	}

	// A tail through node-1 shows live lines from every node.
	tailCtx, stopTail := context.WithCancel(context.Background())
	defer stopTail()
	tail := exec.CommandContext(tailCtx, bin, "logs", "--tail", "-n", "0", "-a", "demo")
	tail.Env = append(tail.Environ(), herokuEnv("node-1")...)
	stdout, err := tail.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := tail.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stopTail(); tail.Wait() }()
	var mu sync.Mutex
	var tailed []string
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			mu.Lock()
			tailed = append(tailed, sc.Text())
			mu.Unlock()
		}
	}()
	waitTail := func(what string, wants ...string) {
		t.Helper()
		eventually(t, 60*time.Second, what, func() error {
			mu.Lock()
			all := strings.Join(tailed, "\n")
			mu.Unlock()
			for _, w := range wants {
				if !strings.Contains(all, w) {
					return fmt.Errorf("tail lacks %q; has:\n%s", w, all)
				}
			}
			return nil
		})
	}
	// The tail subscribes when its session starts; resend until seen.
	eventually(t, 60*time.Second, "the tail to start", func() error {
		d.injectLines("node-2", "demo", "app", "web.2", "tail probe")
		mu.Lock()
		defer mu.Unlock()
		if !strings.Contains(strings.Join(tailed, "\n"), "tail probe") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	for _, n := range []string{"node-1", "node-2", "node-3"} {
		d.injectLines(n, "demo", "app", "worker.1", "live from "+n)
	}
	heroku("node-3", "config:set", "B=2", "-a", "demo")
	waitTail("live lines from every node", "live from node-1", "live from node-2", "live from node-3", "app[api]: Set B config vars")

	// Drains through the heroku CLI.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	drainURL := "syslog://" + ln.Addr().String()
	ln.Close()
	if out := heroku("node-2", "drains:add", drainURL, "-a", "demo"); !strings.Contains(out, "Successfully added drain "+drainURL) {
		t.Fatalf("drains:add: %s", out)
	}
	if out := heroku("node-3", "drains", "-a", "demo"); !regexp.MustCompile(regexp.QuoteMeta(drainURL) + ` \(d\.[0-9a-f-]{36}\)`).MatchString(out) {
		t.Fatalf("drains: %s", out)
	}
	herokuFails("node-1", "already been taken", "drains:add", drainURL, "-a", "demo")
	herokuFails("node-1", "scheme", "drains:add", "ftp://example.com/x", "-a", "demo")
	herokuFails("node-1", "credentials", "drains:add", "syslog://u:p@example.com:514", "-a", "demo")
	for i := 0; i < 5; i++ {
		heroku("node-1", "drains:add", fmt.Sprintf("https://logs.example.com/%d", i), "-a", "demo")
	}
	herokuFails("node-1", "at most 6", "drains:add", "https://logs.example.com/7", "-a", "demo")
	if out := heroku("node-1", "drains:remove", drainURL, "-a", "demo"); !strings.Contains(out, "Successfully removed drain "+drainURL) {
		t.Fatalf("drains:remove: %s", out)
	}

	// A bad session URL: the CLI's own message for an expired stream.
	sess, err := d.client("node-1").CreateLogSession(context.Background(), "demo", api.LogSessionCreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(sess.LogplexURL + "x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("forged session: %d", resp.StatusCode)
	}

	// The slipway CLI reads the same stream.
	sw, err := d.run(nil, slipwayBin, "logs", "-n", "3", "-a", "demo")
	if err != nil || strings.Count(sw, "\n") != 3 {
		t.Fatalf("slipway logs: %v\n%s", err, sw)
	}

	// Kill node-3: its history is gone (a notice says so), the tail goes on.
	n3 := d.node("node-3")
	d.kill9(n3.Name, n3.PID)
	waitTail("the tail's notice", "lost the stream from node node-3")
	d.injectLines("node-2", "demo", "app", "web.1", "after the kill")
	waitTail("lines after the kill", "after the kill")
	out = heroku("node-1", "logs", "-n", "1500", "-a", "demo")
	if strings.Contains(out, "from node-3") || !strings.Contains(out, "hello from node-1") || !strings.Contains(out, "node-3") {
		t.Fatalf("history after killing node-3:\n%s", out)
	}
}
