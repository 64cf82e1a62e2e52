package logplex

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/slipwayhq/slipway/cluster/clustertest"
	"github.com/slipwayhq/slipway/fsm"
)

// chanWriter collects a session's lines.
type chanWriter struct{ ch chan entry }

func (c *chanWriter) lines(es []entry) error {
	for _, e := range es {
		c.ch <- e
	}
	return nil
}
func (c *chanWriter) keepalive() error { return nil }

// regionWithPipelines starts a 3-node in-process cluster (real
// cluster.Nodes on memnet) with a pipeline on each node and one app.
func regionWithPipelines(t *testing.T) (*clustertest.Harness, map[string]*Pipeline, string) {
	return benchRegion(t)
}

func benchRegion(t testing.TB) (*clustertest.Harness, map[string]*Pipeline, string) {
	h := clustertest.New(t, clustertest.Options{})
	pipes := map[string]*Pipeline{}
	for i, z := range []string{"a", "b", "c"} {
		name := fmt.Sprintf("n%d", i+1)
		m := h.Start(name, z, 3)
		p := New(Options{NodeName: name, Cluster: m.Node, State: m.FSM, InputRate: MaxInputRate, HistoryTimeout: 3 * time.Second})
		pipes[name] = p
		t.Cleanup(p.Close)
	}
	leader := h.Leader(30 * time.Second)
	appID := uuid.NewString()
	cmd, err := fsm.NewCommand(fsm.CmdAppCreate, uuid.NewString(), time.Now(), "", fsm.AppCreate{
		App: fsm.App{ID: appID, Name: "demo", Region: "test"}, ReleaseID: uuid.NewString(), DefaultDomainID: uuid.NewString(), DefaultHostname: "demo.localhost"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := cmd.Encode()
	_, raw, err := leader.Node.Apply(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	var res fsm.Result
	if err := json.Unmarshal(raw, &res); err != nil || res.Err != nil {
		t.Fatalf("creating the app: %v %v", err, res.Err)
	}
	h.Eventually(30*time.Second, "every node to see the others", func() error {
		for name, p := range pipes {
			up := 0
			for _, pr := range p.peers() {
				if pr.up() {
					up++
				}
			}
			if up != 3 {
				return fmt.Errorf("%s sees %d nodes", name, up)
			}
		}
		return nil
	})
	return h, pipes, appID
}

func TestRegionHistoryMergedAndNodeLoss(t *testing.T) {
	h, pipes, app := regionWithPipelines(t)
	base := time.Now().Add(-time.Minute)
	// Lines with interleaved times on the three nodes.
	for i := 0; i < 30; i++ {
		node := fmt.Sprintf("n%d", i%3+1)
		pipes[node].Emit(Line{AppID: app, Time: base.Add(time.Duration(i) * time.Millisecond), Source: SourceApp,
			Proc: fmt.Sprintf("web.%d", i%3+1), Text: fmt.Sprintf("line %d from %s", i, node)})
	}
	session := func(p *Pipeline, q query) []entry {
		w := &chanWriter{ch: make(chan entry, 10000)}
		if err := p.stream(context.Background(), q, w); err != nil {
			t.Fatal(err)
		}
		close(w.ch)
		var out []entry
		for e := range w.ch {
			out = append(out, e)
		}
		return out
	}
	got := session(pipes["n2"], query{app: app, lines: 100})
	if len(got) != 30 {
		t.Fatalf("history has %d lines, want 30", len(got))
	}
	for i, e := range got {
		if want := fmt.Sprintf("line %d from n%d", i, i%3+1); e.Text != want {
			t.Fatalf("line %d is %q, want %q (merged by time)", i, e.Text, want)
		}
	}
	// -n keeps the newest lines region-wide; filters apply on every node.
	if got := session(pipes["n1"], query{app: app, lines: 4}); len(got) != 4 || got[3].Text != "line 29 from n3" || got[0].Text != "line 26 from n3" {
		t.Fatalf("last 4: %v", texts(got))
	}
	if got := session(pipes["n1"], query{app: app, lines: 100, f: Filter{Dyno: "web.2"}}); len(got) != 10 || got[0].Text != "line 1 from n2" {
		t.Fatalf("web.2 only: %v", texts(got))
	}

	// A tail on n1 sees live lines from every node.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tw := &chanWriter{ch: make(chan entry, 10000)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); pipes["n1"].stream(ctx, query{app: app, lines: 0, tail: true}, tw) }()
	time.Sleep(500 * time.Millisecond) // subscriptions are in place once the history is sent
	expect := func(what string, want ...string) {
		t.Helper()
		seen := map[string]bool{}
		deadline := time.After(20 * time.Second)
		for len(seen) < len(want) {
			select {
			case e := <-tw.ch:
				for _, w := range want {
					if strings.Contains(e.Text, w) {
						seen[w] = true
					}
				}
			case <-deadline:
				t.Fatalf("%s: saw only %v of %v", what, seen, want)
			}
		}
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		pipes[n].Emit(Line{AppID: app, Source: SourceApp, Proc: "web.1", Text: "live from " + n})
	}
	expect("live lines", "live from n1", "live from n2", "live from n3")

	// Kill n3: the tail says so and keeps streaming from the others.
	pipes["n3"].Close()
	h.Kill("n3")
	expect("a notice about n3", "lost the stream from node n3")
	pipes["n2"].Emit(Line{AppID: app, Source: SourceApp, Proc: "web.1", Text: "after the loss from n2"})
	pipes["n1"].Emit(Line{AppID: app, Source: SourceApp, Proc: "web.1", Text: "after the loss from n1"})
	expect("lines after the loss", "after the loss from n2", "after the loss from n1")

	// History now lacks only n3's lines, with a notice instead of an error.
	h.Eventually(30*time.Second, "a history without n3", func() error {
		got := session(pipes["n1"], query{app: app, lines: 1500})
		fromN3, notices := 0, 0
		for _, e := range got {
			if strings.Contains(e.Text, "from n3") {
				fromN3++
			}
			if strings.HasPrefix(e.Text, "Error L15") && strings.Contains(e.Text, "n3") {
				notices++
			}
		}
		// 10 + 1 + 1 lines from n1, 10 + 1 + 1 from n2, one notice.
		if fromN3 != 0 || notices != 1 || len(got) != 25 {
			return fmt.Errorf("%d lines, %d from n3, %d notices: %v", len(got), fromN3, notices, texts(got))
		}
		return nil
	})
	cancel()
	wg.Wait()
}

func texts(es []entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Text
	}
	return out
}
