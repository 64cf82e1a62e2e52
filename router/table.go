package router

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slipwayhq/slipway/cluster"
	"github.com/slipwayhq/slipway/fsm"
)

// Config vars the router reads.
const (
	EnvMaintenancePageURL = "MAINTENANCE_PAGE_URL"
	EnvErrorPageURL       = "ERROR_PAGE_URL"
)

// Input is what a route table is built from: the replicated state's
// records and gossip's view of which nodes are down.
type Input struct {
	Index   uint64
	Apps    []*fsm.App
	Domains []*fsm.Domain
	Dynos   []*fsm.Dyno
	Certs   []*fsm.Cert
	// Pages holds each app's MAINTENANCE_PAGE_URL and ERROR_PAGE_URL.
	Pages map[string]Pages
	// Down names the nodes gossip reports dead or left.
	Down map[string]bool
}

// Pages are an app's custom error and maintenance pages.
type Pages struct{ Maintenance, Error string }

// InputFromSnap reads a table's input from a state snapshot and the
// gossip members (nil when gossip is not known).
func InputFromSnap(snap *fsm.Snap, members []cluster.Member) *Input {
	in := &Input{Index: snap.Index(), Apps: snap.Apps(), Domains: snap.AllDomains(), Dynos: snap.AllDynos(),
		Certs: snap.AllCerts(), Pages: map[string]Pages{}, Down: downNodes(members)}
	for _, a := range in.Apps {
		cfg := snap.Config(a.ID)
		if p := (Pages{Maintenance: cfg[EnvMaintenancePageURL], Error: cfg[EnvErrorPageURL]}); p != (Pages{}) {
			in.Pages[a.ID] = p
		}
	}
	return in
}

func downNodes(members []cluster.Member) map[string]bool {
	down := map[string]bool{}
	for _, m := range members {
		if m.State == cluster.StateDead || m.State == cluster.StateLeft {
			down[m.Name] = true
		}
	}
	return down
}

// Table is an immutable route table. Its Apps and Backends are shared
// with later tables where they did not change, so per-backend counters
// and connection pools survive table swaps.
type Table struct {
	Index uint64
	hosts map[string]*App
	// wild maps "example.com" to the app of the "*.example.com" domain.
	wild  map[string]*App
	certs *certTable
	// backends lists every backend in the table (for node quarantine).
	backends []*Backend
}

// App is an app's entry in a route table.
type App struct {
	ID, Name, Region string
	Maintenance      bool
	Pages            Pages
	// Backends are the app's routable web dynos.
	Backends []*Backend
	// Crashed: the app has web dynos but none is up and one crashed (H10).
	Crashed bool
	// Backlog is the most requests the router keeps in flight for the app
	// before answering H11.
	Backlog int64
	state   *appState
}

// appState is an app's router state that outlives tables.
type appState struct{ inflight atomic.Int64 }

// Lookup finds the app a Host header (or SNI name) routes to: an exact
// domain first, then wildcard domains from the most specific.
func (t *Table) Lookup(host string) *App { return t.lookup([]byte(host)) }

func (t *Table) lookup(host []byte) *App {
	var buf [253]byte
	h, ok := normalizeHostInto(buf[:0], host)
	if !ok {
		return nil
	}
	if a := t.hosts[string(h)]; a != nil {
		return a
	}
	for i := bytes.IndexByte(h, '.'); i >= 0; {
		h = h[i+1:]
		if a := t.wild[string(h)]; a != nil {
			return a
		}
		i = bytes.IndexByte(h, '.')
	}
	return nil
}

// normalizeHost lowercases a Host header and strips its port and one
// trailing dot. It rejects what can never be a domain (IP literals in
// brackets, control characters, empty names).
func normalizeHost(host string) (string, bool) {
	var buf [253]byte
	h, ok := normalizeHostInto(buf[:0], []byte(host))
	return string(h), ok
}

// normalizeHostInto is normalizeHost writing into dst (which must have
// room for 253 bytes), without allocating.
func normalizeHostInto(dst, host []byte) ([]byte, bool) {
	if i := bytes.IndexByte(host, ':'); i >= 0 {
		port := host[i+1:]
		for j := 0; j < len(port); j++ {
			if port[j] < '0' || port[j] > '9' {
				return nil, false
			}
		}
		host = host[:i]
	}
	if n := len(host); n > 0 && host[n-1] == '.' {
		host = host[:n-1]
	}
	if len(host) == 0 || len(host) > 253 || host[0] == '.' || host[len(host)-1] == '.' {
		return nil, false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case c == '.':
			if host[i-1] == '.' {
				return nil, false // an empty label
			}
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		default:
			return nil, false
		}
		dst = append(dst, c)
	}
	return dst, true
}

// registry keeps the per-backend and per-app state that outlives tables.
// Only the table builder uses it (under mu).
type registry struct {
	mu       sync.Mutex
	backends map[string]*Backend
	apps     map[string]*appState
	certs    map[string]*parsedCert
	pool     poolOptions
}

func newRegistry(po poolOptions) *registry {
	return &registry{backends: map[string]*Backend{}, apps: map[string]*appState{}, certs: map[string]*parsedCert{}, pool: po}
}

// buildOptions shape a table.
type buildOptions struct {
	// BacklogPerDyno is H11's limit per up web dyno (Heroku: 200).
	BacklogPerDyno int
}

// build makes a table from in, reusing the registry's state for backends,
// apps and certificates that are still there and retiring the rest. It is
// a pure function of (in, registry contents).
func (reg *registry) build(in *Input, bo buildOptions) *Table {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	t := &Table{Index: in.Index, hosts: map[string]*App{}, wild: map[string]*App{}}
	apps := make(map[string]*App, len(in.Apps))
	seenApps := make(map[string]bool, len(in.Apps))
	for _, a := range in.Apps {
		st := reg.apps[a.ID]
		if st == nil {
			st = &appState{}
			reg.apps[a.ID] = st
		}
		seenApps[a.ID] = true
		apps[a.ID] = &App{ID: a.ID, Name: a.Name, Region: a.Region, Maintenance: a.Maintenance, Pages: in.Pages[a.ID], state: st}
	}
	for id := range reg.apps {
		if !seenApps[id] {
			delete(reg.apps, id)
		}
	}

	// Web dynos by app. A dyno on a node gossip reports down leaves the
	// table at once, unless that would leave its app with no dyno at all
	// (then connect errors and quarantine decide: better a retry than H14
	// when this node is the one cut off).
	type cand struct {
		d    *fsm.Dyno
		down bool
	}
	byApp := map[string][]cand{}
	crashed := map[string]bool{}
	for _, d := range in.Dynos {
		if d.Type != "web" || apps[d.AppID] == nil {
			continue
		}
		if d.State == fsm.DynoCrashed && !d.Stop {
			crashed[d.AppID] = true
		}
		if d.State != fsm.DynoUp || d.Stop || d.Node == "" || d.Addr == "" || d.Port <= 0 {
			continue
		}
		byApp[d.AppID] = append(byApp[d.AppID], cand{d: d, down: in.Down[d.Node]})
	}
	seenBackends := map[string]bool{}
	for appID, cs := range byApp {
		live := 0
		for _, c := range cs {
			if !c.down {
				live++
			}
		}
		a := apps[appID]
		for _, c := range cs {
			if c.down && live > 0 {
				continue
			}
			key := backendKey(c.d)
			b := reg.backends[key]
			if b == nil {
				b = newBackend(key, c.d, reg.pool)
				reg.backends[key] = b
			}
			seenBackends[key] = true
			a.Backends = append(a.Backends, b)
			t.backends = append(t.backends, b)
		}
		// A stable order makes tables comparable and tests deterministic.
		sort.Slice(a.Backends, func(i, j int) bool { return a.Backends[i].key < a.Backends[j].key })
	}
	for key, b := range reg.backends {
		if !seenBackends[key] {
			b.retire()
			delete(reg.backends, key)
		}
	}
	per := bo.BacklogPerDyno
	if per <= 0 {
		per = 200
	}
	for _, a := range apps {
		a.Crashed = len(a.Backends) == 0 && crashed[a.ID]
		a.Backlog = int64(per * max(1, len(a.Backends)))
	}
	for _, d := range in.Domains {
		a := apps[d.AppID]
		if a == nil {
			continue
		}
		h := fsm.NormalizeHostname(d.Hostname)
		if rest, ok := strings.CutPrefix(h, "*."); ok {
			t.wild[rest] = a
		} else {
			t.hosts[h] = a
		}
	}
	t.certs = reg.buildCerts(in.Certs)
	return t
}

func backendKey(d *fsm.Dyno) string {
	return d.ID + "@" + d.Addr + ":" + itoa(d.Port)
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	neg := n < 0
	if neg {
		n = -n
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}

// quarantineNode quarantines every backend of a node (see
// Backend.quarantine) (the node looks unreachable: a dial timed out or the host is down),
// and drops their idle keep-alive connections: a request written on one
// would wait out the first-byte timeout (H12) on a node that is gone.
func (t *Table) quarantineNode(node string, now int64, base time.Duration) {
	if node == "" {
		return
	}
	for _, b := range t.backends {
		if b.Node == node {
			b.quarantine(now, base)
			b.pool.closeIdle(0, true)
		}
	}
}

// pick chooses a backend by power of two choices on in-flight requests,
// preferring the local zone on ties. It skips backends in tried and, while
// any other remains, quarantined ones. rnd supplies randomness (two
// independent draws are taken from its halves). It returns nil when every
// backend has been tried.
func pick(bs []*Backend, tried []*Backend, localZone string, now int64, rnd uint64) *Backend {
	n := len(bs)
	if n == 0 {
		return nil
	}
	eligible := func(b *Backend, allowQuarantined bool) bool {
		for _, t := range tried {
			if t == b {
				return false
			}
		}
		return allowQuarantined || !b.quarantined(now)
	}
	r1, r2 := uint32(rnd), uint32(rnd>>32)
	if n == 1 {
		if eligible(bs[0], true) {
			return bs[0]
		}
		return nil
	}
	// Fast path: two distinct random backends, both eligible.
	i := int(uint64(r1) * uint64(n) >> 32)
	j := int(uint64(r2) * uint64(n-1) >> 32)
	if j >= i {
		j++
	}
	if a, b := bs[i], bs[j]; eligible(a, false) && eligible(b, false) {
		return better(a, b, localZone)
	}
	// Slow path: choose among the eligible ones by rank.
	for _, allowQ := range []bool{false, true} {
		k := 0
		for _, b := range bs {
			if eligible(b, allowQ) {
				k++
			}
		}
		switch k {
		case 0:
			continue
		case 1:
			for _, b := range bs {
				if eligible(b, allowQ) {
					return b
				}
			}
		}
		ra := int(uint64(r1) * uint64(k) >> 32)
		rb := int(uint64(r2) * uint64(k-1) >> 32)
		if rb >= ra {
			rb++
		}
		var a, b *Backend
		rank := 0
		for _, x := range bs {
			if !eligible(x, allowQ) {
				continue
			}
			if rank == ra {
				a = x
			}
			if rank == rb {
				b = x
			}
			rank++
		}
		return better(a, b, localZone)
	}
	return nil
}

// better is the P2C comparison: fewer in-flight requests, then the local
// zone, then the first.
func better(a, b *Backend, localZone string) *Backend {
	la, lb := a.inflight.Load(), b.inflight.Load()
	switch {
	case la < lb:
		return a
	case lb < la:
		return b
	case b.Zone == localZone && a.Zone != localZone:
		return b
	}
	return a
}

// nowNano is the router's clock in Unix nanoseconds.
func nowNano(now func() time.Time) int64 { return now().UnixNano() }

// signature describes a table's routing content deterministically (for
// tests and debugging): hostnames, their apps' flags and backends.
func (t *Table) signature() string {
	var lines []string
	add := func(kind, h string, a *App) {
		keys := make([]string, len(a.Backends))
		for i, b := range a.Backends {
			keys[i] = b.key
		}
		lines = append(lines, fmt.Sprintf("%s %s app=%s m=%v c=%v p=%v backlog=%d [%s]", kind, h, a.ID, a.Maintenance, a.Crashed, a.Pages, a.Backlog, strings.Join(keys, " ")))
	}
	for h, a := range t.hosts {
		add("host", h, a)
	}
	for h, a := range t.wild {
		add("wild", h, a)
	}
	if t.certs != nil {
		for h := range t.certs.exact {
			lines = append(lines, "cert "+h)
		}
		for h := range t.certs.wild {
			lines = append(lines, "cert *."+h)
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
