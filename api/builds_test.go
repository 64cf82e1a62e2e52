package api

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/slipwayhq/slipway/deploy"
	"github.com/slipwayhq/slipway/fsm"
)

// fakeDeployer records build requests and follows nothing.
type fakeDeployer struct {
	b    *fakeBackend
	reqs []deploy.BuildRequest
}

func (f *fakeDeployer) CreateBuild(ctx context.Context, req deploy.BuildRequest) (*fsm.Build, error) {
	f.reqs = append(f.reqs, req)
	b := fsm.Build{ID: uuid.NewString(), AppID: req.App.ID, Origin: fsm.BuildFromAPI, SourceURL: req.URL, SourceVersion: req.Version, Buildpacks: req.Buildpacks}
	cmd, _ := fsm.NewCommand(fsm.CmdBuildCreate, uuid.NewString(), time.Now(), req.User.ID, fsm.BuildCreate{Build: b})
	res, err := f.b.Submit(ctx, cmd)
	if err != nil {
		return nil, err
	}
	var out fsm.Build
	return &out, res.Decode(&out)
}

func (f *fakeDeployer) Follow(_ context.Context, id string, w io.Writer, _ func()) error {
	_, err := io.WriteString(w, "output of "+id+"\n")
	return err
}
func (f *fakeDeployer) GitHandler() http.Handler      { return http.NotFoundHandler() }
func (f *fakeDeployer) InternalHandler() http.Handler { return http.NotFoundHandler() }

func TestBuildsAPI(t *testing.T) {
	e := newSlugEnv(t, 0)
	// Without a deployment system: 503, clearly.
	e.errID(503, "unavailable", "POST", "/apps/demo/builds", `{"source_blob":{"url":"https://example.com/a.tgz"}}`)
	fd := &fakeDeployer{b: e.b}
	e.srv.SetDeployer(fd)

	e.errID(422, "invalid_params", "POST", "/apps/demo/builds", `{"source_blob":{}}`)
	e.errID(404, "not_found", "POST", "/apps/nope/builds", `{"source_blob":{"url":"https://example.com/a.tgz"}}`)
	e.errID(400, "bad_request", "POST", "/apps/demo/builds", `{"source_blob":{"url":"x"},"bogus":1}`)
	r := e.must(201, "POST", "/apps/demo/builds", `{"source_blob":{"url":"https://example.com/a.tgz","version":"v1.2"},"buildpacks":[{"url":"heroku/go"}]}`)
	var b Build
	if err := r.json(&b); err != nil || b.Status != "pending" || b.SourceBlob.URL != "https://example.com/a.tgz" || *b.SourceBlob.Version != "v1.2" ||
		len(b.Buildpacks) != 1 || b.Buildpacks[0].URL != "heroku/go" || b.User.Email != "admin@localhost" || !strings.Contains(b.OutputStreamURL, "/builds/"+b.ID+"/output?") {
		t.Fatalf("build %s (%v)", r.body, err)
	}
	if len(fd.reqs) != 1 || fd.reqs[0].Buildpacks[0] != "heroku/go" {
		t.Fatalf("requests %+v", fd.reqs)
	}
	var list []Build
	if err := e.must(200, "GET", "/apps/demo/builds", "").json(&list); err != nil || len(list) != 1 || list[0].ID != b.ID {
		t.Fatalf("list %v %v", list, err)
	}
	e.must(200, "GET", "/apps/demo/builds/"+b.ID, "")
	e.errID(404, "not_found", "GET", "/apps/demo/builds/"+uuid.NewString(), "")

	// The output URL works without a token; a tampered one does not.
	out := e.raw("GET", b.OutputStreamURL, nil)
	if out.status != 200 || string(out.body) != "output of "+b.ID+"\n" {
		t.Fatalf("output %d %s", out.status, out.body)
	}
	if bad := e.raw("GET", strings.Replace(b.OutputStreamURL, "signature=", "signature=x", 1), nil); bad.status != 403 {
		t.Fatalf("tampered output URL: %d", bad.status)
	}

	// Buildpack installations.
	var inst []BuildpackInstallation
	if err := e.must(200, "PUT", "/apps/demo/buildpack-installations", `{"updates":[{"buildpack":"heroku/go"},{"buildpack":"https://github.com/x/bp.git"}]}`, "Range", "").json(&inst); err != nil ||
		len(inst) != 2 || inst[1].Ordinal != 1 || inst[1].Buildpack.URL != "https://github.com/x/bp.git" {
		t.Fatalf("installations %v %v", inst, err)
	}
	e.errID(422, "invalid_params", "PUT", "/apps/demo/buildpack-installations", `{"updates":[{"buildpack":"heroku/nodejs"}]}`)
	if err := e.must(200, "GET", "/apps/demo/buildpack-installations", "").json(&inst); err != nil || len(inst) != 2 {
		t.Fatalf("installations after a refused update %v", inst)
	}
	e.must(200, "PUT", "/apps/demo/buildpack-installations", `{"updates":[]}`)
	if err := e.must(200, "GET", "/apps/demo/buildpack-installations", "").json(&inst); err != nil || len(inst) != 0 {
		t.Fatalf("cleared installations %v", inst)
	}
	e.must(202, "DELETE", "/apps/demo/build-cache", "")

	// Sources: PUT a tarball, GET it back; a traversal is refused.
	var src SourceCreated
	if err := e.must(201, "POST", "/sources", "").json(&src); err != nil {
		t.Fatal(err)
	}
	tgz := makeTgz(t, tarEntry{name: "Procfile", body: "web: x\n"})
	if r := e.raw("PUT", src.SourceBlob.PutURL, tgz); r.status != 200 {
		t.Fatalf("source put %d %s", r.status, r.body)
	}
	if r := e.raw("GET", src.SourceBlob.GetURL, nil); r.status != 200 || string(r.body) != string(tgz) {
		t.Fatalf("source get %d", r.status)
	}
	if r := e.raw("GET", src.SourceBlob.PutURL, nil); r.status != 403 {
		t.Fatalf("a put URL used for GET: %d", r.status)
	}
	var src2 SourceCreated
	e.must(201, "POST", "/sources", "").json(&src2)
	if r := e.raw("PUT", src2.SourceBlob.PutURL, makeTgz(t, tarEntry{name: "../evil", body: "x"})); r.status != 422 || !strings.Contains(string(r.body), "refused") {
		t.Fatalf("traversal source %d %s", r.status, r.body)
	}
	if r := e.raw("GET", src2.SourceBlob.GetURL, nil); r.status != 404 {
		t.Fatalf("a refused source can be read: %d", r.status)
	}
}
