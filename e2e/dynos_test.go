package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/api"
	"github.com/slipwayhq/slipway/client"
)

// deployWebapp creates app and releases the test web app's slug through
// the Slug API, with web and worker process types.
func deployWebapp(t *testing.T, d *dev, app string) {
	t.Helper()
	ctx := context.Background()
	c := d.client("node-1")
	if _, err := c.CreateApp(ctx, api.AppCreateRequest{Name: &app}); err != nil {
		t.Fatal(err)
	}
	tgz, sum := webappSlug(t)
	slug, err := c.CreateSlug(ctx, app, api.SlugCreateRequest{ProcessTypes: map[string]string{"web": "bin/web", "worker": "bin/web worker"}, Checksum: &sum})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.UploadSlug(ctx, slug.Blob.URL, bytes.NewReader(tgz), int64(len(tgz))); err != nil {
		t.Fatalf("uploading the slug: %v", err)
	}
	if _, err := d.client("node-2").ReleaseSlug(ctx, app, slug.ID, ""); err != nil {
		t.Fatalf("releasing the slug: %v", err)
	}
}

// upDynos waits until the app has want web dynos up and returns them.
func upDynos(t *testing.T, d *dev, app, typ string, want int) []api.Dyno {
	t.Helper()
	var up []api.Dyno
	eventually(t, 90*time.Second, fmt.Sprintf("%d %s dynos up", want, typ), func() error {
		ds, err := d.client("node-1").Dynos(context.Background(), app)
		if err != nil {
			return err
		}
		up = up[:0]
		var states []string
		for _, dy := range ds {
			states = append(states, dy.Name+":"+dy.State+"@"+dy.Node+" "+dy.PendingReason+dy.Reason)
			if dy.Type == typ && dy.State == "up" {
				up = append(up, dy)
			}
		}
		if len(up) != want || len(ds) != want+countOther(ds, typ) {
			return fmt.Errorf("dynos: %v", states)
		}
		return nil
	})
	sort.Slice(up, func(i, j int) bool { return up[i].Name < up[j].Name })
	return up
}

func countOther(ds []api.Dyno, typ string) int {
	n := 0
	for _, d := range ds {
		if d.Type != typ {
			n++
		}
	}
	return n
}

// port finds a dyno's host port: the API does not show it, the dyno does.
func (d *dev) dynoAddr(t *testing.T, app string, dy api.Dyno) string {
	t.Helper()
	var info struct {
		Addr string `json:"addr"`
		Port int    `json:"port"`
	}
	// Admin view of the dyno record.
	if _, err := d.client("node-1").Do(context.Background(), "GET", "/cluster/dynos/"+dy.ID, nil, &info, nil); err != nil {
		t.Fatalf("dyno %s: %v", dy.Name, err)
	}
	return fmt.Sprintf("%s:%d", info.Addr, info.Port)
}

func get(url string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// killDynoProcesses kills what dynos a killed agent left behind (dynos
// outlive their agent by design, for adoption).
func killDynoProcesses(dir string) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err == nil && strings.HasPrefix(cwd, dir) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func TestDynosRunAcrossZonesRollAndMove(t *testing.T) {
	d := startDev(t, 3, "")
	t.Cleanup(func() { killDynoProcesses(d.dir) })
	ctx := context.Background()
	deployWebapp(t, d, "dynos")
	c := d.client("node-3")
	web := upDynos(t, d, "dynos", "web", 1)
	if web[0].Name != "web.1" || web[0].Release.Version != 2 {
		t.Fatalf("web = %+v", web)
	}
	q := api.Quantity{N: 3}
	if _, err := c.UpdateFormation(ctx, "dynos", []api.FormationUpdate{{Type: "web", Quantity: &q}}); err != nil {
		t.Fatal(err)
	}
	web = upDynos(t, d, "dynos", "web", 3)
	zones := map[string]bool{}
	for _, dy := range web {
		zones[dy.Zone] = true
		body, err := get("http://" + d.dynoAddr(t, "dynos", dy) + "/")
		if err != nil || !strings.Contains(body, "hello from "+dy.Name) {
			t.Fatalf("%s answered %q, %v", dy.Name, body, err)
		}
	}
	if len(zones) != 3 {
		t.Fatalf("3 web dynos in zones %v", zones)
	}

	// A crash is restarted at once; a second crash waits out the backoff.
	target := web[0]
	if _, err := get("http://" + d.dynoAddr(t, "dynos", target) + "/crash"); err == nil {
		t.Logf("crash request answered (the process exits right after)")
	}
	eventually(t, 60*time.Second, target.Name+" restarted after its crash", func() error {
		dy, err := c.Dyno(ctx, "dynos", target.Name)
		if err != nil {
			return err
		}
		if dy.State != "up" || !dy.UpdatedAt.After(target.UpdatedAt) {
			return fmt.Errorf("%s is %s", dy.Name, dy.State)
		}
		return nil
	})
	dy, _ := c.Dyno(ctx, "dynos", target.Name)
	get("http://" + d.dynoAddr(t, "dynos", *dy) + "/crash")
	eventually(t, 30*time.Second, target.Name+" crashed and waiting (backoff)", func() error {
		dy, err := c.Dyno(ctx, "dynos", target.Name)
		if err != nil {
			return err
		}
		if dy.State != "crashed" {
			return fmt.Errorf("%s is %s", dy.Name, dy.State)
		}
		return nil
	})
	time.Sleep(3 * time.Second)
	if dy, _ := c.Dyno(ctx, "dynos", target.Name); dy.State != "crashed" {
		t.Fatalf("second crash restarted without backoff: %s", dy.State)
	}
	out, err := d.run(nil, slipwayBin, "ps", "-a", "dynos")
	if err != nil || !strings.Contains(out, target.Name+": crashed") {
		t.Fatalf("ps does not show the crashed dyno: %v\n%s", err, out)
	}
	if err := c.RestartDynos(ctx, "dynos", "", target.Name); err != nil {
		t.Fatal(err)
	}
	upDynos(t, d, "dynos", "web", 3)

	// A config change rolls every dyno; some web dyno answers throughout.
	var stop atomic.Bool
	var zeroMoments, polls atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			ds, err := d.client("node-2").Dynos(ctx, "dynos")
			if err == nil {
				up := 0
				for _, dy := range ds {
					if dy.Type == "web" && dy.State == "up" {
						up++
					}
				}
				polls.Add(1)
				if up == 0 {
					zeroMoments.Add(1)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	greeting := "rolled"
	rollStart := time.Now()
	if _, err := c.UpdateConfigVars(ctx, "dynos", map[string]*string{"GREETING": &greeting}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 90*time.Second, "all web dynos on the new release", func() error {
		ds, err := c.Dynos(ctx, "dynos")
		if err != nil {
			return err
		}
		n := 0
		for _, dy := range ds {
			if dy.Type == "web" && dy.State == "up" && dy.Release.Version == 3 {
				n++
			}
		}
		if n != 3 || len(ds) != 3 {
			return fmt.Errorf("%d of %d dynos rolled", n, len(ds))
		}
		return nil
	})
	rollTook := time.Since(rollStart)
	stop.Store(true)
	wg.Wait()
	if zeroMoments.Load() != 0 {
		t.Fatalf("the app had no web dyno up at %d of %d polls during the roll", zeroMoments.Load(), polls.Load())
	}
	t.Logf("rolling release of 3 web dynos took %v (%d polls, never zero up)", rollTook.Round(time.Millisecond), polls.Load())
	for _, dy := range upDynos(t, d, "dynos", "web", 3) {
		body, err := get("http://" + d.dynoAddr(t, "dynos", dy) + "/")
		if err != nil || !strings.Contains(body, "greeting=rolled") {
			t.Fatalf("%s after the roll: %q %v", dy.Name, body, err)
		}
	}

	// kill -9 of a node's agent: its dynos come back on the other nodes.
	web = upDynos(t, d, "dynos", "web", 3)
	victim := web[1].Node
	if victim == d.leader() {
		victim = web[2].Node
	}
	killAt := time.Now()
	d.kill9(victim, d.node(victim).PID)
	eventually(t, 120*time.Second, "the dead node's dynos up elsewhere", func() error {
		ds, err := d.client(otherThan(d, victim)).Dynos(ctx, "dynos")
		if err != nil {
			return err
		}
		up := 0
		for _, dy := range ds {
			if dy.Type == "web" && dy.State == "up" && dy.Node != victim {
				up++
			}
		}
		if up != 3 {
			return fmt.Errorf("%d web dynos up off %s", up, victim)
		}
		return nil
	})
	t.Logf("kill -9 of %s: its dynos were up on other nodes %v later", victim, time.Since(killAt).Round(time.Millisecond))
}

func otherThan(d *dev, name string) string {
	for _, n := range d.nodes {
		if n.Name != name {
			return n.Name
		}
	}
	return ""
}

func TestScaleBadInput(t *testing.T) {
	d := startDev(t, 3, "")
	t.Cleanup(func() { killDynoProcesses(d.dir) })
	deployWebapp(t, d, "badscale")
	ctx := context.Background()
	c := d.client("node-1")
	for _, u := range []api.FormationUpdate{
		{Type: "nope", Quantity: &api.Quantity{N: 1}},
		{Type: "web", Quantity: &api.Quantity{N: -1}},
		{Type: "web", Quantity: &api.Quantity{N: 100000}},
	} {
		_, err := c.UpdateFormation(ctx, "badscale", []api.FormationUpdate{u})
		var ce *client.Error
		if err == nil || !asClientErr(err, &ce) || (ce.Status != 404 && ce.Status != 422) {
			t.Fatalf("scale %+v: %v", u, err)
		}
	}
	// Over capacity (20 × 14 GB on nodes that give dynos 80% of this
	// machine's memory): the dynos that fit run, the others wait with a
	// reason ps shows; the formation change itself is accepted, as Heroku's.
	upDynos(t, d, "badscale", "web", 1)
	big := "performance-l"
	if _, err := c.UpdateFormation(ctx, "badscale", []api.FormationUpdate{{Type: "web", Size: &big, Quantity: &api.Quantity{N: 20}}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "a pending reason in ps", func() error {
		out, err := d.run(nil, slipwayBin, "ps", "-a", "badscale")
		if err != nil || !strings.Contains(out, "waiting: no node has 14336 MB free") || !strings.Contains(out, ": up") {
			t.Logf("ps:\n%s", out)
			return fmt.Errorf("%v\n%s", err, out)
		}
		return nil
	})
}

func asClientErr(err error, target **client.Error) bool { return errors.As(err, target) }
