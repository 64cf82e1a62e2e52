package e2e

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// herokuCLI finds the heroku CLI. In CI it must be installed (.ci/run does).
func herokuCLI(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("heroku")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the heroku CLI is required in CI (npm install -g heroku): %v", err)
		}
		t.Skip("heroku CLI not installed (npm install -g heroku@11.10.0)")
	}
	return p
}

// TestHerokuCLICompatibility drives the dev cluster with the unmodified
// heroku CLI and checks Heroku's output for each command.
func TestHerokuCLICompatibility(t *testing.T) {
	bin := herokuCLI(t)
	d := startDev(t, 3, "")
	home := t.TempDir()
	api := d.node("node-2").API // any node
	env := []string{
		"HOME=" + home, "HEROKU_HOST=" + api, "HEROKU_API_KEY=" + d.token,
		"HEROKU_PARTICLEBOARD_URL=" + api, "DISABLE_TELEMETRY=true",
		"HEROKU_SKIP_NEW_VERSION_CHECK=true", "HEROKU_DISABLE_AUTOUPDATE=1", "NO_COLOR=1", "FORCE_COLOR=0",
	}
	heroku := func(args ...string) string {
		t.Helper()
		out, err := d.run(env, bin, args...)
		if err != nil {
			t.Fatalf("heroku %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	expect := func(out string, patterns ...string) {
		t.Helper()
		for _, p := range patterns {
			if !regexp.MustCompile(p).MatchString(out) {
				t.Fatalf("output lacks %q:\n%s", p, out)
			}
		}
	}

	expect(heroku("apps:create", "demo"), `Creating ⬢?\s?demo\.\.\. done`, `http://demo\.localhost:\d+/ \| https://127\.0\.0\.1:\d+/demo\.git`)
	expect(heroku("apps"), `=== admin@localhost Apps`, `(?m)^demo`)
	expect(heroku("apps:info", "-a", "demo"), `=== ⬢?\s?demo`, `Owner:\s+admin@localhost`, `Region:\s+local`, `Stack:\s+host`, `Web URL:\s+http://demo\.localhost`)
	expect(heroku("config:set", "A=1", "B=two words", "-a", "demo"), `Setting A, B and restarting ⬢?\s?demo\.\.\. done, v2`, `A: 1`, `B: two words`)
	expect(heroku("config:get", "B", "-a", "demo"), `(?m)^two words$`)
	expect(heroku("config:unset", "A", "-a", "demo"), `Unsetting A and restarting ⬢?\s?demo\.\.\. done, v3`)
	out := heroku("config", "-a", "demo")
	expect(out, `=== ⬢?\s?demo Config Vars`, `B:\s+two words`)
	if strings.Contains(out, "A:") {
		t.Fatalf("unset var still listed:\n%s", out)
	}
	expect(heroku("releases", "-a", "demo"), `=== ⬢?\s?demo Releases - Current: v3`, `v3\s+Remove A config vars\s+admin@localhost`, `v2\s+Set A, B config vars\s+admin@localhost`, `v1\s+Initial release\s+admin@localhost`)
	expect(heroku("releases:info", "v2", "-a", "demo"), `=== Release v2`, `Change:\s+Set A, B config vars`, `A:\s+1`)
	expect(heroku("rollback", "-a", "demo"), `Rolling back ⬢?\s?demo to v2\.\.\. done, v4`)
	expect(heroku("config:get", "A", "-a", "demo"), `(?m)^1$`)
	expect(heroku("rollback", "v1", "-a", "demo"), `Rolling back ⬢?\s?demo to v1\.\.\. done, v5`)
	expect(heroku("domains:add", "www.example.com", "-a", "demo"), `Adding www\.example\.com to ⬢?\s?demo\.\.\. done`, `DNS Target demo\.localhost`)
	expect(heroku("domains", "-a", "demo"), `Heroku Domain`, `demo\.localhost`, `www\.example\.com\s+CNAME\s+demo\.localhost`)
	expect(heroku("labs", "-a", "demo"), `App Features ⬢?\s?demo`, `\[ \] runtime-dyno-metadata`)
	expect(heroku("labs:enable", "runtime-dyno-metadata", "-a", "demo"), `Enabling runtime-dyno-metadata for ⬢?\s?demo\.\.\. done`)
	expect(heroku("labs", "-a", "demo"), `\[\+\] runtime-dyno-metadata`)
	expect(heroku("maintenance:on", "-a", "demo"), `Enabling maintenance mode for ⬢?\s?demo\.\.\. done`)
	expect(heroku("maintenance", "-a", "demo"), `(?m)^on$`)
	expect(heroku("maintenance:off", "-a", "demo"), `Disabling maintenance mode for ⬢?\s?demo\.\.\. done`)
	expect(heroku("maintenance", "-a", "demo"), `(?m)^off$`)
	expect(heroku("regions"), `local`)
	expect(heroku("apps:rename", "demo2", "-a", "demo"), `Renaming ⬢?\s?demo to ⬢?\s?demo2\.\.\. done`, `http://demo2\.localhost`)
	expect(heroku("apps:info", "-a", "demo2"), `Web URL:\s+http://demo2\.localhost`)
	expect(heroku("apps:destroy", "demo2", "--confirm", "demo2"), `Destroying ⬢?\s?demo2 \(including all add-ons\)\.\.\. done`)

	// Errors come back the Heroku way: message, id, non-zero exit.
	out, err := d.run(env, bin, "apps:info", "-a", "demo2")
	if err == nil || !strings.Contains(out, "Couldn't find that app.") || !strings.Contains(out, "not_found") {
		t.Fatalf("missing app: err %v\n%s", err, out)
	}
	out, err = d.run(env, bin, "apps:create", "Bad_Name")
	if err == nil || !strings.Contains(out, "Name must start with a letter") {
		t.Fatalf("bad name: err %v\n%s", err, out)
	}
	badEnv := append(append([]string{}, env...), "HEROKU_API_KEY=wrong-token")
	out, err = d.run(badEnv, bin, "apps")
	if err == nil || !strings.Contains(strings.ToLower(out), "invalid") {
		t.Fatalf("wrong token: err %v\n%s", err, out)
	}
}

// TestHerokuCLIDynos: ps, ps:scale, ps:restart, run:detached and an
// attached run through the rendezvous endpoint, with the unmodified CLI.
func TestHerokuCLIDynos(t *testing.T) {
	bin := herokuCLI(t)
	d := startDev(t, 3, "")
	t.Cleanup(func() { killDynoProcesses(d.dir) })
	deployWebapp(t, d, "herodyno")
	upDynos(t, d, "herodyno", "web", 1)
	api := d.node("node-3").API
	env := []string{
		"HOME=" + t.TempDir(), "HEROKU_HOST=" + api, "HEROKU_API_KEY=" + d.token,
		"HEROKU_PARTICLEBOARD_URL=" + api, "DISABLE_TELEMETRY=true",
		"HEROKU_SKIP_NEW_VERSION_CHECK=true", "HEROKU_DISABLE_AUTOUPDATE=1", "NO_COLOR=1",
	}
	heroku := func(args ...string) string {
		t.Helper()
		out, err := d.run(env, bin, args...)
		if err != nil {
			t.Fatalf("heroku %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	expect := func(out string, patterns ...string) {
		t.Helper()
		for _, p := range patterns {
			if !regexp.MustCompile(p).MatchString(out) {
				t.Fatalf("output lacks %q:\n%s", p, out)
			}
		}
	}
	expect(heroku("ps", "-a", "herodyno"), `=== web \(Basic\): bin/web \(1\)`, `web\.1: up`)
	expect(heroku("ps:scale", "web=2", "-a", "herodyno"), `Scaling dynos\.\.\. done, now running web at 2:Basic`)
	upDynos(t, d, "herodyno", "web", 2)
	expect(heroku("ps", "-a", "herodyno"), `web\.1: up`, `web\.2: up`)
	expect(heroku("ps:restart", "-a", "herodyno"), `Restarting all dynos on ⬢?\s?herodyno\.\.\. done`)
	upDynos(t, d, "herodyno", "web", 2)
	expect(heroku("run:detached", "-a", "herodyno", "echo", "detached-output"), `Running .*echo detached-output.* on ⬢?\s?herodyno\.\.\. done, run\.\d+`)
	out := heroku("run", "-a", "herodyno", "--exit-code", "--", "echo", "hello from $DYNO")
	expect(out, `hello from run\.\d+`)
	// A failing command's status comes back with --exit-code.
	out, err := d.run(env, bin, "run", "-a", "herodyno", "--exit-code", "--", "exit 7")
	if err == nil || !strings.Contains(out, "7") {
		t.Fatalf("exit status not passed back: %v\n%s", err, out)
	}
	// slipway run does the same.
	sout, err := d.run(nil, slipwayBin, "run", "-a", "herodyno", "--", "echo", "slipway-run-works")
	if err != nil || !strings.Contains(sout, "slipway-run-works") {
		t.Fatalf("slipway run: %v\n%s", err, sout)
	}
}
