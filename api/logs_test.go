package api

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/slipwayhq/slipway/logplex"
)

// logEnv is an API with a real log pipeline on the same state.
func logEnv(t *testing.T) (*env, *logplex.Pipeline) {
	e := newEnv(t)
	p := logplex.New(logplex.Options{NodeName: "n1", State: e.b.f})
	t.Cleanup(p.Close)
	e.srv = New(e.b, Options{Domain: "localhost", APIURL: "http://127.0.0.1:5000", Events: p, Logs: p})
	return e, p
}

func TestLogDrainsAPI(t *testing.T) {
	e, _ := logEnv(t)
	e.must(201, "POST", "/apps", `{"name":"demo"}`)
	e.must(201, "POST", "/apps", `{"name":"other"}`)
	r := e.must(201, "POST", "/apps/demo/log-drains", `{"url":"syslog+tls://logs.example.com:6514"}`)
	var d LogDrain
	if err := r.json(&d); err != nil || !strings.HasPrefix(d.Token, "d.") || len(d.Token) != 38 || d.URL != "syslog+tls://logs.example.com:6514" || d.ID == "" {
		t.Fatalf("drain %s", r.body)
	}
	if !strings.Contains(string(r.body), `"addon":null`) {
		t.Fatalf("addon must be null: %s", r.body)
	}
	before := e.state()
	bad := map[string]string{
		`{"url":"syslog+tls://logs.example.com:6514"}`: "already been taken",
		`{"url":"ftp://x.example.com"}`:                "scheme",
		`{"url":"syslog://x.example.com"}`:             "port",
		`{"url":"syslog://u:p@x.example.com:1"}`:       "credentials",
		`{"url":""}`:                                   "blank",
		`{}`:                                           "blank",
	}
	for body, want := range bad {
		er := e.errID(422, "invalid_params", "POST", "/apps/demo/log-drains", body)
		if !strings.Contains(er.Message, want) {
			t.Errorf("%s: message %q lacks %q", body, er.Message, want)
		}
	}
	e.errID(400, "bad_request", "POST", "/apps/demo/log-drains", `{"url":5}`)
	if e.state() != before {
		t.Fatal("rejected drains changed the state")
	}
	for i := 0; i < 5; i++ {
		e.must(201, "POST", "/apps/demo/log-drains", `{"url":"https://logs.example.com/`+string(rune('a'+i))+`"}`)
	}
	er := e.errID(422, "invalid_params", "POST", "/apps/demo/log-drains", `{"url":"https://logs.example.com/z"}`)
	if !strings.Contains(er.Message, "at most 6") {
		t.Fatalf("limit message %q", er.Message)
	}
	// Another app is unaffected by demo's limit.
	e.must(201, "POST", "/apps/other/log-drains", `{"url":"syslog+tls://logs.example.com:6514"}`)

	var list []LogDrain
	if err := e.must(200, "GET", "/apps/demo/log-drains", "").json(&list); err != nil || len(list) != 6 {
		t.Fatalf("list: %v %d", err, len(list))
	}
	if list[0].Status == "" {
		t.Fatalf("no health status: %+v", list[0])
	}
	// Info and delete by id, token and (percent-encoded) URL.
	e.must(200, "GET", "/apps/demo/log-drains/"+d.Token, "")
	e.must(200, "GET", "/apps/demo/log-drains/"+d.ID, "")
	e.must(200, "DELETE", "/apps/demo/log-drains/"+url.PathEscape("syslog+tls://logs.example.com:6514"), "")
	e.errID(404, "not_found", "DELETE", "/apps/demo/log-drains/"+d.Token, "")
	e.must(200, "DELETE", "/apps/demo/log-drains/"+url.PathEscape("https://logs.example.com/a"), "")
	if err := e.must(200, "GET", "/apps/demo/log-drains", "").json(&list); err != nil || len(list) != 4 {
		t.Fatalf("after deletes: %d", len(list))
	}
	e.errID(404, "not_found", "GET", "/apps/nope/log-drains", "")
}

func TestLogSessionsAndEvents(t *testing.T) {
	e, _ := logEnv(t)
	e.must(201, "POST", "/apps", `{"name":"demo"}`)
	e.must(200, "PATCH", "/apps/demo/config-vars", `{"A":"1","B":"2"}`)
	e.must(200, "PATCH", "/apps/demo/config-vars", `{"A":null}`)
	e.must(201, "POST", "/apps/demo/releases", `{"release":"1"}`)
	e.must(200, "PATCH", "/apps/demo", `{"maintenance":true}`)
	e.must(201, "POST", "/apps/demo/domains", `{"hostname":"www.example.com"}`)

	// The log stream is public: it is fetched without credentials.
	srv := httptest.NewServer(e.srv)
	defer srv.Close()
	r := e.must(201, "POST", "/apps/demo/log-sessions", `{"lines":100,"tail":false}`)
	var s LogSession
	// The URL is on the host the client used (httptest's example.com).
	if err := r.json(&s); err != nil || s.ID == "" || !strings.HasPrefix(s.LogplexURL, "http://example.com"+LogSessionPath) {
		t.Fatalf("session %s", r.body)
	}
	resp, err := http.Get(srv.URL + strings.TrimPrefix(s.LogplexURL, "http://example.com"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
	}
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			lines = append(lines, d)
		}
	}
	all := strings.Join(lines, "\n")
	for _, want := range []string{
		"app[api]: Initial release by user admin@localhost",
		"app[api]: Release v1 created by user admin@localhost",
		"app[api]: Set A, B config vars by user admin@localhost",
		"app[api]: Release v2 created by user admin@localhost",
		"app[api]: Remove A config vars by user admin@localhost",
		"app[api]: Rollback to v1 by user admin@localhost",
		"app[api]: Release v4 created by user admin@localhost",
		"app[api]: Maintenance mode on by user admin@localhost",
		"app[api]: Add www.example.com domain by user admin@localhost",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("log lacks %q:\n%s", want, all)
		}
	}
	// Bad session requests change nothing and say why.
	e.errID(422, "invalid_params", "POST", "/apps/demo/log-sessions", `{"source":"bogus"}`)
	e.errID(422, "invalid_params", "POST", "/apps/demo/log-sessions", `{"lines":-1}`)
	e.errID(422, "invalid_params", "POST", "/apps/demo/log-sessions", `{"dyno":"web 1"}`)
	e.errID(404, "not_found", "POST", "/apps/nope/log-sessions", `{}`)
	// The CLI's body, including dyno as a process type.
	e.must(201, "POST", "/apps/demo/log-sessions", `{"source":"app","dyno":"web","lines":5,"tail":true}`, "Accept", "application/vnd.heroku+json; version=3.sdk")
	// Forged tokens are 404 (what the CLI reports as a timed-out stream).
	for _, tok := range []string{"x", "a.b", strings.Repeat("z", 3000)} {
		resp, err := http.Get(srv.URL + LogSessionPath + tok)
		if err != nil {
			t.Fatal(err)
		}
		var er Error
		json.NewDecoder(resp.Body).Decode(&er)
		resp.Body.Close()
		if resp.StatusCode != 404 || er.ID != "not_found" {
			t.Fatalf("token %.10q: %d %+v", tok, resp.StatusCode, er)
		}
	}
}

func TestLogInputRateAndInjection(t *testing.T) {
	e, p := logEnv(t)
	e.must(201, "POST", "/apps", `{"name":"demo"}`)
	var info logplex.RateInfo
	if err := e.must(200, "GET", "/cluster/rates/log-input", "").json(&info); err != nil || info.Value != logplex.DefaultInputRate || info.Source != "default" {
		t.Fatalf("rate %+v", info)
	}
	e.errID(422, "invalid_params", "PUT", "/cluster/rates/log-input", `{"value":-1}`)
	e.errID(422, "invalid_params", "PUT", "/cluster/rates/log-input", `{}`)
	if err := e.must(200, "PUT", "/cluster/rates/log-input", `{"value":0}`).json(&info); err != nil || info.Value != 0 || info.Source != "cluster" {
		t.Fatalf("rate after PUT %+v", info)
	}
	if got := p.InputRate(); got.Value != 0 {
		t.Fatalf("pipeline rate %+v", got)
	}
	e.must(200, "POST", "/cluster/log-lines/demo", `{"lines":["dropped by the kill switch"]}`)
	e.must(200, "PUT", "/cluster/rates/log-input", `{"value":100}`)
	e.must(200, "POST", "/cluster/log-lines/demo", `{"lines":["kept"],"dyno":"web.1"}`)
	e.errID(422, "invalid_params", "POST", "/cluster/log-lines/demo", `{"lines":["x"],"source":"nope"}`)
}
