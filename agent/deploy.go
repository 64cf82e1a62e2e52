package agent

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/cluster"
	"github.com/slipwayhq/slipway/deploy"
)

// Deploy settings come from the environment until they get a section of
// the config file (defaults in parentheses):
//
//	SLIPWAY_BUILD_SIZE       the build dynos' size (Performance-M)
//	SLIPWAY_BUILD_TIMEOUT    a build's time limit (15m)
//	SLIPWAY_MAX_PUSH_MB      the largest git push (1024)
//	SLIPWAY_PUSH_LEASE_WAIT  how long a push waits for another (2m)
//
// GOPROXY, GOSUMDB, GONOSUMDB, GOPRIVATE and the HTTP(S)_PROXY/NO_PROXY
// variables of the agent are passed to build dynos.
var buildEnvPassthrough = [...]string{"GOPROXY", "GOSUMDB", "GONOSUMDB", "GOPRIVATE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"}

// startDeploy runs the node's deployment system (git pushes, builds,
// build dynos' endpoints) in <data_dir>/deploy and plugs it into the API.
// A node whose deployment system cannot start still runs: its git and
// builds endpoints answer 503, and the error is logged.
func (a *Agent) startDeploy() {
	exe, err := os.Executable()
	if err != nil {
		a.log.Warn("deploy: cannot find the slipway binary; builds started here will fail", "err", err)
	}
	env := map[string]string{}
	for _, k := range buildEnvPassthrough {
		if v := os.Getenv(k); v != "" {
			env[k] = v
		}
	}
	dur := func(k string) time.Duration {
		d, _ := time.ParseDuration(os.Getenv(k))
		return d
	}
	maxPush, _ := strconv.ParseInt(os.Getenv("SLIPWAY_MAX_PUSH_MB"), 10, 64)
	svc, err := deploy.New(deploy.Config{
		Node: a.cfg.NodeName, Snap: a.fsm.Snap, Submit: a.Submit, Blobs: a.blobs, Cluster: a.node, Events: a.logs,
		Authenticate: a.api.Authenticate, APIURL: a.cfg.apiURL(), APIURLs: a.apiURLs, WebURL: a.api.WebURL, Binary: exe,
		WorkDir: filepath.Join(a.cfg.DataDir, "deploy"), BuildSize: os.Getenv("SLIPWAY_BUILD_SIZE"),
		BuildTimeout: dur("SLIPWAY_BUILD_TIMEOUT"), MaxPushBytes: maxPush << 20, LeaseWait: dur("SLIPWAY_PUSH_LEASE_WAIT"),
		BuildEnv: env, Logger: a.log,
	})
	if err != nil {
		a.log.Error("deploy: not started", "err", err)
		return
	}
	a.api.SetDeployer(svc)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		<-a.ctx.Done()
		svc.Close()
	}()
}

// apiURLs lists the API URLs of the region's live nodes.
func (a *Agent) apiURLs() []string {
	var out []string
	for _, m := range a.node.Members() {
		if m.Meta.Region == a.cfg.Region && m.State == cluster.StateAlive && strings.HasPrefix(m.Meta.API, "http") {
			out = append(out, m.Meta.API)
		}
	}
	return out
}
