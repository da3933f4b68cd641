package projections_test

import (
	"bytes"
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/ledger/ledgertest"
	"github.com/sessionledger/sessionledger/projections"
)

func mustMarshal(t testing.TB, st *projections.State) []byte {
	t.Helper()
	b, err := st.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func replayAll(recs []*ledger.Record) *projections.State {
	st := projections.New()
	for _, r := range recs {
		st.Apply(r)
	}
	return st
}

// TestStateMatchesModel runs random event sequences through State and the
// naive model and compares them after every record.
func TestStateMatchesModel(t *testing.T) {
	seeds, steps := 200, 400
	if testing.Short() {
		seeds, steps = 15, 250
	}
	policies := []projections.Policy{{}, {MaxPerUser: 2}, {OnePerDevice: true}, {MaxPerUser: 1}, {MaxPerUser: 3, OnePerDevice: true}}
	var total projections.Counters
	bannedConnects := 0
	for seed := 0; seed < seeds; seed++ {
		g := newGen(uint64(seed), policies[seed%len(policies)])
		st, m := projections.New(), newModel()
		for i := 0; i < steps; i++ {
			r := g.next()
			ch := st.Apply(r)
			m.apply(r)
			if ch.Started != nil {
				if p, ok := st.Pending(ch.Started.ID); ok && p.Cause == eventpb.DisconnectCause_DISCONNECT_CAUSE_BANNED {
					bannedConnects++
				}
			}
			if got, want := st.Sessions(projections.Filter{}), m.sessions(); (len(got) != 0 || len(want) != 0) && !reflect.DeepEqual(got, want) {
				t.Fatalf("seed %d seq %d: sessions\ngot  %+v\nwant %+v", seed, r.Seq, got, want)
			}
			if got, want := st.PendingEnds(), m.pendingEnds(); !reflect.DeepEqual(got, want) {
				t.Fatalf("seed %d seq %d: pending\ngot  %+v\nwant %+v", seed, r.Seq, got, want)
			}
			// Bans judged at the record's time and a little later (expiry
			// between records is judged by the caller's now).
			for _, now := range []time.Time{r.Time, r.Time.Add(5 * time.Second)} {
				if got, want := st.Bans(now), m.banList(now); !reflect.DeepEqual(got, want) {
					t.Fatalf("seed %d seq %d: bans at %s\ngot  %+v\nwant %+v", seed, r.Seq, now, got, want)
				}
			}
			if got, want := st.Counters(), m.c; got != want {
				t.Fatalf("seed %d seq %d: counters\ngot  %+v\nwant %+v", seed, r.Seq, got, want)
			}
			// Whatever the order of events, no session of a banned user
			// stays live without an end due.
			for _, b := range st.Bans(r.Time) {
				for _, sess := range st.Sessions(projections.Filter{User: b.User}) {
					if _, ok := st.Pending(sess.ID); !ok {
						t.Fatalf("seed %d seq %d: session %s of banned user %s has no pending end", seed, r.Seq, sess.ID, b.User)
					}
				}
			}
		}
		c := st.Counters()
		total.BansExpired += c.BansExpired
		total.BansExpiredOnArrival += c.BansExpiredOnArrival
		total.BansNotExtending += c.BansNotExtending
		total.Malformed += c.Malformed
		total.KicksMissed += c.KicksMissed
	}
	// The generator must reach the rules under test.
	if bannedConnects == 0 || total.BansExpired == 0 || total.BansExpiredOnArrival == 0 || total.BansNotExtending == 0 || total.Malformed == 0 {
		t.Fatalf("generator coverage: %d connects during a ban, counters %+v; want all > 0", bannedConnects, total)
	}
	t.Logf("%d connects during a ban; %+v", bannedConnects, total)
}

// replayChanges applies recs to st and returns every change.
func replayChanges(st *projections.State, recs []*ledger.Record) []projections.Change {
	out := make([]projections.Change, 0, len(recs))
	for _, r := range recs {
		out = append(out, st.Apply(r))
	}
	return out
}

// TestSnapshotPlusTailEqualsFullReplay cuts random logs at every point,
// round-trips the state through a snapshot and applies the rest.
func TestSnapshotPlusTailEqualsFullReplay(t *testing.T) {
	seeds := 60
	if testing.Short() {
		seeds = 15
	}
	for seed := 0; seed < seeds; seed++ {
		g := newGen(uint64(1000+seed), projections.Policy{MaxPerUser: 2, OnePerDevice: seed%2 == 0})
		for i := 0; i < 300; i++ {
			g.next()
		}
		full := projections.New()
		changes := replayChanges(full, g.recs)
		want := mustMarshal(t, full)
		// Determinism: a second replay gives byte-equal state and the same
		// changes, which is what the hub enforces from.
		again := projections.New()
		if !reflect.DeepEqual(replayChanges(again, g.recs), changes) {
			t.Fatalf("seed %d: two replays of the same log give different changes", seed)
		}
		if !bytes.Equal(mustMarshal(t, again), want) {
			t.Fatalf("seed %d: two replays of the same log differ", seed)
		}
		for cut := 0; cut <= len(g.recs); cut += 7 {
			snap, err := projections.UnmarshalState(mustMarshal(t, replayAll(g.recs[:cut])))
			if err != nil {
				t.Fatalf("seed %d cut %d: %v", seed, cut, err)
			}
			// The tail makes the same changes after a snapshot as in one run.
			if got := replayChanges(snap, g.recs[cut:]); !reflect.DeepEqual(got, changes[cut:]) {
				t.Fatalf("seed %d cut %d: the tail's changes after a snapshot differ from a full replay's", seed, cut)
			}
			if got := mustMarshal(t, snap); !bytes.Equal(got, want) {
				t.Fatalf("seed %d cut %d: snapshot + tail != full replay", seed, cut)
			}
			if !reflect.DeepEqual(snap.Counters(), full.Counters()) {
				t.Fatalf("seed %d cut %d: counters %+v; want %+v", seed, cut, snap.Counters(), full.Counters())
			}
		}
	}
}

// appendGenerated writes n generated events into a real ledger whose clock
// advances 250ms per record, and returns them as the ledger stamped them.
func appendGenerated(t testing.TB, s *ledger.Store, seed uint64, n int) []*ledger.Record {
	t.Helper()
	g := newGen(seed, projections.Policy{MaxPerUser: 2})
	ctx := context.Background()
	var evs []*eventpb.Event
	for i := 0; i < n; i++ {
		r := g.next()
		if r.Event == nil {
			continue // other-topic records need the Publisher; covered elsewhere
		}
		evs = append(evs, r.Event)
	}
	// One append: one commit and its fsyncs, not n.
	if _, err := s.Append(ctx, evs...); err != nil {
		t.Fatal(err)
	}
	var out []*ledger.Record
	if err := s.Scan(ctx, 1, 0, func(r *ledger.Record) error { out = append(out, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestStateAtAgreesWithNaiveReplay checks time travel on a real ledger with
// periodic snapshots against replaying the prefix in memory.
func TestStateAtAgreesWithNaiveReplay(t *testing.T) {
	s := ledgertest.Open(t, &ledger.Options{Now: ledgertest.FixedClock(t0, 250*time.Millisecond)})
	recs := appendGenerated(t, s, 7, 600)
	ctx := context.Background()
	n, err := projections.WriteSnapshots(ctx, s, 50)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(recs) / 50; n != want {
		t.Fatalf("wrote %d snapshots; want %d", n, want)
	}
	// A second run finds them all present.
	if n, err := projections.WriteSnapshots(ctx, s, 50); err != nil || n != 0 {
		t.Fatalf("second WriteSnapshots: %d, %v; want 0, nil", n, err)
	}
	for _, seq := range []uint64{1, 49, 50, 51, 99, 100, 317, uint64(len(recs))} {
		got, err := projections.StateAt(ctx, s, seq)
		if err != nil {
			t.Fatal(err)
		}
		if got.Seq() != seq {
			t.Fatalf("StateAt(%d).Seq() = %d", seq, got.Seq())
		}
		if !bytes.Equal(mustMarshal(t, got), mustMarshal(t, replayAll(recs[:seq]))) {
			t.Fatalf("StateAt(%d) differs from a naive replay", seq)
		}
	}
	// By time: every record at or before T counts, none after.
	for _, i := range []int{0, 10, 299, len(recs) - 1} {
		at := recs[i].Time
		got, err := projections.StateAtTime(ctx, s, at)
		if err != nil {
			t.Fatal(err)
		}
		if got.Seq() != recs[i].Seq {
			t.Fatalf("StateAtTime(%s) applied up to %d; want %d", at, got.Seq(), recs[i].Seq)
		}
	}
	before, err := projections.StateAtTime(ctx, s, t0.Add(-time.Hour))
	if err != nil || before.Seq() != 0 || before.Live() != 0 {
		t.Fatalf("state before the first record: seq %d live %d err %v; want empty", before.Seq(), before.Live(), err)
	}
}

// TestStateAtSkipsUnusableSnapshots stores a snapshot of another format
// version: time travel must fall back to an older one, not fail or trust it.
func TestStateAtSkipsUnusableSnapshots(t *testing.T) {
	s := ledgertest.Open(t, &ledger.Options{Now: ledgertest.FixedClock(t0, 250*time.Millisecond)})
	recs := appendGenerated(t, s, 8, 200)
	ctx := context.Background()
	if _, err := projections.WriteSnapshots(ctx, s, 40); err != nil {
		t.Fatal(err)
	}
	if err := s.PutBlob(ctx, projections.SnapshotKey(80), []byte("\x08\x63garbage")); err != nil {
		t.Fatal(err)
	}
	got, err := projections.StateAt(ctx, s, 90)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mustMarshal(t, got), mustMarshal(t, replayAll(recs[:90]))) {
		t.Fatal("StateAt(90) with a bad snapshot at 80 differs from a naive replay")
	}
}
