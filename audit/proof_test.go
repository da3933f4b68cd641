package audit_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/sessionledger/sessionledger/audit"
	"github.com/sessionledger/sessionledger/audit/audittest"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/ledger/ledgertest"
)

// TestVerifyWhileAppending verifies the whole log of a live hub, through
// the engine and through the Audit API, while records are appended: what
// the appends add past the head the check began at is no finding.
func TestVerifyWhileAppending(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	audittest.Build(t, path)
	h := audittest.StartHub(t, path)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000 && ctx.Err() == nil; i++ {
				ev := ledgertest.Event(eventpb.EventType_EVENT_TYPE_NOTIFICATION_SENT, "u"+string(rune('a'+w)), "s")
				if _, err := h.Store.Append(ctx, ev); err != nil && ctx.Err() == nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	c := h.Client(t)
	for i := range 10 {
		var res audit.VerifyResult
		var err error
		if i%2 == 0 {
			res, err = audit.NewEngine(h.Store).Verify(ctx, audit.VerifyQuery{}, nil)
		} else {
			res, err = c.Verify(ctx, audit.VerifyQuery{}, nil)
		}
		if err != nil || !res.Intact() || !res.Whole {
			t.Errorf("verify %d while appending: %+v, %v", i, res, err)
			break
		}
	}
	cancel() // the appenders stop before the hub does
	wg.Wait()
}
