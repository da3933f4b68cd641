package projections_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

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
	bannedConnects, revokedConnects, refusedConnects, revocationsEnding := 0, 0, 0, 0
	decided, drained := 0, 0
	for seed := 0; seed < seeds; seed++ {
		g := newGen(uint64(seed), policies[seed%len(policies)])
		g.decide = seed%2 == 1
		st, m := projections.New(), newModel()
		for i := 0; i < steps; i++ {
			r := g.next()
			ch := st.Apply(r)
			m.apply(r)
			if ch.Started != nil {
				if p, ok := st.Pending(ch.Started.ID); ok && p.Cause == eventpb.DisconnectCause_DISCONNECT_CAUSE_BANNED {
					bannedConnects++
				}
				if (r.Event.GetSessionConnected().GetPolicy() != nil || r.Event.GetSessionReconnected().GetPolicy() != nil) && len(ch.Pending) > 0 {
					decided++
				}
			}
			if ch.Type == eventpb.EventType_EVENT_TYPE_NODE_DRAINED && len(ch.Pending) > 0 {
				drained++
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
				if got, want := st.Revocations(now), m.revocationList(now); !reflect.DeepEqual(got, want) {
					t.Fatalf("seed %d seq %d: revocations at %s\ngot  %+v\nwant %+v", seed, r.Seq, now, got, want)
				}
				if got, want := st.Refusals(now), m.refusalList(now); !reflect.DeepEqual(got, want) {
					t.Fatalf("seed %d seq %d: refusals at %s\ngot  %+v\nwant %+v", seed, r.Seq, now, got, want)
				}
			}
			if ch.Started != nil {
				if p, ok := st.Pending(ch.Started.ID); ok {
					switch p.Cause {
					case eventpb.DisconnectCause_DISCONNECT_CAUSE_REVOKED:
						revokedConnects++
					case eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED:
						refusedConnects++
					}
				}
			}
			if ch.Revoked != nil && len(ch.Pending) > 0 {
				revocationsEnding++
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
		total.RevocationsLapsedOnArrival += c.RevocationsLapsedOnArrival
		total.RevocationsNotWidening += c.RevocationsNotWidening
		total.UnknownRefreshes += c.UnknownRefreshes
	}
	if revokedConnects == 0 || refusedConnects == 0 || revocationsEnding == 0 || total.RevocationsLapsedOnArrival == 0 ||
		total.RevocationsNotWidening == 0 || total.UnknownRefreshes == 0 {
		t.Fatalf("generator coverage: %d connects with a revoked token, %d during a kick's refusal, %d revocations ending sessions, counters %+v; want all > 0",
			revokedConnects, refusedConnects, revocationsEnding, total)
	}
	// The generator must reach the rules under test.
	if bannedConnects == 0 || decided == 0 || drained == 0 || total.BansExpired == 0 || total.BansExpiredOnArrival == 0 || total.BansNotExtending == 0 || total.Malformed == 0 {
		t.Fatalf("generator coverage: %d connects during a ban, %d connects superseding by policy, %d drains ending sessions, counters %+v; want all > 0", bannedConnects, decided, drained, total)
	}
	t.Logf("%d connects during a ban, %d superseding by policy, %d drains; %+v", bannedConnects, decided, drained, total)
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

// genClock is a ledger clock that stamps each record with the time the
// generator gave it, so that a ledger-backed test sees what the in-memory
// ones see: bans that expire inside the log, some exactly on a record.
// Times are queued just before the append that uses them; with none
// queued it repeats the last one.
type genClock struct {
	mu    sync.Mutex
	times []time.Time
	last  time.Time
}

func (c *genClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.times) > 0 {
		c.last, c.times = c.times[0], c.times[1:]
	}
	if c.last.IsZero() {
		return t0
	}
	return c.last
}

func (c *genClock) queue(ts ...time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.times = append(c.times, ts...)
}

// openGen opens a checked test ledger (ledgertest.Open) whose clock is a
// genClock.
func openGen(t testing.TB, opts *ledger.Options) (*ledger.Store, *genClock) {
	t.Helper()
	clk := &genClock{}
	var o ledger.Options
	if opts != nil {
		o = *opts
	}
	o.Now = clk.now
	return ledgertest.Open(t, &o), clk
}

// writeRecords writes generator records to s in order, each stamped with
// its generator time: runs of events in one Append (one commit, not one
// per event), other-topic records through pub.
func writeRecords(t testing.TB, s *ledger.Store, pub *ledger.Publisher, clk *genClock, recs []*ledger.Record) {
	t.Helper()
	for len(recs) > 0 {
		if recs[0].Event == nil {
			clk.queue(recs[0].Time)
			if err := pub.Publish(recs[0].Topic, message.NewMessage(fmt.Sprintf("m%d", recs[0].Seq), recs[0].Payload)); err != nil {
				t.Fatal(err)
			}
			recs = recs[1:]
			continue
		}
		n := 0
		var evs []*eventpb.Event
		for ; n < len(recs) && recs[n].Event != nil; n++ {
			evs = append(evs, recs[n].Event)
			clk.queue(recs[n].Time)
		}
		if _, err := s.Append(context.Background(), evs...); err != nil {
			t.Fatal(err)
		}
		recs = recs[n:]
	}
}

// appendGenerated writes n generated records (events and other-topic
// records) into s, whose clock is clk, and returns them as the ledger
// stored them.
func appendGenerated(t testing.TB, s *ledger.Store, clk *genClock, seed uint64, n int) []*ledger.Record {
	t.Helper()
	g := newGen(seed, projections.Policy{MaxPerUser: 2})
	// Odd seeds also write what a cluster writes: policies decided in the
	// log, two nodes, drains.
	g.decide = seed%2 == 1
	for i := 0; i < n; i++ {
		g.next()
	}
	from := s.Head().Seq + 1
	writeRecords(t, s, ledger.NewPublisher(s), clk, g.recs)
	var out []*ledger.Record
	if err := s.Scan(context.Background(), from, 0, func(r *ledger.Record) error { out = append(out, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(out) != n {
		t.Fatalf("wrote %d records; want %d", len(out), n)
	}
	for i, r := range out {
		if !r.Time.Equal(g.recs[i].Time) {
			t.Fatalf("record %d stamped %s; want the generator's %s", r.Seq, r.Time, g.recs[i].Time)
		}
	}
	return out
}

// TestStateAtAgreesWithNaiveReplay checks time travel on a real ledger with
// periodic snapshots against replaying the prefix in memory.
func TestStateAtAgreesWithNaiveReplay(t *testing.T) {
	s, clk := openGen(t, nil)
	recs := appendGenerated(t, s, clk, 7, 600)
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
		// The generator may give the next records the same time.
		want := i
		for want+1 < len(recs) && !recs[want+1].Time.After(at) {
			want++
		}
		if got.Seq() != recs[want].Seq {
			t.Fatalf("StateAtTime(%s) applied up to %d; want %d", at, got.Seq(), recs[want].Seq)
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
	s, clk := openGen(t, nil)
	recs := appendGenerated(t, s, clk, 8, 200)
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

// TestStateAtTimeAgreesWithModel does time travel on real ledgers whose
// records carry the generator's times, so bans expire inside the log and
// some exactly on a record. At random times, at every record's time, and at
// every ban's exact expiry and the nanosecond before it, StateAtTime (over
// periodic snapshots) must agree with the naive model fed the records at or
// before T: sessions, pending ends, the bans in force at T (Bans and BanAt
// for every user) and the counters.
func TestStateAtTimeAgreesWithModel(t *testing.T) {
	seeds, n := 4, 900
	if testing.Short() {
		seeds, n = 2, 500
	}
	ctx := context.Background()
	var expired, atUntil uint64
	for seed := 0; seed < seeds; seed++ {
		s, clk := openGen(t, nil)
		recs := appendGenerated(t, s, clk, uint64(300+seed), n)
		if _, err := projections.WriteSnapshots(ctx, s, 64); err != nil {
			t.Fatal(err)
		}
		first, last := recs[0].Time, recs[len(recs)-1].Time
		rnd := rand.New(rand.NewPCG(uint64(seed), 77))
		var ts []time.Time
		for i := 0; i < 60; i++ {
			span := last.Sub(first) + 10*time.Second
			ts = append(ts, first.Add(-time.Second+time.Duration(rnd.Int64N(int64(span)))))
		}
		for i, r := range recs {
			if i%17 == 0 {
				ts = append(ts, r.Time)
			}
			if u := r.Event.GetUserBanned().GetUntilUnixNano(); u != 0 {
				until := time.Unix(0, u).UTC()
				ts = append(ts, until, until.Add(-time.Nanosecond))
			}
		}
		for _, at := range ts {
			st, err := projections.StateAtTime(ctx, s, at)
			if err != nil {
				t.Fatal(err)
			}
			m := newModel()
			applied := uint64(0)
			for _, r := range recs {
				if r.Time.After(at) {
					break
				}
				m.apply(r)
				applied = r.Seq
			}
			if st.Seq() != applied {
				t.Fatalf("seed %d T %s: applied up to %d; want %d", seed, at, st.Seq(), applied)
			}
			if got, want := st.Sessions(projections.Filter{}), m.sessions(); (len(got) != 0 || len(want) != 0) && !reflect.DeepEqual(got, want) {
				t.Fatalf("seed %d T %s: sessions\ngot  %+v\nwant %+v", seed, at, got, want)
			}
			if got, want := st.PendingEnds(), m.pendingEnds(); !reflect.DeepEqual(got, want) {
				t.Fatalf("seed %d T %s: pending\ngot  %+v\nwant %+v", seed, at, got, want)
			}
			if got, want := st.Bans(at), m.banList(at); !reflect.DeepEqual(got, want) {
				t.Fatalf("seed %d T %s: bans\ngot  %+v\nwant %+v", seed, at, got, want)
			}
			for u := 0; u < 6; u++ {
				user := fmt.Sprintf("u%d", u)
				gb, gok := st.BanAt(user, at)
				wb, wok := m.banAt(user, at)
				if gok != wok || gb != wb {
					t.Fatalf("seed %d T %s: BanAt(%s) = %+v, %v; want %+v, %v", seed, at, user, gb, gok, wb, wok)
				}
				if wok && wb.Until.Equal(at.Add(time.Nanosecond)) {
					atUntil++ // in force a nanosecond before its end
				}
			}
			if got := st.Counters(); got != m.c {
				t.Fatalf("seed %d T %s: counters\ngot  %+v\nwant %+v", seed, at, got, m.c)
			}
		}
		full, err := projections.StateAt(ctx, s, 0)
		if err != nil {
			t.Fatal(err)
		}
		expired += full.Counters().BansExpired
	}
	// The ledger-backed logs must reach the edges under test.
	if expired == 0 || atUntil == 0 {
		t.Fatalf("%d bans expired inside the logs, %d checked a nanosecond before their end; want both > 0", expired, atUntil)
	}
	t.Logf("%d bans expired inside the logs; %d checked a nanosecond before their end", expired, atUntil)
}
