package main

// Phase 3: notify-all fan-out.

import (
	"fmt"
	"slices"
	"time"

	"github.com/sessionledger/sessionledger/hub/hubpb"
)

// fanout notifies every live session o.fanouts times and times each round
// until every session has received it.
func (b *bench) fanout() error {
	f := &b.res.Fanout
	f.Rounds = b.o.fanouts
	if f.Rounds == 0 {
		return nil
	}
	if err := b.waitAllLive("before the fan-out", time.Minute); err != nil {
		return err
	}
	f.Sessions = int(b.live.Load())
	var rates []float64
	var profiled func()
	if b.o.profile != "" {
		profiled = b.cpuProfile("fanout", 5)
	}
	hubdCPU, clientsCPU := b.cpuTimes()
	for r := range b.o.fanouts {
		before := b.delivered.Load()
		want := int64(f.Sessions)
		ctx, cancel := b.adminCtx(30 * time.Second)
		t0 := time.Now()
		_, err := b.admin.Notify(ctx, &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_ALL, Topic: "bench", Payload: []byte(fmt.Sprintf(`{"round":%d}`, r))})
		cancel()
		if err != nil {
			return fmt.Errorf("notify: %w", err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for b.delivered.Load()-before < want && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		d := time.Since(t0)
		got := b.delivered.Load() - before
		if got < want {
			return fmt.Errorf("fan-out round %d: %d of %d sessions received it within 60s", r, got, want)
		}
		f.Seconds = append(f.Seconds, d.Seconds())
		rates = append(rates, float64(want)/d.Seconds())
	}
	hubdCPU2, clientsCPU2 := b.cpuTimes()
	deliveries := float64(f.Sessions * f.Rounds)
	f.HubdCPUUs = float64((hubdCPU2 - hubdCPU).Microseconds()) / deliveries
	f.ClientsCPUUs = float64((clientsCPU2 - clientsCPU).Microseconds()) / deliveries
	if profiled != nil {
		profiled()
	}
	if len(rates) > 0 {
		slices.Sort(rates)
		f.PerSecondMed = rates[len(rates)/2]
	}
	b.printf("fan-out: %d rounds to %d sessions: %v s; median %.0f deliveries/s; CPU per delivery: hubd %.1f µs, clients %.1f µs",
		f.Rounds, f.Sessions, roundAll(f.Seconds), f.PerSecondMed, f.HubdCPUUs, f.ClientsCPUUs)
	return nil
}
