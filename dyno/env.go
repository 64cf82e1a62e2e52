package dyno

import (
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/slipwayhq/slipway/fsm"
)

// markerPrefix starts the $0 of every dyno shim: slipway-dyno/NODE/DYNO/INSTANCE.
const markerPrefix = "slipway-dyno/"

// nodeMarkerPrefix is the marker prefix of one node's dynos.
func nodeMarkerPrefix(node string) string { return markerPrefix + node + "/" }

func dynoMarker(node, dynoID, instance string) string {
	return nodeMarkerPrefix(node) + dynoID + "/" + instance
}

// shimScript is the dyno's first process: `bash -c shimScript MARKER
// startScript COMMAND`. It survives the signals sent to the whole dyno (they
// reach the command anyway), waits for the start script, writes its exit
// status to fd 3 and exits with it. The start script runs in the foreground,
// so it gets the default signal dispositions (an `&` job would ignore
// SIGINT) and the terminal of an attached dyno.
const shimScript = `trap : HUP INT QUIT TERM USR1 USR2
bash -c "$1" bash "$2" 3>&-
st=$?
printf '%d\n' "$st" >&3
exit "$st"`

// startScript is Heroku's start-up, run by bash as `bash -c startScript bash
// COMMAND` with the dyno's environment: from $HOME, source the buildpacks'
// .profile.d/*.sh scripts and then the app's .profile (what they set is
// exported), then run the command with `bash -c`, which a simple command
// replaces, so that signals reach it directly.
const startScript = `__slipway_cmd=$1
shift
cd "$HOME" || exit 1
set -a
if [ -d "$HOME/.profile.d" ]; then
  for __slipway_f in "$HOME"/.profile.d/*.sh; do
    if [ -r "$__slipway_f" ]; then . "$__slipway_f"; fi
  done
  unset __slipway_f
fi
if [ -r "$HOME/.profile" ]; then . "$HOME/.profile"; fi
set +a
exec bash -c "$__slipway_cmd"`

// DefaultPath is $PATH in a dyno unless the app's config sets it.
const DefaultPath = "/usr/local/bin:/usr/bin:/bin"

// EnvInput is what a dyno's environment is made of.
type EnvInput struct {
	Dyno    *fsm.Dyno
	App     *fsm.App
	Release *fsm.Release
	Slug    *fsm.Slug
	Home    string
	// Metadata: the app has the runtime-dyno-metadata feature.
	Metadata bool
}

// BuildEnv returns a dyno's environment, sorted: PATH (unless the config
// sets it), the release's config vars, a one-off dyno's env, then what the
// platform sets and neither can override: PORT, DYNO, HOME and, with the
// runtime-dyno-metadata feature, the HEROKU_* metadata.
func BuildEnv(in EnvInput) []string {
	env := map[string]string{"PATH": DefaultPath}
	if in.Release != nil {
		for k, v := range in.Release.Config {
			env[k] = v
		}
	}
	d := in.Dyno
	for k, v := range d.Env {
		env[k] = v
	}
	if d.Port > 0 {
		env["PORT"] = strconv.Itoa(d.Port)
	}
	env["DYNO"] = d.Name
	env["HOME"] = in.Home
	if in.Metadata {
		if in.App != nil {
			env["HEROKU_APP_ID"] = in.App.ID
			env["HEROKU_APP_NAME"] = in.App.Name
		}
		env["HEROKU_DYNO_ID"] = d.ID
		if in.Release != nil {
			env["HEROKU_RELEASE_VERSION"] = fmt.Sprintf("v%d", in.Release.Version)
			env["HEROKU_RELEASE_CREATED_AT"] = in.Release.CreatedAt.UTC().Format(time.RFC3339)
			env["HEROKU_SLUG_DESCRIPTION"] = in.Release.Description
		}
		if in.Slug != nil {
			env["HEROKU_SLUG_COMMIT"] = in.Slug.Commit
		}
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// lookupEnv finds a variable in a KEY=VALUE list.
func lookupEnv(env []string, key string) (string, bool) {
	for _, kv := range env {
		if len(kv) > len(key) && kv[len(key)] == '=' && kv[:len(key)] == key {
			return kv[len(key)+1:], true
		}
	}
	return "", false
}
