package router

import (
	"strings"
	"testing"
	"time"

	metrics "github.com/armon/go-metrics"

	"github.com/slipwayhq/slipway/fsm"
)

func TestMetricsArePublished(t *testing.T) {
	inm := metrics.NewInmemSink(time.Minute, time.Minute)
	cfg := metrics.DefaultConfig("t")
	cfg.EnableHostname, cfg.EnableRuntimeMetrics = false, false
	if _, err := metrics.NewGlobal(cfg, inm); err != nil {
		t.Fatal(err)
	}
	defer metrics.NewGlobal(cfg, &metrics.BlackholeSink{})
	tr := newTestRouter(t, Options{})
	app := tr.createApp("demo")
	tr.addDyno(app, "web.1", hostPort(echoBackend(t, "web.1")), "n1", "a", fsm.DynoUp)
	tr.createApp("empty")
	tr.waitTable()
	for i := 0; i < 3; i++ {
		tr.get("demo.localhost", "/")
	}
	tr.get("empty.localhost", "/")
	// The log line and counters follow the response.
	tr.sink.waitLine(t, "code=H14")
	eventually(5*time.Second, func() bool { return tr.rt.stats.statuses[5].Load() == 1 && tr.rt.stats.statuses[2].Load() == 3 })
	tr.rt.publishMetrics()
	data := inm.Data()
	counters := map[string]float64{}
	gauges := map[string]float32{}
	for _, iv := range data {
		for k, c := range iv.Counters {
			counters[k] += float64(c.Sum)
		}
		for k, g := range iv.Gauges {
			gauges[k] = g.Value
		}
	}
	find := func(m map[string]float64, parts ...string) float64 {
		for k, v := range m {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(k, p)
			}
			if ok {
				return v
			}
		}
		return -1
	}
	if got := find(counters, "slipway.router.requests", "2xx"); got != 3 {
		t.Errorf("2xx requests = %v (%v)", got, counters)
	}
	if got := find(counters, "slipway.router.requests", "5xx"); got != 1 {
		t.Errorf("5xx requests = %v", got)
	}
	if got := find(counters, "latency_ms_bucket", "+Inf"); got != 4 {
		t.Errorf("latency histogram +Inf bucket = %v", got)
	}
	if find(counters, "slipway.router.dyno_dials") < 1 {
		t.Errorf("no dial counted: %v", counters)
	}
	found := false
	for k := range gauges {
		if strings.Contains(k, "slipway.router.connections") {
			found = true
		}
	}
	if !found {
		t.Errorf("no connections gauge: %v", gauges)
	}
}
