package drills

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/api"
	"github.com/slipwayhq/slipway/client"
	"github.com/slipwayhq/slipway/testbed"
)

// webAppSource is the small web app the drills deploy, relative to the
// module root: the end-to-end tests' app. It answers every request on
// $PORT with "hello from DYNO release vN greeting=GREETING".
const webAppSource = "e2e/testdata/webapp"

// webAppName is the app the prober reaches through the routers. It is not
// the writer's app: every config change makes a release, and a release of
// an app with a slug rolls its dynos.
const webAppName = "drillweb"

// Slug is a Heroku-layout slug (a tar.gz holding ./app) of the web app.
type Slug struct {
	Tarball  []byte
	Checksum string // "SHA256:<hex>"
}

// BuildWebSlug builds the web app into a slug (./app/bin/web, a static
// binary), as a buildpack would. dir is a scratch directory.
func BuildWebSlug(ctx context.Context, dir string) (*Slug, error) {
	root, err := testbed.ModuleRoot()
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "web")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./"+webAppSource)
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building the drills' web app (%s): %w\n%s", webAppSource, err, out)
	}
	exe, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, d := range []string{"./app/", "./app/bin/"} {
		if err := tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
			return nil, err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: "./app/bin/web", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(exe))}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(exe); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(buf.Bytes())
	return &Slug{Tarball: buf.Bytes(), Checksum: "SHA256:" + hex.EncodeToString(sum[:])}, nil
}

// webApp is the deployed web app and what every answer must say.
type webApp struct {
	name     string
	host     string // APP.<domain>
	quantity int    // web dynos
	release  int    // the release every dyno runs
	greeting string
}

// want is what every answer of the app must contain: its release and
// greeting (the dyno's name comes before).
func (w *webApp) want() string {
	return fmt.Sprintf(" release v%d greeting=%s\n", w.release, w.greeting)
}

// deployWeb deploys the web app through the Slug API (create the app,
// enable dyno metadata so that the app prints its release, set GREETING,
// upload the slug, release it), scales web to quantity and waits until
// every dyno is up and every router serves it.
func (e *env) deployWeb(ctx context.Context, slug *Slug, quantity int, greeting string) error {
	began := time.Now()
	w := &webApp{name: webAppName, host: webAppName + "." + e.tb.Domain(), quantity: quantity, greeting: greeting}
	e.web = w
	if err := e.api(ctx, "creating the web app", func(c *client.Client) error {
		_, err := c.CreateApp(ctx, api.AppCreateRequest{Name: ptr(w.name)})
		if s := client.StatusCode(err); s == http.StatusUnprocessableEntity || s == http.StatusConflict {
			return nil // exists already (a retried create)
		}
		return err
	}); err != nil {
		return err
	}
	if err := e.api(ctx, "enabling runtime-dyno-metadata", func(c *client.Client) error {
		_, err := c.SetFeature(ctx, w.name, "runtime-dyno-metadata", true)
		return err
	}); err != nil {
		return err
	}
	if err := e.api(ctx, "setting GREETING", func(c *client.Client) error {
		_, err := c.UpdateConfigVars(ctx, w.name, map[string]*string{"GREETING": &greeting})
		return err
	}); err != nil {
		return err
	}
	var sl *api.Slug
	if err := e.api(ctx, "creating the slug", func(c *client.Client) error {
		var err error
		sl, err = c.CreateSlug(ctx, w.name, api.SlugCreateRequest{ProcessTypes: map[string]string{"web": "bin/web"}, Checksum: &slug.Checksum})
		return err
	}); err != nil {
		return err
	}
	if err := e.api(ctx, "uploading the slug", func(c *client.Client) error {
		_, err := c.UploadSlug(ctx, sl.Blob.URL, bytes.NewReader(slug.Tarball), int64(len(slug.Tarball)))
		return err
	}); err != nil {
		return err
	}
	if err := e.api(ctx, "releasing the slug", func(c *client.Client) error {
		_, err := c.ReleaseSlug(ctx, w.name, sl.ID, "drill web app")
		return err
	}); err != nil {
		return err
	}
	if err := e.api(ctx, "scaling web", func(c *client.Client) error {
		_, err := c.UpdateFormation(ctx, w.name, []api.FormationUpdate{{Type: "web", Quantity: &api.Quantity{N: quantity}}})
		return err
	}); err != nil {
		return err
	}
	if err := e.settleWeb(ctx); err != nil {
		return err
	}
	e.logf("drill: deployed %s (v%d, %d web dynos) in %s", w.name, w.release, quantity, secs(time.Since(began)))
	return nil
}

// setGreeting changes the web app's GREETING (a new release, which rolls
// every dyno) and waits until every dyno runs it and every router serves it.
func (e *env) setGreeting(ctx context.Context, greeting string) error {
	if err := e.api(ctx, "setting GREETING", func(c *client.Client) error {
		_, err := c.UpdateConfigVars(ctx, e.web.name, map[string]*string{"GREETING": &greeting})
		return err
	}); err != nil {
		return err
	}
	e.web.greeting = greeting
	return e.settleWeb(ctx)
}

// settleWeb reads the web app's latest release, waits until its formation
// runs on it, and until every in-service router serves it.
func (e *env) settleWeb(ctx context.Context) error {
	var rel int
	if err := e.api(ctx, "reading the web app's release", func(c *client.Client) error {
		var rels []api.Release
		_, err := c.Do(ctx, http.MethodGet, client.Path("apps", e.web.name, "releases"), nil, &rels,
			http.Header{"X-Slipway-Consistency": {"linearizable"}, "Range": {"version ..; max=1, order=desc"}})
		if err == nil && len(rels) != 1 {
			err = errors.New("no release")
		}
		if err == nil {
			rel = rels[0].Version
		}
		return err
	}); err != nil {
		return err
	}
	e.web.release = rel
	if _, _, err := e.waitFormation(ctx, nil, e.tb.Running()); err != nil {
		return err
	}
	for _, n := range e.tb.Running() {
		if err := e.waitRouter(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

// api calls f with a client of each running node in turn until it
// succeeds or the give-up time passes (the cluster is healthy when the
// drill sets up, but a request may meet a leader election).
func (e *env) api(ctx context.Context, what string, f func(*client.Client) error) error {
	nodes := e.tb.Running()
	if len(nodes) == 0 {
		return fmt.Errorf("%s: no node is running", what)
	}
	i := 0
	err := retry(ctx, e.ph.GiveUp, func() error {
		n := nodes[i%len(nodes)]
		i++
		return f(e.tb.Client(n, 30*time.Second))
	})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// dynosVia lists the web app's dynos through a node's API: linearizable
// (what the leader's replica says) or from the node's own replica.
func (e *env) dynosVia(ctx context.Context, node string, linearizable bool) ([]api.Dyno, error) {
	var hdr http.Header
	if linearizable {
		hdr = http.Header{"X-Slipway-Consistency": {"linearizable"}}
	}
	var ds []api.Dyno
	_, err := e.tb.Client(node, 10*time.Second).Do(ctx, http.MethodGet, client.Path("apps", e.web.name, "dynos"), nil, &ds, hdr)
	sort.Slice(ds, func(i, j int) bool { return ds[i].Name < ds[j].Name })
	return ds, err
}

// formationProblem says what keeps the dynos from being the web app's
// formation: exactly web.1 ... web.N, each up on the current release, and
// none on the nodes in avoid.
func (e *env) formationProblem(ds []api.Dyno, avoid map[string]bool) string {
	var bad []string
	seen := map[string]int{}
	for _, d := range ds {
		seen[d.Name]++
		switch {
		case d.Type != "web":
			bad = append(bad, d.Name+" is not a web dyno")
		case d.State != "up":
			bad = append(bad, fmt.Sprintf("%s is %s%s", d.Name, d.State, ifNotEmpty(" (", d.PendingReason+d.Reason, ")")))
		case d.Release.Version != e.web.release:
			bad = append(bad, fmt.Sprintf("%s runs v%d", d.Name, d.Release.Version))
		case avoid[d.Node]:
			bad = append(bad, fmt.Sprintf("%s is on %s", d.Name, d.Node))
		}
	}
	for i := 1; i <= e.web.quantity; i++ {
		name := fmt.Sprintf("web.%d", i)
		switch seen[name] {
		case 0:
			bad = append(bad, name+" is missing")
		case 1:
		default:
			bad = append(bad, fmt.Sprintf("%s is listed %d times", name, seen[name]))
		}
		delete(seen, name)
	}
	for name := range seen {
		bad = append(bad, name+" should not exist")
	}
	sort.Strings(bad)
	return strings.Join(bad, "; ")
}

func ifNotEmpty(pre, s, post string) string {
	if s == "" {
		return ""
	}
	return pre + s + post
}

// placement is "web.1@n1 web.2@n3 ...".
func placement(ds []api.Dyno) string {
	var out []string
	for _, d := range ds {
		s := d.Name + "@" + d.Node
		if d.State != "up" {
			s += "(" + d.State + ")"
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, " ")
}

// waitFormation waits until the web app's formation is complete (see
// formationProblem) as seen by a linearizable read through any of via,
// and returns the dynos and how long it took.
func (e *env) waitFormation(ctx context.Context, avoid map[string]bool, via []string) ([]api.Dyno, time.Duration, error) {
	began := time.Now()
	deadline := began.Add(e.ph.GiveUp)
	var last string
	for i := 0; ; i++ {
		if len(via) == 0 {
			return nil, 0, errors.New("no node to ask for the dynos")
		}
		n := via[i%len(via)]
		ds, err := e.dynosVia(ctx, n, true)
		if err == nil {
			if last = e.formationProblem(ds, avoid); last == "" {
				return ds, time.Since(began), nil
			}
			last = placement(ds) + ": " + last
		} else {
			last = fmt.Sprintf("via %s: %v", n, err)
		}
		if time.Now().After(deadline) {
			return nil, time.Since(began), fmt.Errorf("the web formation (%d × web on v%d) was not complete after %s: %s",
				e.web.quantity, e.web.release, e.ph.GiveUp, last)
		}
		if err := sleepCtx(ctx, 250*time.Millisecond); err != nil {
			return nil, 0, err
		}
	}
}

// waitRouter waits until a node's router serves the web app (what a load
// balancer's health check of the router would see).
func (e *env) waitRouter(ctx context.Context, node string) error {
	deadline := time.Now().Add(e.ph.GiveUp)
	p := &Prober{}
	p.defaults()
	t := e.routerTarget(node)
	var last Probe
	for {
		if last = p.probe(t); last.OK {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s's router did not serve %s after %s: %s", node, e.web.host, e.ph.GiveUp, last.Err)
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

func (e *env) routerTarget(node string) Target {
	return Target{Node: node, URL: e.tb.RouterURL(node) + "/", Host: e.web.host, Want: e.web.want()}
}

// dynoProcess is a web dyno's process group found on a node.
type dynoProcess struct {
	Node    string
	Dyno    string
	Release string
	PGID    int
}

// census lists the web app's dyno process groups on every node of the
// testbed (what runs, whatever the state says).
func (e *env) census(ctx context.Context) ([]dynoProcess, error) {
	var out []dynoProcess
	for _, n := range e.tb.Names() {
		procs, err := e.tb.Processes(ctx, n)
		if err != nil {
			return nil, err
		}
		seen := map[int]bool{}
		for _, p := range procs {
			if p.Env["HEROKU_APP_NAME"] != e.web.name || !strings.HasPrefix(p.Env["DYNO"], "web.") || seen[p.PGID] {
				continue
			}
			seen[p.PGID] = true
			out = append(out, dynoProcess{Node: n, Dyno: p.Env["DYNO"], Release: p.Env["HEROKU_RELEASE_VERSION"], PGID: p.PGID})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Dyno != out[j].Dyno {
			return out[i].Dyno < out[j].Dyno
		}
		return out[i].Node < out[j].Node
	})
	return out, nil
}

// censusProblem compares what runs with the dynos the state lists: every
// dyno runs exactly once, on its node, on its release, and nothing else
// runs.
func censusProblem(ds []api.Dyno, procs []dynoProcess) string {
	type key struct{ node, dyno string }
	running := map[key][]dynoProcess{}
	for _, p := range procs {
		k := key{p.Node, p.Dyno}
		running[k] = append(running[k], p)
	}
	var bad []string
	for _, d := range ds {
		k := key{d.Node, d.Name}
		ps := running[k]
		delete(running, k)
		switch {
		case len(ps) == 0:
			bad = append(bad, fmt.Sprintf("%s is not running on %s", d.Name, d.Node))
		case len(ps) > 1:
			bad = append(bad, fmt.Sprintf("%s runs %d times on %s", d.Name, len(ps), d.Node))
		case ps[0].Release != fmt.Sprintf("v%d", d.Release.Version):
			bad = append(bad, fmt.Sprintf("%s on %s runs %s, not v%d", d.Name, d.Node, ps[0].Release, d.Release.Version))
		}
	}
	for k, ps := range running {
		bad = append(bad, fmt.Sprintf("a leftover %s runs on %s (%d process groups, %s)", k.dyno, k.node, len(ps), ps[0].Release))
	}
	sort.Strings(bad)
	return strings.Join(bad, "; ")
}

// runningText is "web.1@n1 web.2@n3 ..." of what runs.
func runningText(procs []dynoProcess) string {
	var out []string
	for _, p := range procs {
		out = append(out, p.Dyno+"@"+p.Node)
	}
	if len(out) == 0 {
		return "nothing"
	}
	return strings.Join(out, " ")
}

// settleDynos waits until the whole cluster agrees on the web app's
// formation: complete (formationProblem), every node's own replica lists
// the same dynos as the linearizable read, and exactly those run (one
// process group per dyno, on its node: no duplicates and no leftovers).
// It records the result as a check.
func (e *env) settleDynos(ctx context.Context) {
	began := time.Now()
	deadline := began.Add(e.ph.GiveUp)
	var last string
	for {
		last = e.dynoAgreement(ctx)
		if last == "" || time.Now().After(deadline) {
			break
		}
		if sleepCtx(ctx, 250*time.Millisecond) != nil {
			break
		}
	}
	if last != "" {
		e.check("dynos converged: the formation exactly, no duplicates", false, "after %s: %s", secs(time.Since(began)), last)
		return
	}
	e.check("dynos converged: the formation exactly, no duplicates", true, "%d × web on v%d running once each (%s), every node's replica agreeing, %s after the writer stopped",
		e.web.quantity, e.web.release, e.report.FinalPlacement, secs(time.Since(began)))
}

func (e *env) dynoAgreement(ctx context.Context) string {
	running := e.tb.Running()
	if len(running) == 0 {
		return "no node is running"
	}
	var ds []api.Dyno
	var err error
	for _, n := range running {
		if ds, err = e.dynosVia(ctx, n, true); err == nil {
			break
		}
	}
	if err != nil {
		return "no node answered a linearizable read of the dynos: " + err.Error()
	}
	if p := e.formationProblem(ds, nil); p != "" {
		return placement(ds) + ": " + p
	}
	e.report.FinalPlacement = placement(ds)
	for _, n := range e.tb.Names() {
		local, err := e.dynosVia(ctx, n, false)
		if err != nil {
			return fmt.Sprintf("%s: %v", n, err)
		}
		if a, b := placement(local), placement(ds); a != b {
			return fmt.Sprintf("%s's replica lists %s, the leader's %s", n, a, b)
		}
	}
	procs, err := e.census(ctx)
	if err != nil {
		return "listing processes: " + err.Error()
	}
	if p := censusProblem(ds, procs); p != "" {
		return fmt.Sprintf("running %s: %s", runningText(procs), p)
	}
	return ""
}
