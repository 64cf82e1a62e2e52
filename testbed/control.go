package testbed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
)

// Command is one operation on a running testbed, sent by `testbed` CLI
// invocations to the `testbed up` process that owns it.
type Command struct {
	Op   string   `json:"op"`
	Args []string `json:"args,omitempty"`
	// Impairment, for "impair".
	Delay  time.Duration `json:"delay,omitempty"`
	Jitter time.Duration `json:"jitter,omitempty"`
	Loss   float64       `json:"loss,omitempty"`
}

// Ops lists the operations Do understands, with their arguments.
const Ops = `status                      nodes, their state and the cuts
kill NODE...                kill -9 the agents
stop NODE...                stop gracefully (SIGTERM)
start NODE...               start stopped or killed nodes
restart NODE...             stop gracefully, then start
power-off NODE...           kill -9 and black-hole the nodes' addresses
power-on NODE...            undo power-off
kill-zone [REGION/]ZONE     power off a zone
revive-zone [REGION/]ZONE   power a zone on
isolate NODE...|ZONE        cut nodes (or a zone: zone:[REGION/]ZONE) off from all others
partition GROUP GROUP...    cut the network between groups (comma-separated node lists)
heal                        remove every cut
impair NODE...              add latency/loss (--delay, --jitter, --loss) to what the nodes send
clear NODE...               remove latency/loss`

// zoneArg parses [REGION/]ZONE (the first region when omitted).
func (tb *Testbed) zoneArg(s string) (string, string, error) {
	region, zone, ok := strings.Cut(s, "/")
	if !ok {
		region, zone = tb.plan.Regions()[0], s
	}
	if len(tb.ZoneNodes(region, zone)) == 0 {
		return "", "", fmt.Errorf("no zone %s/%s", region, zone)
	}
	return region, zone, nil
}

// Do carries out a command and returns what to print.
func (tb *Testbed) Do(ctx context.Context, c Command) (string, error) {
	each := func(f func(string) error) (string, error) {
		if len(c.Args) == 0 {
			return "", fmt.Errorf("%s: name at least one node", c.Op)
		}
		for _, n := range c.Args {
			if err := f(n); err != nil {
				return "", err
			}
		}
		return fmt.Sprintf("%s: %s\n", c.Op, strings.Join(c.Args, " ")), nil
	}
	one := func() (string, error) {
		if len(c.Args) != 1 {
			return "", fmt.Errorf("%s takes one argument", c.Op)
		}
		return c.Args[0], nil
	}
	switch c.Op {
	case "status":
		return tb.Status(), nil
	case "kill":
		return each(tb.KillNode)
	case "stop":
		return each(func(n string) error { return tb.StopNode(ctx, n) })
	case "start":
		return each(tb.StartNode)
	case "restart":
		return each(func(n string) error { return tb.RestartNode(ctx, n) })
	case "power-off":
		return each(func(n string) error { return tb.PowerOff(ctx, n) })
	case "power-on":
		return each(func(n string) error { return tb.PowerOn(ctx, n) })
	case "kill-zone", "revive-zone":
		arg, err := one()
		if err != nil {
			return "", err
		}
		region, zone, err := tb.zoneArg(arg)
		if err != nil {
			return "", err
		}
		if c.Op == "kill-zone" {
			err = tb.KillZone(ctx, region, zone)
		} else {
			err = tb.ReviveZone(ctx, region, zone)
		}
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s %s/%s: %s\n", c.Op, region, zone, strings.Join(tb.ZoneNodes(region, zone), " ")), nil
	case "isolate":
		var names []string
		for _, a := range c.Args {
			if z, ok := strings.CutPrefix(a, "zone:"); ok {
				region, zone, err := tb.zoneArg(z)
				if err != nil {
					return "", err
				}
				names = append(names, tb.ZoneNodes(region, zone)...)
			} else {
				names = append(names, a)
			}
		}
		if len(names) == 0 {
			return "", errors.New("isolate: name nodes or a zone (zone:c)")
		}
		if err := tb.Isolate(ctx, names...); err != nil {
			return "", err
		}
		return fmt.Sprintf("isolated %s from the other nodes\n", strings.Join(names, " ")), nil
	case "partition":
		var groups [][]string
		for _, g := range c.Args {
			groups = append(groups, splitList(g))
		}
		if err := tb.Partition(ctx, groups...); err != nil {
			return "", err
		}
		return fmt.Sprintf("partitioned %s\n", strings.Join(c.Args, " | ")), nil
	case "heal":
		if err := tb.Heal(ctx); err != nil {
			return "", err
		}
		return "healed\n", nil
	case "impair":
		im := Impairment{Delay: c.Delay, Jitter: c.Jitter, Loss: c.Loss}
		return each(func(n string) error { return tb.Impair(ctx, n, im) })
	case "clear":
		return each(func(n string) error { return tb.ClearImpairment(ctx, n) })
	}
	return "", fmt.Errorf("unknown operation %q; operations:\n%s", c.Op, Ops)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Status is a table of the nodes and the network's state.
func (tb *Testbed) Status() string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "NODE\tREGION\tZONE\tADDRESS\tSTATE\tPID\tIMPAIRED\tAPI")
	for _, n := range tb.Nodes() {
		state := "stopped"
		if n.Running {
			state = "running"
		}
		if n.Dark {
			state = "powered off"
		}
		pid := "-"
		if n.PID > 0 {
			pid = fmt.Sprint(n.PID)
		}
		imp := n.Impaired
		if imp == "" {
			imp = "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Region, n.Zone, n.Addr, state, pid, imp, n.API)
	}
	w.Flush()
	if cut := tb.Cut(); len(cut) > 0 {
		var pairs []string
		for _, p := range cut {
			if p[0] < p[1] {
				pairs = append(pairs, p[0]+"-"+p[1])
			}
		}
		fmt.Fprintf(&b, "cut: %s\n", strings.Join(pairs, " "))
	}
	fmt.Fprintf(&b, "files: %s (node logs: %s/NODE/var/log/slipway/agent.log)\n", tb.dir, tb.dir)
	return b.String()
}

// ControlSocket is where a testbed's owner listens for commands.
func ControlSocket(slot int) string {
	return filepath.Join(StateDir, fmt.Sprintf("slot-%02d.sock", slot))
}

// ServeControl answers commands on the testbed's control socket until ctx
// ends.
func (tb *Testbed) ServeControl(ctx context.Context) error {
	path := ControlSocket(tb.plan.Slot)
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	defer os.Remove(path)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /do", func(w http.ResponseWriter, r *http.Request) {
		var c Command
		if err := json.NewDecoder(r.Body).Decode(&c); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		out, err := tb.Do(r.Context(), c)
		resp := map[string]string{"output": out}
		if err != nil {
			resp["error"] = err.Error()
		}
		_ = json.NewEncoder(w).Encode(resp)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// RunningSlots lists the slots whose testbed answers on its control socket.
func RunningSlots() []int {
	var out []int
	for s := 0; s < MaxSlots; s++ {
		if _, err := os.Stat(ControlSocket(s)); err != nil {
			continue
		}
		c, err := net.DialTimeout("unix", ControlSocket(s), time.Second)
		if err == nil {
			c.Close()
			out = append(out, s)
		}
	}
	return out
}

// SendCommand sends a command to the testbed of a slot and returns its
// output.
func SendCommand(ctx context.Context, slot int, c Command) (string, error) {
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", ControlSocket(slot))
	}}}
	body, _ := json.Marshal(c)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://testbed/do", strings.NewReader(string(body)))
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("no testbed answers in slot %d (is `testbed up` running?): %w", slot, err)
	}
	defer resp.Body.Close()
	var out map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("testbed answered HTTP %d: %w", resp.StatusCode, err)
	}
	if out["error"] != "" {
		return out["output"], errors.New(out["error"])
	}
	return out["output"], nil
}
