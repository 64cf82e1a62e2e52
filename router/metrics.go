package router

import (
	"strconv"
	"sync/atomic"
	"time"

	metrics "github.com/armon/go-metrics"
)

// latencyBounds are the upper bounds (ms) of the request latency
// histogram's buckets; the last bucket is +Inf.
var latencyBounds = [...]int64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000}

// stats are counted with atomics on the request path and published to
// go-metrics periodically, so the hot path pays no metrics-library cost.
type stats struct {
	active   atomic.Int64 // client connections
	statuses [6]atomic.Uint64
	buckets  [len(latencyBounds) + 1]atomic.Uint64
	sumMicro atomic.Uint64
	dials    atomic.Uint64
	connErrs atomic.Uint64

	// last published values, to publish counter deltas (Run's goroutine).
	pubStatuses [6]uint64
	pubBuckets  [len(latencyBounds) + 1]uint64
	pubSum      uint64
	pubDials    uint64
	pubConnErrs uint64
	pubInflight map[string]bool
}

// request counts a finished request: status class (0 for H27/H28's 499
// and anything odd) and latency.
func (s *stats) request(status int, d time.Duration) {
	class := status / 100
	if class < 1 || class > 5 || status == 499 {
		class = 0
	}
	s.statuses[class].Add(1)
	ms := d.Milliseconds()
	i := 0
	for i < len(latencyBounds) && ms > latencyBounds[i] {
		i++
	}
	s.buckets[i].Add(1)
	s.sumMicro.Add(uint64(d.Microseconds()))
}

func (s *stats) dial()         { s.dials.Add(1) }
func (s *stats) connectError() { s.connErrs.Add(1) }

var statusLabels = [6]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

// publishMetrics sends the counters' growth since the last call, the
// connection gauge and per-app in-flight gauges to go-metrics.
func (rt *Router) publishMetrics() {
	s := &rt.stats
	metrics.SetGauge([]string{"slipway", "router", "connections"}, float32(s.active.Load()))
	for i := range s.statuses {
		v := s.statuses[i].Load()
		if d := v - s.pubStatuses[i]; d > 0 {
			metrics.IncrCounterWithLabels([]string{"slipway", "router", "requests"}, float32(d),
				[]metrics.Label{{Name: "status", Value: statusLabels[i]}})
			s.pubStatuses[i] = v
		}
	}
	// A cumulative histogram, like Prometheus's: bucket le=X counts
	// requests that took at most X ms.
	var cum uint64
	for i := range s.buckets {
		cum += s.buckets[i].Load()
		le := "+Inf"
		if i < len(latencyBounds) {
			le = strconv.FormatInt(latencyBounds[i], 10)
		}
		if d := cum - s.pubBuckets[i]; d > 0 {
			metrics.IncrCounterWithLabels([]string{"slipway", "router", "latency_ms_bucket"}, float32(d),
				[]metrics.Label{{Name: "le", Value: le}})
			s.pubBuckets[i] = cum
		}
	}
	if v := s.sumMicro.Load(); v != s.pubSum {
		metrics.IncrCounter([]string{"slipway", "router", "latency_ms_sum"}, float32(v-s.pubSum)/1000)
		s.pubSum = v
	}
	if v := s.dials.Load(); v != s.pubDials {
		metrics.IncrCounter([]string{"slipway", "router", "dyno_dials"}, float32(v-s.pubDials))
		s.pubDials = v
	}
	if v := s.connErrs.Load(); v != s.pubConnErrs {
		metrics.IncrCounter([]string{"slipway", "router", "dyno_connect_errors"}, float32(v-s.pubConnErrs))
		s.pubConnErrs = v
	}
	// Per-app in-flight requests: apps with some, and apps that had some
	// last time (to bring them back to 0).
	now := map[string]bool{}
	t := rt.table.Load()
	seen := map[*appState]bool{}
	for _, a := range t.hosts {
		if seen[a.state] {
			continue
		}
		seen[a.state] = true
		if n := a.state.inflight.Load(); n > 0 || s.pubInflight[a.Name] {
			metrics.SetGaugeWithLabels([]string{"slipway", "router", "app_inflight"}, float32(n),
				[]metrics.Label{{Name: "app", Value: a.Name}})
			if n > 0 {
				now[a.Name] = true
			}
		}
	}
	s.pubInflight = now
}
