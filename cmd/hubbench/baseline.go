package main

// The same-run baseline.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

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
