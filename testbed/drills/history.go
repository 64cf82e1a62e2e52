package drills

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// OpKind is what a writer operation did.
type OpKind int

// Operation kinds. Only writes and linearizable reads enter the
// linearizability check; stale (local) reads are checked separately.
const (
	Write OpKind = iota
	Read
	StaleRead
)

func (k OpKind) String() string {
	switch k {
	case Write:
		return "write"
	case Read:
		return "read"
	case StaleRead:
		return "stale-read"
	}
	return "?"
}

// Outcome is how an operation ended.
type Outcome int

// Outcomes. A write that Failed certainly did not happen (it was never
// sent, or the server refused it with a 4xx); an Ambiguous one (a timeout,
// a dropped connection, a 5xx) may or may not have happened.
const (
	OK Outcome = iota
	Failed
	Ambiguous
)

func (o Outcome) String() string {
	switch o {
	case OK:
		return "ok"
	case Failed:
		return "failed"
	case Ambiguous:
		return "ambiguous"
	}
	return "?"
}

// Op is one operation of the writer's history.
type Op struct {
	Worker int
	Kind   OpKind
	Node   string
	// Key and Value of a write.
	Key   string
	Value string
	// Values a read returned (the app's whole config).
	Values  map[string]string
	Start   time.Time
	End     time.Time
	Outcome Outcome
	Status  int    // HTTP status of a failure, if any
	ErrID   string // Heroku-style error id, if any
	Err     string
	// Expected marks a failure the drill provoked on purpose (a write
	// through a partition's minority); it does not count against RTO.
	Expected bool
}

// kvInput and kvOutput are the per-key model's operations: the history is
// partitioned by config var (linearizability is a local property, so the
// whole history is linearizable if and only if every key's is).
type kvInput struct {
	write bool
	key   string
	value string
}

type kvOutput struct {
	value string // what a read returned ("" for an absent key)
}

// kvModel is a register per config var, initially absent ("").
func kvModel() porcupine.Model {
	return porcupine.Model{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			byKey := map[string][]porcupine.Operation{}
			var keys []string
			for _, op := range history {
				k := op.Input.(kvInput).key
				if _, ok := byKey[k]; !ok {
					keys = append(keys, k)
				}
				byKey[k] = append(byKey[k], op)
			}
			sort.Strings(keys)
			out := make([][]porcupine.Operation, 0, len(keys))
			for _, k := range keys {
				out = append(out, byKey[k])
			}
			return out
		},
		Init: func() any { return "" },
		Step: func(state, input, output any) (bool, any) {
			in := input.(kvInput)
			if in.write {
				return true, in.value
			}
			return output.(kvOutput).value == state.(string), state
		},
		DescribeOperation: func(input, output any) string {
			in := input.(kvInput)
			if in.write {
				return fmt.Sprintf("set %s=%s", in.key, in.value)
			}
			return fmt.Sprintf("get %s -> %q", in.key, output.(kvOutput).value)
		},
		DescribeState: func(state any) string { return fmt.Sprintf("%q", state) },
	}
}

// porcupineHistory turns the writer's operations into porcupine's form:
// acknowledged writes and successful linearizable reads with their real
// call and return times (a read of the whole config is one read per key,
// all at the same times); ambiguous writes with a return time after
// everything else, so that the checker may place them anywhere after their
// call, or effectively never; failed writes, failed reads and stale reads
// are left out.
func porcupineHistory(ops []Op, keys []string, origin time.Time) []porcupine.Operation {
	var out []porcupine.Operation
	ts := func(t time.Time) int64 { return int64(t.Sub(origin)) }
	for _, op := range ops {
		switch {
		case op.Kind == Write && op.Outcome == OK:
			out = append(out, porcupine.Operation{ClientId: op.Worker, Input: kvInput{write: true, key: op.Key, value: op.Value},
				Call: ts(op.Start), Output: kvOutput{}, Return: ts(op.End)})
		case op.Kind == Write && op.Outcome == Ambiguous:
			out = append(out, porcupine.Operation{ClientId: op.Worker, Input: kvInput{write: true, key: op.Key, value: op.Value},
				Call: ts(op.Start), Output: kvOutput{}, Return: math.MaxInt64})
		case op.Kind == Read && op.Outcome == OK:
			for _, k := range keys {
				out = append(out, porcupine.Operation{ClientId: op.Worker, Input: kvInput{key: k},
					Call: ts(op.Start), Output: kvOutput{value: op.Values[k]}, Return: ts(op.End)})
			}
		}
	}
	return out
}

// Linearizability is the outcome of checking a history.
type Linearizability struct {
	Result     string // "ok", "illegal" or "unknown" (the checker timed out)
	Operations int
	Took       time.Duration
	// Visualization, when the history is not linearizable, is an HTML
	// file showing the longest linearizable prefixes (porcupine's), and
	// History the writer's operations, one JSON object a line.
	Visualization string
	History       string
}

// OK reports whether the history was proven linearizable.
func (l Linearizability) OK() bool { return l.Result == "ok" }

// CheckLinearizable checks a writer's history with porcupine. When it is
// not linearizable and vizDir is set, it writes porcupine's visualization
// there.
func CheckLinearizable(ops []Op, keys []string, origin time.Time, timeout time.Duration, vizDir string) Linearizability {
	h := porcupineHistory(ops, keys, origin)
	start := time.Now()
	res, info := porcupine.CheckOperationsVerbose(kvModel(), h, timeout)
	l := Linearizability{Operations: len(h), Took: time.Since(start)}
	switch res {
	case porcupine.Ok:
		l.Result = "ok"
	case porcupine.Illegal:
		l.Result = "illegal"
		if vizDir != "" {
			stem := fmt.Sprintf("%s/linearizability-%d", vizDir, time.Now().UnixNano())
			if err := porcupine.VisualizePath(kvModel(), info, stem+".html"); err == nil {
				l.Visualization = stem + ".html"
			}
			if err := writeHistory(stem+".jsonl", ops, origin); err == nil {
				l.History = stem + ".jsonl"
			}
		}
	default:
		l.Result = "unknown"
	}
	return l
}

// writeHistory saves the writer's operations, times in milliseconds from
// origin, for a closer look at a history that is not linearizable.
func writeHistory(path string, ops []Op, origin time.Time) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	ms := func(t time.Time) float64 { return float64(t.Sub(origin).Microseconds()) / 1000 }
	for _, op := range ops {
		rec := map[string]any{"worker": op.Worker, "kind": op.Kind.String(), "node": op.Node, "start_ms": ms(op.Start),
			"end_ms": ms(op.End), "outcome": op.Outcome.String()}
		if op.Kind == Write {
			rec["key"], rec["value"] = op.Key, op.Value
		} else {
			rec["values"] = op.Values
		}
		if op.Err != "" {
			rec["error"] = op.Err
		}
		if err := enc.Encode(rec); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}
