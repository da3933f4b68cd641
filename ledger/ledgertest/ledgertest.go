// Package ledgertest opens throwaway ledgers for tests and checks the
// ledger's invariants when each test ends: the hash chain verifies, the
// sequence is dense from 1 to the head, ids and times increase with seq, and
// the user, session and topic indexes agree with the log.
package ledgertest

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
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

// Check verifies the chain, density and id/time order of the whole log, and
// that ByUser, BySession and ByTopic return exactly the log's records of a
// name (every name, or a sample of maxIndexNames per index on big logs).
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
	users, sessions, topics := newPostings(), newPostings(), newPostings()
	err = s.Scan(ctx, 1, 0, func(r *ledger.Record) error {
		topics.add(r.Topic, r.Seq)
		if u := r.Event.GetUser(); u != "" {
			users.add(u, r.Seq)
		}
		if sid := r.Event.GetSession(); sid != "" {
			sessions.add(sid, r.Seq)
		}
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
		return
	}
	checkIndex(tb, "user", s.ByUser, users)
	checkIndex(tb, "session", s.BySession, sessions)
	checkIndex(tb, "topic", s.ByTopic, topics)
	checkTree(tb, s)
}

// checkTree checks that the stored Merkle tree agrees with the tree
// recomputed from the records, that the head's root is its root, and that
// nothing else in the file names a seq the log contradicts.
func checkTree(tb testing.TB, s *ledger.Store) {
	tb.Helper()
	if s.Format() < 3 {
		return
	}
	tc, err := s.VerifyTree(context.Background(), nil, nil)
	switch {
	case err != nil:
		tb.Errorf("ledger invariant: verify tree: %v", err)
	case tc.Broken != nil || tc.TreeDamage != nil:
		tb.Errorf("ledger invariant: verify tree: chain %v, tree %v", tc.Broken, tc.TreeDamage)
	case tc.Root != s.Head().Root:
		tb.Errorf("ledger invariant: head root %x; recomputed from the records %x", s.Head().Root, tc.Root)
	}
	fs, err := s.CrossCheck(context.Background(), 10)
	if err != nil || len(fs) > 0 {
		tb.Errorf("ledger invariant: cross-check: %v, %v", fs, err)
	}
}

// maxIndexNames bounds how many names per index Check reads back.
const maxIndexNames = 256

// postings is what an index should hold, built from a scan of the log.
type postings struct {
	names []string // in order of first appearance
	seqs  map[string][]uint64
}

func newPostings() *postings { return &postings{seqs: map[string][]uint64{}} }

func (p *postings) add(name string, seq uint64) {
	if _, ok := p.seqs[name]; !ok {
		p.names = append(p.names, name)
	}
	p.seqs[name] = append(p.seqs[name], seq)
}

func checkIndex(tb testing.TB, index string, read func(context.Context, string, uint64, uint64, func(*ledger.Record) error) error, want *postings) {
	tb.Helper()
	stride := max(1, len(want.names)/maxIndexNames)
	for i := 0; i < len(want.names); i += stride {
		name := want.names[i]
		var got []uint64
		err := read(context.Background(), name, 0, 0, func(r *ledger.Record) error {
			got = append(got, r.Seq)
			return nil
		})
		if err != nil {
			tb.Errorf("ledger invariant: %s index %q: %v", index, name, err)
			return
		}
		if !slices.Equal(got, want.seqs[name]) {
			tb.Errorf("ledger invariant: %s index %q: got seqs %s; want %s", index, name, short(got), short(want.seqs[name]))
			return
		}
	}
}

func short(seqs []uint64) string {
	if len(seqs) > 20 {
		return fmt.Sprintf("%v ... (%d in all)", seqs[:20], len(seqs))
	}
	return fmt.Sprint(seqs)
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
