package drills

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/client"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func write(worker int, key, value string, from, to int, outcome Outcome) Op {
	return Op{Worker: worker, Kind: Write, Key: key, Value: value, Start: at(from), End: at(to), Outcome: outcome}
}

func read(worker int, vals map[string]string, from, to int) Op {
	return Op{Worker: worker, Kind: Read, Values: vals, Start: at(from), End: at(to), Outcome: OK}
}

func TestLinearizability(t *testing.T) {
	keys := []string{"A", "B"}
	cases := []struct {
		name string
		ops  []Op
		want string
	}{
		{"read after write", []Op{
			write(0, "A", "v1", 0, 10, OK),
			read(1, map[string]string{"A": "v1"}, 20, 30),
		}, "ok"},
		{"stale read after an acknowledged write", []Op{
			write(0, "A", "v1", 0, 10, OK),
			read(1, map[string]string{}, 20, 30),
		}, "illegal"},
		{"concurrent read may see either", []Op{
			write(0, "A", "v1", 0, 10, OK),
			write(0, "A", "v2", 20, 40, OK),
			read(1, map[string]string{"A": "v1"}, 25, 30),
			read(2, map[string]string{"A": "v2"}, 26, 35),
		}, "ok"},
		{"values never go back", []Op{
			write(0, "A", "v1", 0, 10, OK),
			write(0, "A", "v2", 20, 40, OK),
			read(1, map[string]string{"A": "v2"}, 25, 30),
			read(2, map[string]string{"A": "v1"}, 31, 35),
		}, "illegal"},
		{"an ambiguous write may take effect later", []Op{
			write(0, "A", "v1", 0, 10, Ambiguous),
			read(1, map[string]string{"A": ""}, 20, 30),
			read(1, map[string]string{"A": "v1"}, 40, 50),
		}, "ok"},
		{"an ambiguous write may never take effect", []Op{
			write(0, "A", "v1", 0, 10, Ambiguous),
			read(1, map[string]string{"A": ""}, 20, 30),
		}, "ok"},
		{"an ambiguous write cannot be undone", []Op{
			write(0, "A", "v1", 0, 10, Ambiguous),
			read(1, map[string]string{"A": "v1"}, 20, 30),
			read(1, map[string]string{"A": ""}, 40, 50),
		}, "illegal"},
		{"a failed write never happened", []Op{
			write(0, "A", "v1", 0, 10, OK),
			write(0, "A", "v2", 20, 30, Failed),
			read(1, map[string]string{"A": "v1"}, 40, 50),
		}, "ok"},
		{"keys are independent registers", []Op{
			write(0, "A", "v1", 0, 10, OK),
			write(0, "B", "v2", 20, 30, OK),
			read(1, map[string]string{"A": "v1", "B": "v2"}, 40, 50),
			read(1, map[string]string{"A": "v1"}, 60, 70), // B lost
		}, "illegal"},
		{"stale reads are not checked here", []Op{
			write(0, "A", "v1", 0, 10, OK),
			{Kind: StaleRead, Values: map[string]string{}, Start: at(20), End: at(30), Outcome: OK},
		}, "ok"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := CheckLinearizable(c.ops, keys, t0, 10*time.Second, t.TempDir())
			if got.Result != c.want {
				t.Fatalf("got %s, want %s", got.Result, c.want)
			}
			if c.want == "illegal" && got.Visualization == "" {
				t.Error("no visualization written for an illegal history")
			}
		})
	}
}

func TestRTO(t *testing.T) {
	from := at(1000)
	ops := []Op{
		write(0, "A", "v1", 0, 900, Failed),                                               // before the fault: ignored
		write(0, "A", "v0", 900, 20000, Ambiguous),                                        // under way at the fault: ignored
		write(0, "A", "v2", 1100, 1200, OK),                                               // fine
		write(0, "A", "v3", 1300, 3500, OK),                                               // slow: counts
		write(0, "A", "v4", 3600, 3700, OK),                                               // fine
		{Kind: Write, Start: at(3800), End: at(9000), Outcome: Ambiguous, Expected: true}, // on purpose
		{Kind: StaleRead, Start: at(3800), End: at(9500), Outcome: Failed},
	}
	probes := []Probe{
		{Start: at(1000), End: at(1010), OK: true},
		{Start: at(4000), End: at(4200), OK: false},
		{Start: at(4300), End: at(4310), OK: true},
	}
	if got := RTO(from, ops, probes, time.Second); got != 3200*time.Millisecond {
		t.Errorf("RTO %v, want 3.2s (the failed probe ending at +4.2s)", got)
	}
	if got := RTO(from, ops[:4], nil, time.Second); got != 2500*time.Millisecond {
		t.Errorf("RTO %v, want 2.5s (the slow write)", got)
	}
	if got := RTO(from, ops[1:3], probes[:1], time.Second); got != 0 {
		t.Errorf("RTO %v, want 0", got)
	}
}

func TestTallyAndProblems(t *testing.T) {
	from := at(1000)
	ops := []Op{
		write(0, "A", "v1", 0, 10, OK),
		write(0, "A", "v2", 1100, 1200, OK),
		write(0, "A", "v3", 1300, 1400, Failed),
		write(0, "A", "v4", 1500, 9000, Ambiguous),
		{Kind: Write, Start: at(2000), End: at(9000), Outcome: Ambiguous, Expected: true, Err: "refused"},
		{Kind: Read, Start: at(2000), End: at(9000), Outcome: Failed, Expected: true},
		read(1, nil, 1600, 1700),
		{Kind: Read, Start: at(1800), End: at(1900), Outcome: Failed, Err: "boom"},
	}
	probes := []Probe{{OK: true}, {OK: false, Err: "HTTP 502", Node: "n1"}}
	r := &Report{Recovered: true, Converged: true, Linearizability: Linearizability{Result: "ok"}}
	r.tally(from, ops, probes)
	if r.Writes != 5 || r.WritesAcked != 2 || r.WritesAckedAfterFault != 1 || r.WritesFailed != 1 || r.WritesAmbiguous != 2 {
		t.Errorf("writes: %+v", r)
	}
	if r.Reads != 3 || r.ReadsFailed != 2 || r.Expected != 2 {
		t.Errorf("reads %d failed %d expected %d", r.Reads, r.ReadsFailed, r.Expected)
	}
	// 1 probe + 1 failed + 1 ambiguous write + 1 read; the two expected ones not.
	if r.FailedRequests != 4 {
		t.Errorf("failed requests %d, want 4", r.FailedRequests)
	}
	if p := r.Problems(false); len(p) != 0 {
		t.Errorf("unexpected problems: %v", p)
	}
	if p := r.Problems(true); len(p) != 1 || !strings.Contains(p[0], "4 requests failed") {
		t.Errorf("zero-failure drill: %v", p)
	}
	r.LostWrites = 1
	r.Checks = append(r.Checks, Check{Name: "x", OK: false, Detail: "y"})
	if p := r.Problems(false); len(p) != 2 {
		t.Errorf("lost writes and a failed check should be problems: %v", p)
	}
	if !strings.Contains(r.String(), "lost writes   1 of") {
		t.Errorf("report:\n%s", r)
	}
}

func TestClassify(t *testing.T) {
	dial := fmt.Errorf("PATCH http://x: %w", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")})
	read := fmt.Errorf("PATCH http://x: %w", &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")})
	for _, c := range []struct {
		err  error
		want Outcome
	}{
		{nil, OK},
		{dial, Failed},
		{read, Ambiguous},
		{context.DeadlineExceeded, Ambiguous},
		{&client.Error{Status: 422, ID: "invalid_params"}, Failed},
		{&client.Error{Status: 401, ID: "unauthorized"}, Failed},
		{&client.Error{Status: 503, ID: "unavailable"}, Ambiguous},
		{&client.Error{Status: 500}, Ambiguous},
	} {
		if got, _, _, _ := classify(c.err); got != c.want {
			t.Errorf("classify(%v) = %s, want %s", c.err, got, c.want)
		}
	}
}

// fakeAPI is an in-memory config-vars endpoint that can be told to lose
// some acknowledged writes.
type fakeAPI struct {
	mu      sync.Mutex
	vars    map[string]string
	writes  int
	loseNth int // acknowledge but drop every n-th write (0: never)
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !strings.HasSuffix(r.URL.Path, "/config-vars") {
		http.NotFound(w, r)
		return
	}
	if r.Method == http.MethodPatch {
		var in map[string]*string
		_ = json.NewDecoder(r.Body).Decode(&in)
		f.writes++
		if f.loseNth == 0 || f.writes%f.loseNth != 0 {
			for k, v := range in {
				f.vars[k] = *v
			}
		}
	}
	_ = json.NewEncoder(w).Encode(f.vars)
}

// The writer's history of a correct server is linearizable; that of a
// server which acknowledges writes it then loses is not.
func TestWriterAgainstFakeAPI(t *testing.T) {
	for _, c := range []struct {
		lose int
		want string
	}{{0, "ok"}, {3, "illegal"}} {
		t.Run(fmt.Sprintf("lose-every-%d", c.lose), func(t *testing.T) {
			f := &fakeAPI{vars: map[string]string{}, loseNth: c.lose}
			a, b := httptest.NewServer(f), httptest.NewServer(f)
			defer a.Close()
			defer b.Close()
			eps := []Endpoint{{Name: "a", URL: a.URL}, {Name: "b", URL: b.URL}}
			w := &Writer{App: "app", Keys: []string{"K"}, Token: "t", Workers: 1, Pause: time.Millisecond,
				Nodes: func() []Endpoint { return eps }}
			w.Start(context.Background())
			deadline := time.Now().Add(10 * time.Second)
			for len(w.Ops()) < 60 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			w.Stop()
			ops := w.Ops()
			nodes := map[string]int{}
			values := map[string]bool{}
			for _, op := range ops {
				nodes[op.Node]++
				if op.Outcome != OK {
					t.Fatalf("operation failed: %+v", op)
				}
				if op.Kind == Write {
					if values[op.Value] {
						t.Fatalf("value %s written twice", op.Value)
					}
					values[op.Value] = true
				}
			}
			if nodes["a"] == 0 || nodes["b"] == 0 {
				t.Errorf("the writer should use every endpoint: %v", nodes)
			}
			if got := CheckLinearizable(ops, w.Keys, ops[0].Start, 10*time.Second, ""); got.Result != c.want {
				t.Errorf("linearizability %s, want %s", got.Result, c.want)
			}
		})
	}
}
