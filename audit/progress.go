package audit

import "context"

type progressKey struct{}

// WithProgress returns a context that carries fn: Engine's long reads
// (Export, Stats, Events, Replay and the scans behind them) call it with
// the seq of each record they read, from the reading goroutine, so it must
// be cheap (auditq draws a progress line from it at most every 100 ms). A
// Client does not call it: the records come from the hub.
func WithProgress(ctx context.Context, fn func(seq uint64)) context.Context {
	return context.WithValue(ctx, progressKey{}, fn)
}

// progressOf is the progress function ctx carries, or one that does
// nothing.
func progressOf(ctx context.Context) func(uint64) {
	if fn, ok := ctx.Value(progressKey{}).(func(uint64)); ok && fn != nil {
		return fn
	}
	return func(uint64) {}
}
