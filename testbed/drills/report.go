package drills

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Mark is a moment of a drill: what the drill did, and when (from the start
// of the writer and prober).
type Mark struct {
	At   time.Duration
	What string
}

// Check is a drill-specific expectation and whether it held.
type Check struct {
	Name   string
	OK     bool
	Detail string
}

// Report is what a drill measured.
type Report struct {
	Drill   string
	Summary string
	Cluster string
	Marks   []Mark
	// Duration is the whole drill, from the testbed being ready to the end
	// of the checks (the testbed's own start and teardown excluded); Setup
	// is its first part, deploying the web app before the writer and the
	// prober start.
	Duration time.Duration
	Setup    time.Duration
	// App describes the web app the prober requests.
	App string

	// RTO is the time from RTOFrom until the end of the last request
	// started after it that failed or took longer than Slow; zero when
	// none did. Recovered is
	// false when requests still failed when the drill gave up waiting.
	RTO       time.Duration
	RTOFrom   string
	Slow      time.Duration
	Recovered bool

	ProbeTarget  string
	Probes       int
	ProbesFailed int
	// RouterRTO is RTO counting probes alone: until every router served
	// the app again. RouterBound is what the drills allow it where a node
	// or zone is lost.
	RouterRTO   time.Duration
	RouterBound time.Duration
	// Answered counts successful probes by the dyno that answered.
	Answered string
	// FinalPlacement is where the web dynos ended up.
	FinalPlacement string

	Writes, WritesAcked, WritesFailed, WritesAmbiguous int
	// WritesAckedAfterFault counts acknowledged writes that started after
	// RTOFrom: writes continued.
	WritesAckedAfterFault int
	Reads, ReadsFailed    int
	// Expected counts failures the drill provoked on purpose (writes
	// through a partition's minority); they are not in FailedRequests.
	Expected int
	// FailedRequests: failed probes, writes and reads, except Expected.
	FailedRequests int
	// Slowest is the slowest successful write or read after RTOFrom.
	Slowest time.Duration

	// LostWrites are acknowledged writes missing from every release's
	// config vars afterwards. Must be zero.
	LostWrites         int
	LostExamples       []string
	AckedWritesChecked int
	Releases           int

	Linearizability Linearizability

	Converged      bool
	ConvergeTook   time.Duration
	ConvergeDetail string

	Checks []Check
	Notes  []string
	// Errors are a few distinct failure messages, for the reader.
	Errors []string

	expectedW, expectedR int
}

// Problems lists why the drill failed; empty means it passed. zeroFailures
// also requires no failed request at all (the rolling restart).
func (r *Report) Problems(zeroFailures bool) []string {
	var p []string
	if !r.Recovered {
		p = append(p, "the cluster did not serve again before the drill gave up")
	}
	if r.LostWrites > 0 {
		p = append(p, fmt.Sprintf("%d acknowledged writes were lost", r.LostWrites))
	}
	if !r.Linearizability.OK() {
		p = append(p, "the writer's history is not linearizable ("+r.Linearizability.Result+")")
	}
	if !r.Converged {
		p = append(p, "the nodes did not converge: "+r.ConvergeDetail)
	}
	if r.WritesAckedAfterFault == 0 {
		p = append(p, "no write was acknowledged after the fault")
	}
	if zeroFailures && r.FailedRequests > 0 {
		p = append(p, fmt.Sprintf("%d requests failed; this drill allows none", r.FailedRequests))
	}
	for _, c := range r.Checks {
		if !c.OK {
			p = append(p, c.Name+": "+c.Detail)
		}
	}
	return p
}

func secs(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }

// String is the printed report.
func (r *Report) String() string {
	var b strings.Builder
	line := func(k, format string, args ...any) { fmt.Fprintf(&b, "  %-13s %s\n", k, fmt.Sprintf(format, args...)) }
	fmt.Fprintf(&b, "== drill %s: %s\n", r.Drill, r.Summary)
	line("cluster", "%s", r.Cluster)
	if r.App != "" {
		line("app", "%s", r.App)
	}
	var tl []string
	for _, m := range r.Marks {
		tl = append(tl, fmt.Sprintf("+%s %s", secs(m.At), m.What))
	}
	line("timeline", "%s", strings.Join(tl, "\n                "))
	switch {
	case !r.Recovered:
		line("RTO", "NOT RECOVERED (requests still failing at the end)")
	case r.RTO == 0:
		line("RTO", "0s: no request failed or took over %s after %s", r.Slow, r.RTOFrom)
	default:
		line("RTO", "%s from %s to the end of the last request sent after it that failed or took over %s", secs(r.RTO), r.RTOFrom, r.Slow)
	}
	if r.Recovered {
		if r.RouterRTO == 0 {
			line("routers", "RTO 0s: no probe through the routers failed or took over %s after %s", r.Slow, r.RTOFrom)
		} else {
			line("routers", "RTO %s: every router served the app again %s after %s (probes alone)", secs(r.RouterRTO), secs(r.RouterRTO), r.RTOFrom)
		}
	}
	line("failed", "%d requests (%d probes, %d writes, %d reads)%s", r.FailedRequests, r.ProbesFailed,
		r.WritesFailed+r.WritesAmbiguous-r.expectedWrites(), r.ReadsFailed-r.expectedReads(), r.expectedNote())
	line("prober", "%d probes of %s, %d failed; answered by %s", r.Probes, r.ProbeTarget, r.ProbesFailed, orNone(r.Answered))
	line("writer", "%d writes: %d acknowledged (%d after the fault), %d failed unsent or refused, %d ambiguous; %d linearizable reads, %d failed; slowest after the fault %s",
		r.Writes, r.WritesAcked, r.WritesAckedAfterFault, r.WritesFailed, r.WritesAmbiguous, r.Reads, r.ReadsFailed, r.Slowest.Round(time.Millisecond))
	line("lost writes", "%d of %d acknowledged (looked up in the config vars of all %d releases)%s", r.LostWrites, r.AckedWritesChecked, r.Releases, examples(r.LostExamples))
	lin := r.Linearizability
	linText := map[string]string{"ok": "yes", "illegal": "NO", "unknown": "UNKNOWN (checker timed out)"}[lin.Result]
	line("linearizable", "%s (porcupine, %d operations, checked in %s)", linText, lin.Operations, lin.Took.Round(time.Millisecond))
	if lin.Visualization != "" {
		line("", "visualization: %s", lin.Visualization)
	}
	if lin.History != "" {
		line("", "history: %s", lin.History)
	}
	if r.Converged {
		line("converged", "yes, %s after the writer stopped: %s", secs(r.ConvergeTook), r.ConvergeDetail)
	} else {
		line("converged", "NO: %s", r.ConvergeDetail)
	}
	for _, c := range r.Checks {
		mark := "ok"
		if !c.OK {
			mark = "FAILED"
		}
		line("check", "%s: %s (%s)", c.Name, mark, c.Detail)
	}
	for _, e := range r.Errors {
		line("error seen", "%s", e)
	}
	for _, n := range r.Notes {
		line("note", "%s", n)
	}
	line("took", "%s (of which %s deploying the web app before the writer and prober started)", secs(r.Duration), secs(r.Setup))
	return b.String()
}

func (r *Report) expectedWrites() int { return r.expectedW }
func (r *Report) expectedReads() int  { return r.expectedR }

func (r *Report) expectedNote() string {
	if r.Expected == 0 {
		return ""
	}
	return fmt.Sprintf("; %d more failed on purpose (not counted)", r.Expected)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func examples(ex []string) string {
	if len(ex) == 0 {
		return ""
	}
	return ": " + strings.Join(ex, ", ")
}

// bad reports whether a request counts against RTO: it failed (and was not
// an expected failure) or it was slower than slow.
func badOp(op Op, slow time.Duration) bool {
	if op.Expected {
		return false
	}
	return op.Outcome != OK || op.End.Sub(op.Start) > slow
}

func badProbe(p Probe, slow time.Duration) bool {
	return !p.OK || p.End.Sub(p.Start) > slow
}

// lastBad is the end of the last bad request that started at or after
// from, and whether there was one. Requests under way when the fault
// struck are left out: one sent to a node that then went dark can only
// end with its client's timeout, which says nothing about when the
// cluster served again (they are still counted as failed requests).
func lastBad(from time.Time, ops []Op, probes []Probe, slow time.Duration) (time.Time, bool) {
	var last time.Time
	found := false
	for _, op := range ops {
		if op.Kind == StaleRead || op.Start.Before(from) || !badOp(op, slow) {
			continue
		}
		if !found || op.End.After(last) {
			last, found = op.End, true
		}
	}
	for _, p := range probes {
		if p.Start.Before(from) || !badProbe(p, slow) {
			continue
		}
		if !found || p.End.After(last) {
			last, found = p.End, true
		}
	}
	return last, found
}

// RTO is the time from from until the end of the last bad request.
func RTO(from time.Time, ops []Op, probes []Probe, slow time.Duration) time.Duration {
	last, ok := lastBad(from, ops, probes, slow)
	if !ok {
		return 0
	}
	return last.Sub(from)
}

// tally fills the request counts of a report.
func (r *Report) tally(from time.Time, ops []Op, probes []Probe) {
	errs := map[string]int{}
	for _, p := range probes {
		r.Probes++
		if !p.OK {
			r.ProbesFailed++
			errs["probe "+p.Node+": "+shortErr(p.Err)]++
		}
	}
	for _, op := range ops {
		if !op.Start.Before(from) && op.Outcome == OK && op.Kind != StaleRead {
			if d := op.End.Sub(op.Start); d > r.Slowest {
				r.Slowest = d
			}
		}
		switch op.Kind {
		case Write:
			r.Writes++
			switch op.Outcome {
			case OK:
				r.WritesAcked++
				if !op.Start.Before(from) {
					r.WritesAckedAfterFault++
				}
			case Failed:
				r.WritesFailed++
			case Ambiguous:
				r.WritesAmbiguous++
			}
			if op.Outcome != OK && op.Expected {
				r.expectedW++
			}
		case Read:
			r.Reads++
			if op.Outcome != OK {
				r.ReadsFailed++
				if op.Expected {
					r.expectedR++
				}
			}
		}
		if op.Outcome != OK && op.Kind != StaleRead && !op.Expected {
			errs[op.Kind.String()+" via "+op.Node+": "+shortErr(op.Err)]++
		}
	}
	r.Expected = r.expectedW + r.expectedR
	r.FailedRequests = r.ProbesFailed + r.WritesFailed + r.WritesAmbiguous + r.ReadsFailed - r.Expected
	type kv struct {
		k string
		n int
	}
	var list []kv
	for k, n := range errs {
		list = append(list, kv{k, n})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].n > list[j].n || list[i].n == list[j].n && list[i].k < list[j].k })
	for i, e := range list {
		if i == 5 {
			break
		}
		r.Errors = append(r.Errors, fmt.Sprintf("%d× %s", e.n, e.k))
	}
}
