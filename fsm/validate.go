package fsm

import (
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"
)

// Limits on config vars. Heroku limits the combined size of an app's keys and
// values to 64 KB; so do we.
const (
	MaxConfigKeyLen   = 256
	MaxConfigTotalLen = 64 * 1024
	MaxQuantity       = 100 // dynos of one process type
	MaxDomainsPerApp  = 1000
	MaxDescriptionLen = 1024
)

var (
	appNameRE     = regexp.MustCompile(`^[a-z][a-z0-9-]{1,28}[a-z0-9]$`)
	configKeyRE   = regexp.MustCompile(`^\w+$`)
	processTypeRE = regexp.MustCompile(`^[-\w]{1,128}$`)
	hostLabelRE   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

// ValidAppName reports whether name is acceptable as an app name, with the
// error Heroku gives otherwise.
func ValidAppName(name string) *Error {
	if !appNameRE.MatchString(name) {
		return invalid("Name must start with a letter, end with a letter or digit and can only contain lowercase letters, digits, and dashes.")
	}
	if len(name) < 3 || len(name) > 30 {
		return invalid("Name must be between 3 and 30 characters long.")
	}
	return nil
}

// ValidConfigChanges checks keys and values of a config PATCH.
func ValidConfigChanges(changes map[string]*string) *Error {
	for k, v := range changes {
		if len(k) > MaxConfigKeyLen {
			return invalid("Config var name %.40q... is too long (maximum is %d characters).", k, MaxConfigKeyLen)
		}
		if !configKeyRE.MatchString(k) {
			return invalid("Invalid config var name %q: names may only contain letters, digits and underscores (matching ^\\w+$).", k)
		}
		if v == nil {
			continue
		}
		if !utf8.ValidString(*v) {
			return invalid("Config var %s is not valid UTF-8.", k)
		}
		if strings.IndexByte(*v, 0) >= 0 {
			return invalid("Config var %s contains a NUL byte.", k)
		}
	}
	return nil
}

// ConfigSize is the combined size of keys and values.
func ConfigSize(vars map[string]string) int {
	n := 0
	for k, v := range vars {
		n += len(k) + len(v)
	}
	return n
}

// ValidProcessType checks a process type name.
func ValidProcessType(t string) *Error {
	if !processTypeRE.MatchString(t) {
		return invalid("Type %q is invalid: it must match ^[-\\w]{1,128}$.", t)
	}
	return nil
}

// NormalizeHostname lowercases a hostname and strips one trailing dot.
func NormalizeHostname(h string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
}

// ValidHostname checks a (normalized) domain name. A leading "*." makes a
// wildcard domain.
func ValidHostname(h string) *Error {
	if h == "" {
		return invalid("Hostname can't be blank.")
	}
	if len(h) > 253 {
		return invalid("Hostname %.40q... is too long (maximum is 253 characters).", h)
	}
	rest := strings.TrimPrefix(h, "*.")
	labels := strings.Split(rest, ".")
	if len(labels) < 2 {
		return invalid("Hostname %q is invalid: it needs at least two labels (like www.example.com).", h)
	}
	for _, l := range labels {
		if !hostLabelRE.MatchString(l) {
			return invalid("Hostname %q is invalid.", h)
		}
	}
	return nil
}

// DynoSize is a dyno size: a name and a memory quota.
type DynoSize struct {
	Name     string `json:"name"`
	MemoryMB int    `json:"memory_mb"`
	Compute  int    `json:"compute"` // relative CPU share
}

// DefaultDynoSize is the size of a process type that was never given one.
const DefaultDynoSize = "Basic"

// DynoSizes is the size catalog.
func DynoSizes() []DynoSize {
	return []DynoSize{
		{Name: "Eco", MemoryMB: 512, Compute: 1},
		{Name: "Basic", MemoryMB: 512, Compute: 1},
		{Name: "Standard-1X", MemoryMB: 512, Compute: 1},
		{Name: "Standard-2X", MemoryMB: 1024, Compute: 2},
		{Name: "Performance-M", MemoryMB: 2560, Compute: 4},
		{Name: "Performance-L", MemoryMB: 14336, Compute: 8},
	}
}

// LookupDynoSize finds a size by name, case-insensitively (Heroku accepts
// "standard-2x" and "Standard-2X"; "1X"/"2X" are the legacy names).
func LookupDynoSize(name string) (DynoSize, bool) {
	n := strings.ToLower(name)
	switch n {
	case "1x":
		n = "standard-1x"
	case "2x":
		n = "standard-2x"
	}
	for _, s := range DynoSizes() {
		if strings.ToLower(s.Name) == n {
			return s, true
		}
	}
	return DynoSize{}, false
}

// Feature describes an app feature flag (heroku labs).
type Feature struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	DocURL      string `json:"doc_url"`
	State       string `json:"state"`
	Default     bool   `json:"default"`
}

// Features is the app feature catalog, sorted by name.
func Features() []Feature {
	f := []Feature{
		{Name: "runtime-dyno-metadata", State: "public",
			Description: "Provide information about the app and environment (HEROKU_APP_ID, HEROKU_APP_NAME, HEROKU_RELEASE_VERSION, HEROKU_SLUG_COMMIT, ...) to its dynos.",
			DocURL:      "https://devcenter.heroku.com/articles/dyno-metadata"},
		{Name: "log-runtime-metrics", State: "public",
			Description: "Emit dyno resource usage (memory, CPU load) into the app's log stream.",
			DocURL:      "https://devcenter.heroku.com/articles/log-runtime-metrics"},
	}
	sort.Slice(f, func(i, j int) bool { return f[i].Name < f[j].Name })
	return f
}

// LookupFeature finds a catalog feature by name.
func LookupFeature(name string) (Feature, bool) {
	for _, f := range Features() {
		if f.Name == name {
			return f, true
		}
	}
	return Feature{}, false
}

// Stack is a runtime image dynos run on.
type Stack struct {
	Name        string `json:"name"`
	State       string `json:"state"`
	Description string `json:"description"`
}

// DefaultStack is the stack of apps that do not choose one: the node's own
// /usr, /bin and /lib mounted read-only, so nothing has to be downloaded.
const DefaultStack = "host"

// Stacks is the stack catalog.
func Stacks() []Stack {
	return []Stack{
		{Name: "host", State: "default", Description: "The node's own operating system, mounted read-only."},
	}
}

// LookupStack finds a stack by name.
func LookupStack(name string) (Stack, bool) {
	for _, s := range Stacks() {
		if s.Name == name {
			return s, true
		}
	}
	return Stack{}, false
}
