package dyno

import (
	"context"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/fsm"
)

// BenchmarkDynoStart measures a web dyno's start: from its placement on the
// node (the FSM change) to its report of `up` applied to the FSM (its $PORT
// accepts connections). The slug is cached on the node (as for every start
// but the first of a release there); it is unpacked afresh each time.
//
//	go test -run XXX -bench DynoStart -benchtime 20x ./dyno
func BenchmarkDynoStart(b *testing.B) {
	b.Run("process", func(b *testing.B) { benchStart(b, newHarness(b, Process{})) })
	b.Run("runc", func(b *testing.B) { benchStart(b, newRuncHarness(b, HostStack)) })
}

func benchStart(b *testing.B, h *harness) {
	h.deploy(makeSlug(b), map[string]string{"web": "bin/dynoapp web"})
	h.start()
	warm := h.place(dynoSpec{name: "web.0", command: "bin/dynoapp web"})
	h.waitState(warm.ID, fsm.DynoUp)
	h.apply(fsm.CmdDynoPlan, fsm.DynoPlan{Remove: []string{warm.ID}}, nil)
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		d := h.place(dynoSpec{name: "web.1", command: "bin/dynoapp web"})
		waitUp(b, h, d.ID)
		total += time.Since(start)
		b.StopTimer()
		h.apply(fsm.CmdDynoPlan, fsm.DynoPlan{Remove: []string{d.ID}}, nil)
		h.waitFor("stopped", func() bool { return len(h.sup.Running()) == 0 })
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/start")
}

// waitUp waits for the FSM to record the dyno up, woken by its changes.
func waitUp(b *testing.B, h *harness, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		snap := h.f.Snap()
		if d, ok := snap.DynoByID(id); ok && d.State == fsm.DynoUp {
			return
		}
		if err := snap.Watch("dynos").WatchCtx(ctx); err != nil {
			b.Fatal("dyno not up")
		}
	}
}
