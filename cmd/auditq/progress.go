package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/sessionledger/sessionledger/audit"
)

// progressCtx returns ctx carrying a progress function for the engine's
// long reads (audit.WithProgress) and a function that clears the line
// (call it before printing to the same terminal). When show is set and
// stderr is a terminal it draws "verb… seq N of M (x%)  R records/s" on stderr at
// most every 100 ms; elsewhere it draws nothing. A hub's records arrive
// through the callbacks, which call a.tick (set here) themselves.
func (a *app) progressCtx(ctx context.Context, verb string, src source, show bool) (context.Context, func()) {
	a.tick = func(uint64) {}
	if !a.errTTY || !show {
		return ctx, func() {}
	}
	var total uint64
	if e, ok := src.(*audit.Engine); ok {
		total = e.Store().Head().Seq
	}
	start := time.Now()
	var calls atomic.Uint64
	var last time.Time
	drawn := false
	tick := func(seq uint64) {
		if calls.Add(1)%256 != 1 { // a clock read per 256 records
			return
		}
		if now := time.Now(); now.Sub(last) >= 100*time.Millisecond {
			last, drawn = now, true
			fmt.Fprintf(a.stderr, "\r%s   ", progressText(verb, seq, total, calls.Load(), now.Sub(start)))
		}
	}
	a.tick = tick
	cleared := false
	return audit.WithProgress(ctx, tick), func() {
		if drawn && !cleared {
			cleared = true
			fmt.Fprint(a.stderr, "\r\033[K")
		}
	}
}

// progressText is one progress line: the seq reached, of how many when
// known, and the rate.
func progressText(verb string, seq, total, read uint64, elapsed time.Duration) string {
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(read) / s
	}
	if total > 0 && seq <= total {
		return fmt.Sprintf("%s… seq %d of %d (%.0f%%)  %.0f records/s", verb, seq, total, 100*float64(seq)/float64(total), rate)
	}
	return fmt.Sprintf("%s… seq %d  %.0f records/s", verb, seq, rate)
}
