package main

// The same-run baseline.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// baseline times 300 sequential durable appends to a fresh ledger next to
// hubd's data: what one fsynced event costs on this disk right now.
func (b *bench) baseline() error {
	dir, err := os.MkdirTemp(b.o.data, "hubbench-baseline-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	store, err := ledger.Open(filepath.Join(dir, "ledger.db"), nil)
	if err != nil {
		return err
	}
	defer store.Close()
	var ds []time.Duration
	for i := range 300 {
		ev := &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, User: fmt.Sprintf("u%d", i), Device: "d",
			Session: fmt.Sprintf("s%d", i), Node: "bench", Actor: "bench", Body: &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{}}}
		t0 := time.Now()
		if _, err := store.Append(context.Background(), ev); err != nil {
			return err
		}
		ds = append(ds, time.Since(t0))
	}
	b.res.Baseline.AppendP50, b.res.Baseline.AppendP99 = pct(ds, 50), pct(ds, 99)
	b.printf("baseline: one durable append p50 %.2f ms, p99 %.2f ms", b.res.Baseline.AppendP50, b.res.Baseline.AppendP99)
	return nil
}

// notifyBaseline times o.kicks Admin.Notify calls, one at a time, through
// the (first) node to a user with no sessions, with every session
// connected: one event recorded and applied, nothing delivered. On one
// node that is an fsynced append; in a cluster a JetStream publish that a
// quorum stored, and the node's replica stored: what a kick's call costs
// one of, measured beside the kicks.
func (b *bench) notifyBaseline() error {
	n := b.o.kicks
	if n == 0 {
		return nil
	}
	ds := make([]time.Duration, 0, n)
	for i := range n {
		ctx, cancel := b.adminCtx(10 * time.Second)
		t0 := time.Now()
		_, err := b.admin.Notify(ctx, &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_USER, User: "hubbench-nobody",
			Topic: "baseline", Payload: []byte(fmt.Sprintf(`{"i":%d}`, i))})
		ds = append(ds, time.Since(t0))
		cancel()
		if err != nil {
			return fmt.Errorf("notify baseline: %w", err)
		}
	}
	bl := &b.res.Baseline
	bl.NotifyN, bl.NotifyP50, bl.NotifyP99 = n, pct(ds, 50), pct(ds, 99)
	b.printf("baseline: Admin.Notify to a user with no sessions through %s: p50 %.2f ms, p99 %.2f ms over %d calls", b.nodes[0].label(), bl.NotifyP50, bl.NotifyP99, n)
	return nil
}
