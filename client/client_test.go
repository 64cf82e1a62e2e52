package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/api"
	"github.com/slipwayhq/slipway/client"
)

// recorded is one request the fake server saw.
type recorded struct {
	Method     string
	RequestURI string
	Header     http.Header
	Body       string
}

// fake is an httptest server that records requests and answers them with
// handler.
type fake struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []recorded
}

func newFake(t *testing.T, handler http.HandlerFunc) *fake {
	t.Helper()
	f := &fake{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, recorded{r.Method, r.RequestURI, r.Header.Clone(), string(body)})
		f.mu.Unlock()
		handler(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fake) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func TestHeaders(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, api.Account{Email: "admin@localhost"})
	})
	c := client.New(f.URL+"/", "s3cret")
	acct, err := c.Account(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if acct.Email != "admin@localhost" {
		t.Errorf("email = %q", acct.Email)
	}
	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("got %d requests", len(reqs))
	}
	r := reqs[0]
	if r.Method != "GET" || r.RequestURI != "/account" {
		t.Errorf("request = %s %s, want GET /account", r.Method, r.RequestURI)
	}
	for k, want := range map[string]string{
		"Authorization": "Bearer s3cret",
		"Accept":        "application/vnd.heroku+json; version=3",
		"Content-Type":  "application/json",
	} {
		if got := r.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}

func TestNoTokenNoAuthorization(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, []api.Region{}) })
	if _, err := client.New(f.URL, "").Regions(context.Background()); err != nil {
		t.Fatal(err)
	}
	if h := f.requests()[0].Header.Get("Authorization"); h != "" {
		t.Errorf("Authorization = %q, want none", h)
	}
}

// releasesServer serves versions 1..n newest first in pages of at most
// max, answering 206 with Next-Range while more remain. Its Range syntax is
// the subset the client sends: "version ..; max=N, order=desc" for the
// first page and "version ]V..; max=N, order=desc" for the next ones.
func releasesServer(n int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rng := r.Header.Get("Range")
		max, below := 200, n+1
		if rng != "" {
			var spec string
			if _, err := fmt.Sscanf(rng, "version %s", &spec); err != nil {
				http.Error(w, "bad range", 400)
				return
			}
			if strings.HasPrefix(spec, "]") {
				fmt.Sscanf(spec, "]%d..;", &below)
			}
			if i := strings.Index(rng, "max="); i >= 0 {
				fmt.Sscanf(rng[i:], "max=%d", &max)
			}
		}
		var out []api.Release
		for v := below - 1; v >= 1 && len(out) < max; v-- {
			out = append(out, api.Release{Version: v, Current: v == n})
		}
		status := 200
		if len(out) > 0 && out[len(out)-1].Version > 1 {
			w.Header().Set("Next-Range", fmt.Sprintf("version ]%d..; max=%d, order=desc", out[len(out)-1].Version, max))
			status = 206
		}
		writeJSON(w, status, out)
	}
}

func TestReleasesOnePage(t *testing.T) {
	f := newFake(t, releasesServer(7))
	c := client.New(f.URL, "t")
	rels, err := c.Releases(context.Background(), "demo", client.ListOptions{Max: 3, Order: "desc"})
	if err != nil {
		t.Fatal(err)
	}
	if got := versions(rels); got != "7 6 5" {
		t.Errorf("versions = %s, want 7 6 5", got)
	}
	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("got %d requests, want 1", len(reqs))
	}
	if got, want := reqs[0].Header.Get("Range"), "version ..; max=3, order=desc"; got != want {
		t.Errorf("Range = %q, want %q", got, want)
	}
	if reqs[0].RequestURI != "/apps/demo/releases" {
		t.Errorf("path = %s", reqs[0].RequestURI)
	}
}

func TestReleasesAllPages(t *testing.T) {
	f := newFake(t, releasesServer(7))
	c := client.New(f.URL, "t")
	rels, err := c.Releases(context.Background(), "demo", client.ListOptions{Max: 3, Order: "desc", All: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := versions(rels); got != "7 6 5 4 3 2 1" {
		t.Errorf("versions = %s", got)
	}
	var ranges []string
	for _, r := range f.requests() {
		ranges = append(ranges, r.Header.Get("Range"))
	}
	want := []string{
		"version ..; max=3, order=desc",
		"version ]5..; max=3, order=desc",
		"version ]2..; max=3, order=desc",
	}
	if strings.Join(ranges, "|") != strings.Join(want, "|") {
		t.Errorf("Range headers = %q, want %q", ranges, want)
	}
}

func TestListStopsOnRepeatedNextRange(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Next-Range", "id ..; max=1")
		writeJSON(w, 206, []api.App{{Name: "a"}})
	})
	_, err := client.List[api.App](context.Background(), client.New(f.URL, "t"), "/apps", client.ListOptions{Max: 1, All: true})
	if err == nil || !strings.Contains(err.Error(), "Next-Range") {
		t.Fatalf("err = %v, want a Next-Range loop error", err)
	}
}

func TestAppsFollowsPaging(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") == "" {
			w.Header().Set("Next-Range", "name ]b..")
			writeJSON(w, 206, []api.App{{Name: "a"}, {Name: "b"}})
			return
		}
		writeJSON(w, 200, []api.App{{Name: "c"}})
	})
	apps, err := client.New(f.URL, "t").Apps(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(apps) != 3 || apps[2].Name != "c" {
		t.Errorf("apps = %+v", apps)
	}
	if got := f.requests()[1].Header.Get("Range"); got != "name ]b.." {
		t.Errorf("second Range = %q", got)
	}
}

func versions(rels []api.Release) string {
	var s []string
	for _, r := range rels {
		s = append(s, fmt.Sprint(r.Version))
	}
	return strings.Join(s, " ")
}

func TestErrorDecoded(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 404, api.Error{ID: "not_found", Message: "Couldn't find that app."})
	})
	_, err := client.New(f.URL, "t").App(context.Background(), "nope")
	var apiErr *client.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("err = %#v, want *client.Error", err)
	}
	if apiErr.Status != 404 || apiErr.ID != "not_found" || apiErr.Message != "Couldn't find that app." {
		t.Errorf("err = %+v", apiErr)
	}
	if !strings.HasPrefix(err.Error(), "Couldn't find that app.") {
		t.Errorf("Error() = %q, want the message first", err.Error())
	}
	if !client.IsNotFound(err) || client.StatusCode(err) != 404 {
		t.Errorf("IsNotFound/StatusCode disagree with %v", err)
	}
}

func TestNonJSONError(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(502)
		io.WriteString(w, "<html>bad gateway</html>\nmore")
	})
	_, err := client.New(f.URL, "t").Stacks(context.Background())
	var apiErr *client.Error
	if !errors.As(err, &apiErr) || apiErr.Status != 502 || apiErr.ID != "" {
		t.Fatalf("err = %#v", err)
	}
	if got := err.Error(); got != "<html>bad gateway</html> (HTTP 502)" {
		t.Errorf("Error() = %q", got)
	}
}

func TestUpdateConfigVarsNull(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]string{"A": "1", "KEEP": "x"})
	})
	one := "1"
	vars, err := client.New(f.URL, "t").UpdateConfigVars(context.Background(), "demo", map[string]*string{"A": &one, "GONE": nil})
	if err != nil {
		t.Fatal(err)
	}
	if vars["KEEP"] != "x" || len(vars) != 2 {
		t.Errorf("vars = %v", vars)
	}
	r := f.requests()[0]
	if r.Method != "PATCH" || r.RequestURI != "/apps/demo/config-vars" {
		t.Errorf("request = %s %s", r.Method, r.RequestURI)
	}
	if got, want := r.Body, `{"A":"1","GONE":null}`; got != want {
		t.Errorf("body = %s, want %s", got, want)
	}
}

func TestPathEscaping(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]any{}) })
	c := client.New(f.URL, "t")
	ctx := context.Background()
	if _, err := c.App(ctx, "a/b c?d"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Domain(ctx, "..", "www.example.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DrainNode(ctx, "node 1", true); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/apps/a%2Fb%20c%3Fd",
		"/apps/%2E%2E/domains/www.example.com",
		"/cluster/nodes/node%201/drain",
	}
	for i, r := range f.requests() {
		if r.RequestURI != want[i] {
			t.Errorf("request %d = %s, want %s", i, r.RequestURI, want[i])
		}
	}
	if got := f.requests()[2].Body; got != `{"draining":true}` {
		t.Errorf("drain body = %s", got)
	}
}

func TestEmptyIdentifierRefused(t *testing.T) {
	c := client.New("http://127.0.0.1:1", "t")
	if _, err := c.App(context.Background(), ""); err == nil {
		t.Error("App(\"\") succeeded")
	}
}

func TestConnectionError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = client.New("http://"+addr, "t").Account(context.Background())
	if err == nil {
		t.Fatal("no error")
	}
	if !strings.Contains(err.Error(), "http://"+addr+"/account") {
		t.Errorf("error %q does not name the URL", err)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("error %v does not wrap ECONNREFUSED", err)
	}
	var apiErr *client.Error
	if errors.As(err, &apiErr) {
		t.Error("a connection error is not an API error")
	}
}

func TestContextCanceled(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := client.New(f.URL, "t").Account(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want DeadlineExceeded", err)
	}
}

func TestDoRawAndHeaders(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Thing", "1")
		io.WriteString(w, `{"unknown_field": [1, 2]}`)
	})
	var raw json.RawMessage
	resp, err := client.New(f.URL, "t").Do(context.Background(), "POST", client.Path("apps", "demo", "dynos"),
		map[string]string{"command": "bash"}, &raw, http.Header{"Accept": {"text/plain"}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("X-Thing") != "1" {
		t.Error("response header lost")
	}
	if string(raw) != `{"unknown_field": [1, 2]}` {
		t.Errorf("raw = %s", raw)
	}
	r := f.requests()[0]
	if r.Header.Get("Accept") != "text/plain" || r.Body != `{"command":"bash"}` {
		t.Errorf("request = %+v", r)
	}
}

func TestEmptySuccessBody(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	if _, err := client.New(f.URL, "t").RemoveDomain(context.Background(), "demo", "www.example.com"); err != nil {
		t.Fatal(err)
	}
}

func TestRollbackAndFormationBodies(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case "POST":
			writeJSON(w, 201, api.Release{Version: 6})
		default:
			writeJSON(w, 200, []api.Formation{{Type: "web", Quantity: 2}})
		}
	})
	c := client.New(f.URL, "t")
	rel, err := c.Rollback(context.Background(), "demo", "3")
	if err != nil || rel.Version != 6 {
		t.Fatalf("Rollback = %+v, %v", rel, err)
	}
	if _, err := c.UpdateFormation(context.Background(), "demo", []api.FormationUpdate{{Type: "web", Quantity: &api.Quantity{N: 2}}}); err != nil {
		t.Fatal(err)
	}
	reqs := f.requests()
	if reqs[0].Body != `{"release":"3"}` {
		t.Errorf("rollback body = %s", reqs[0].Body)
	}
	var batch api.FormationBatchRequest
	if err := json.Unmarshal([]byte(reqs[1].Body), &batch); err != nil || len(batch.Updates) != 1 || batch.Updates[0].Quantity.N != 2 {
		t.Errorf("formation body = %s (%v)", reqs[1].Body, err)
	}
}

func TestPath(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{[]string{"apps"}, "/apps"},
		{[]string{"apps", "my app", "config-vars"}, "/apps/my%20app/config-vars"},
		{[]string{"apps", "a%b"}, "/apps/a%25b"},
		{[]string{"apps", "."}, "/apps/%2E"},
	} {
		if got := client.Path(tc.in...); got != tc.want {
			t.Errorf("Path(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
