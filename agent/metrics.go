package agent

import (
	"context"
	"fmt"
	"net/http"
	"time"

	metrics "github.com/armon/go-metrics"
	promsink "github.com/armon/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/slipwayhq/slipway/fsm"
)

// Metrics exposes go-metrics measurements (Slipway's own and hashicorp/raft's)
// as Prometheus text.
type Metrics struct {
	reg *prometheus.Registry
	m   *metrics.Metrics
}

// NewMetrics creates a registry and a go-metrics sink feeding it. With
// global, the sink becomes go-metrics' global one (there is one per process;
// hashicorp/raft and memberlist report there).
func NewMetrics(global bool) (*Metrics, error) {
	reg := prometheus.NewRegistry()
	sink, err := promsink.NewPrometheusSinkFrom(promsink.PrometheusOpts{Registerer: reg, Expiration: time.Hour})
	if err != nil {
		return nil, fmt.Errorf("metrics sink: %w", err)
	}
	cfg := metrics.DefaultConfig("")
	cfg.EnableHostname = false
	cfg.EnableRuntimeMetrics = true
	cfg.EnableServiceLabel = false
	var m *metrics.Metrics
	if global {
		m, err = metrics.NewGlobal(cfg, sink)
	} else {
		m, err = metrics.New(cfg, sink)
	}
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return &Metrics{reg: reg, m: m}, nil
}

// Handler serves the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// reportFSM publishes table sizes and the applied index every few seconds.
func (m *Metrics) reportFSM(ctx context.Context, f *fsm.FSM) {
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		snap := f.Snap()
		for _, t := range fsm.TableNames() {
			m.m.SetGaugeWithLabels([]string{"slipway", "fsm", "records"}, float32(snap.Count(t)), []metrics.Label{{Name: "table", Value: t}})
		}
		m.m.SetGauge([]string{"slipway", "fsm", "applied_index"}, float32(snap.Index()))
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
