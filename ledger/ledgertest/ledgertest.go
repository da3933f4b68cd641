// Package ledgertest opens throwaway ledgers for tests and checks the
// ledger's invariants when each test ends: the hash chain verifies, the
// sequence is dense from 1 to the head, and ids and times increase with seq.
package ledgertest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// Open creates a ledger in a temporary folder and registers a cleanup that
// closes it, reopens it read-only and runs Check.
func Open(tb testing.TB, opts *ledger.Options) *ledger.Store {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "ledger.db")
	s, err := ledger.Open(path, opts)
	if err != nil {
		tb.Fatalf("open ledger: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("close ledger: %v", err)
		}
		ro, err := ledger.Open(path, &ledger.Options{ReadOnly: true})
		if err != nil {
			tb.Errorf("reopen ledger for the invariant check: %v", err)
			return
		}
		defer ro.Close()
		Check(tb, ro)
	})
	return s
}

// Check verifies the chain, density and id/time order of the whole log.
func Check(tb testing.TB, s *ledger.Store) {
	tb.Helper()
	ctx := context.Background()
	head := s.Head()
	n, err := s.Verify(ctx, 0, 0, nil)
	if err != nil {
		tb.Errorf("ledger invariant: verify: %v", err)
		return
	}
	if n != head.Seq {
		tb.Errorf("ledger invariant: verified %d records; want head seq %d", n, head.Seq)
	}
	var prev *ledger.Record
	err = s.Scan(ctx, 1, 0, func(r *ledger.Record) error {
		if prev != nil {
			if r.Seq != prev.Seq+1 {
				tb.Errorf("ledger invariant: seq %d follows %d", r.Seq, prev.Seq)
			}
			if r.ID.Compare(prev.ID) <= 0 {
				tb.Errorf("ledger invariant: id at seq %d (%s) not after %s", r.Seq, r.ID, prev.ID)
			}
			if r.Time.Before(prev.Time) {
				tb.Errorf("ledger invariant: time at seq %d goes back", r.Seq)
			}
		}
		prev = r
		return nil
	})
	if err != nil {
		tb.Errorf("ledger invariant: scan: %v", err)
	}
}

// Event returns a small valid event of type typ about user and session.
func Event(typ eventpb.EventType, user, session string) *eventpb.Event {
	return &eventpb.Event{
		Type:    typ,
		User:    user,
		Device:  "dev-1",
		Session: session,
		Node:    "node-a",
		Actor:   user,
	}
}

// SizedEvent returns a session_connected event of about size encoded bytes.
func SizedEvent(user, session string, size int) *eventpb.Event {
	ev := Event(eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, user, session)
	ev.Body = &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{RemoteAddr: "127.0.0.1:50123", HeartbeatMs: 15000}}
	pad := size - 90
	if pad > 0 {
		b := make([]byte, pad)
		for i := range b {
			b[i] = 'a' + byte(i%26)
		}
		ev.Reason = string(b)
	}
	return ev
}

// FixedClock returns a clock that starts at start and advances by step on
// every read.
func FixedClock(start time.Time, step time.Duration) func() time.Time {
	t := start.Add(-step)
	return func() time.Time {
		t = t.Add(step)
		return t
	}
}
