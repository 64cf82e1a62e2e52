package cluster

import (
	"time"

	metrics "github.com/armon/go-metrics"
	autopilot "github.com/hashicorp/raft-autopilot"
)

func measureApply(start time.Time) {
	metrics.MeasureSince([]string{"slipway", "raft", "apply"}, start)
}

func publishAutopilot(s *autopilot.State) {
	healthy := float32(0)
	if s.Healthy {
		healthy = 1
	}
	metrics.SetGauge([]string{"slipway", "autopilot", "healthy"}, healthy)
	metrics.SetGauge([]string{"slipway", "autopilot", "failure_tolerance"}, float32(s.FailureTolerance))
	metrics.SetGauge([]string{"slipway", "raft", "voters"}, float32(len(s.Voters)))
}
