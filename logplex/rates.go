package logplex

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/slipwayhq/slipway/fsm"
)

// RateLogInput is the name of the per-app log input rate: lines per second
// each node accepts for one app (burst: two seconds' worth). 0 is a kill
// switch: no line is accepted. Lines over the rate are dropped and counted,
// and an L12 notice line says how many.
const RateLogInput = "log-input"

// RateMetaKey is the replicated key (fsm meta) holding a named rate's
// cluster-wide value, a JSON number.
func RateMetaKey(name string) string { return "rates/" + name }

// rateState is the log-input rate in force on this node.
type rateState struct {
	value  float64
	source string // default, cluster or file
	gen    uint64
}

func (r *rateState) burst() int {
	if r.value <= 0 {
		return 0
	}
	return int(math.Min(2*r.value, math.MaxInt32))
}

// RateInfo describes a named rate as this node applies it.
type RateInfo struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	// Source is where the value comes from: "default", "cluster" (set
	// through the API, replicated) or "file" (this node's rate file).
	Source string `json:"source"`
	Node   string `json:"node"`
}

// InputRate reports the log-input rate in force on this node.
func (p *Pipeline) InputRate() RateInfo {
	rs := p.rate.Load()
	return RateInfo{Name: RateLogInput, Value: rs.value, Unit: "lines/s per app per node", Source: rs.source, Node: p.opts.NodeName}
}

// ParseRate validates a rate value.
func ParseRate(v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return errors.New("a rate must be a number ≥ 0 (0 stops all input)")
	}
	if v > MaxInputRate {
		return fmt.Errorf("a rate must be at most %g", float64(MaxInputRate))
	}
	return nil
}

func formatRate(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// loadRate recomputes the rate in force: this node's rate file, else the
// replicated value, else the default.
func (p *Pipeline) loadRate(snap *fsm.Snap) {
	value, source := p.opts.InputRate, "default"
	if snap != nil {
		if m, ok := snap.Meta(RateMetaKey(RateLogInput)); ok {
			var v float64
			if err := json.Unmarshal(m.Value, &v); err == nil && ParseRate(v) == nil {
				value, source = v, "cluster"
			}
		}
	}
	if p.opts.RatesDir != "" {
		path := filepath.Join(p.opts.RatesDir, RateLogInput)
		if b, err := os.ReadFile(path); err == nil {
			v, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
			if err == nil && ParseRate(v) == nil {
				value, source = v, "file"
			} else {
				p.log.Warn("ignoring an invalid rate file", "path", path, "content", strings.TrimSpace(string(b)))
			}
		}
	}
	cur := p.rate.Load()
	if cur.value == value && cur.source == source {
		return
	}
	p.rate.Store(&rateState{value: value, source: source, gen: cur.gen + 1})
	p.log.Info("log input rate", "rate", RateLogInput, "value", value, "source", source)
}
