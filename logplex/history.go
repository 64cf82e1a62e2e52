package logplex

import (
	"fmt"
	"strings"
	"time"
)

// DefaultHistoryLines is how many lines of history each node keeps per app
// (Heroku's 1,500-line history; the region-wide history a session returns
// is the newest of the nodes' merged histories, at most this many).
const DefaultHistoryLines = 1500

// Filter selects lines for a log session: by source (app or heroku) and by
// dyno. A dyno filter with a dot ("web.1") matches that process only; one
// without ("web", "router") matches the process type: "web" matches web.1,
// web.2, ... (Heroku's prefix filter, without web.1 also matching web.10).
type Filter struct {
	Source string
	Dyno   string
}

// Match reports whether the filter selects l.
func (f Filter) Match(l *Line) bool {
	if f.Source != "" && f.Source != l.Source {
		return false
	}
	if f.Dyno == "" || f.Dyno == l.Proc {
		return true
	}
	if strings.IndexByte(f.Dyno, '.') >= 0 {
		return false
	}
	return len(l.Proc) > len(f.Dyno) && l.Proc[len(f.Dyno)] == '.' && strings.HasPrefix(l.Proc, f.Dyno)
}

// Validate checks a filter's fields.
func (f Filter) Validate() error {
	if f.Source != "" && f.Source != SourceApp && f.Source != SourceHeroku {
		return fmt.Errorf("source must be %q or %q, not %q", SourceApp, SourceHeroku, f.Source)
	}
	if len(f.Dyno) > 128 {
		return fmt.Errorf("dyno is too long (at most 128 characters)")
	}
	for _, c := range f.Dyno {
		if !(c == '.' || c == '-' || c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
			return fmt.Errorf("dyno %q may only contain letters, digits, '.', '-' and '_'", f.Dyno)
		}
	}
	return nil
}

// entry is a line as a node stores it: the line, the node it was born on
// and its sequence number there (per app, increasing).
type entry struct {
	Line
	Node string
	Seq  uint64
}

// rec is how the history stores a line: compact, without what every line
// of an app's channel on one node shares (app, node).
type rec struct {
	nanos  int64 // time, Unix nanoseconds
	seq    uint64
	heroku bool // source heroku (else app)
	proc   string
	text   string
}

func toRec(e *entry) rec {
	return rec{nanos: e.Time.UnixNano(), seq: e.Seq, heroku: e.Source == SourceHeroku, proc: e.Proc, text: e.Text}
}

func (r *rec) line(appID, appName string) Line {
	src := SourceApp
	if r.heroku {
		src = SourceHeroku
	}
	return Line{AppID: appID, AppName: appName, Time: time.Unix(0, r.nanos).UTC(), Source: src, Proc: r.proc, Text: r.text}
}

// ring is a fixed-capacity history of one app's lines on this node, oldest
// first. It grows as it fills (to exactly max), so an app with few lines
// costs little.
type ring struct {
	buf   []rec
	start int // index of the oldest record once buf is full
	max   int
}

func newRing(max int) *ring { return &ring{max: max} }

func (r *ring) push(e entry) {
	if r.max <= 0 {
		return
	}
	if len(r.buf) < r.max {
		if len(r.buf) == cap(r.buf) {
			nb := make([]rec, len(r.buf), min(r.max, max(16, 2*cap(r.buf))))
			copy(nb, r.buf)
			r.buf = nb
		}
		r.buf = append(r.buf, toRec(&e))
		return
	}
	r.buf[r.start] = toRec(&e)
	r.start = (r.start + 1) % r.max
}

func (r *ring) len() int { return len(r.buf) }

// at returns the i-th oldest record.
func (r *ring) at(i int) *rec { return &r.buf[(r.start+i)%len(r.buf)] }

// last returns the newest n lines that f selects, oldest first, as entries
// of app on node.
func (r *ring) last(n int, f Filter, appID, appName, node string) []entry {
	if n <= 0 || len(r.buf) == 0 {
		return nil
	}
	var picked []int
	for i := len(r.buf) - 1; i >= 0 && len(picked) < n; i-- {
		c := r.at(i)
		src := SourceApp
		if c.heroku {
			src = SourceHeroku
		}
		if f.Match(&Line{Source: src, Proc: c.proc}) {
			picked = append(picked, i)
		}
	}
	out := make([]entry, len(picked))
	for j, i := range picked {
		c := r.at(i)
		out[len(picked)-1-j] = entry{Line: c.line(appID, appName), Node: node, Seq: c.seq}
	}
	return out
}
