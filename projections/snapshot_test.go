package projections_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/ledger/ledgertest"
	"github.com/sessionledger/sessionledger/projections"
	"github.com/sessionledger/sessionledger/projections/projpb"
)

// TestUnmarshalStateRejectsDamage: a snapshot that parses but describes a
// state the reducer cannot reach is ErrBadSnapshot, never a state that
// crashes the reducer later (two sessions with one id left a dangling
// by-user entry, and a user+device kick dereferenced it).
func TestUnmarshalStateRejectsDamage(t *testing.T) {
	sess := func(id, user string, seq uint64) *projpb.Session {
		return &projpb.Session{Id: id, User: user, Device: "d", ConnectSeq: seq}
	}
	for name, pb := range map[string]*projpb.Snapshot{
		"session twice":        {Sessions: []*projpb.Session{sess("s1", "u", 1), sess("s1", "u", 2)}},
		"session without id":   {Sessions: []*projpb.Session{sess("", "u", 1)}},
		"session without user": {Sessions: []*projpb.Session{sess("s1", "", 1)}},
		"pending not live":     {Sessions: []*projpb.Session{sess("s1", "u", 1)}, Pending: []*projpb.Pending{{Session: "s2"}}},
		"pending twice":        {Sessions: []*projpb.Session{sess("s1", "u", 1)}, Pending: []*projpb.Pending{{Session: "s1"}, {Session: "s1"}}},
		"ban twice":            {Bans: []*projpb.Ban{{User: "u"}, {User: "u", UntilUnixNano: 5}}},
		"ban without user":     {Bans: []*projpb.Ban{{Reason: "x"}}},
	} {
		pb.Version, pb.Seq = projections.SnapshotVersion, 2
		b, err := proto.Marshal(pb)
		if err != nil {
			t.Fatal(err)
		}
		if st, err := projections.UnmarshalState(b); !errors.Is(err, projections.ErrBadSnapshot) {
			t.Errorf("%s: UnmarshalState = %v, %v; want ErrBadSnapshot", name, st, err)
		}
	}
}

// TestStoredSnapshotMustMatchLog copies the checkpoint and the snapshots
// of one ledger into another of the same length: the record hash they
// carry does not match, so time travel ignores them and the Runner
// rebuilds. So does a snapshot stored without a hash.
func TestStoredSnapshotMustMatchLog(t *testing.T) {
	ctx := context.Background()
	a, clkA := openGen(t, nil)
	appendGenerated(t, a, clkA, 11, 200)
	b, clkB := openGen(t, nil)
	recsB := appendGenerated(t, b, clkB, 11, 200) // the same events, other ids and hashes
	if _, err := projections.WriteSnapshots(ctx, a, 50); err != nil {
		t.Fatal(err)
	}
	r := startRunner(t, a, projections.Config{NoSnapshots: true})
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{projections.CheckpointKey, projections.SnapshotKey(50), projections.SnapshotKey(100)} {
		v, err := a.GetBlob(key)
		if err != nil || v == nil {
			t.Fatalf("%s: %v", key, err)
		}
		if err := b.PutBlob(ctx, key, v); err != nil {
			t.Fatal(err)
		}
	}
	// A snapshot with no hash at all, at 150.
	mid := replayAll(recsB[:150])
	if err := b.PutBlob(ctx, projections.SnapshotKey(150), mustMarshal(t, mid)); err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{60, 120, 160} {
		got, err := projections.StateAt(ctx, b, seq)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(mustMarshal(t, got), mustMarshal(t, replayAll(recsB[:seq]))) {
			t.Fatalf("StateAt(%d) used another log's snapshot", seq)
		}
	}
	rb := startRunner(t, b, projections.Config{NoSnapshots: true})
	defer rb.Close()
	if cp, replayed := rb.StartInfo(); cp != 0 || replayed != b.Head().Seq {
		t.Fatalf("runner on another log's checkpoint: checkpoint %d replayed %d; want a full rebuild", cp, replayed)
	}
	// WriteSnapshots replaces the ones that do not match.
	if n, err := projections.WriteSnapshots(ctx, b, 50); err != nil || n != int(b.Head().Seq/50) {
		t.Fatalf("WriteSnapshots over another log's snapshots: %d, %v; want %d written", n, err, b.Head().Seq/50)
	}
}

func TestStateAtBeyondHead(t *testing.T) {
	s := ledgertest.Open(t, nil)
	ctx := context.Background()
	if _, err := s.Append(ctx, connect("u", "d", "s1")); err != nil {
		t.Fatal(err)
	}
	if _, err := projections.StateAt(ctx, s, 2); !errors.Is(err, projections.ErrBeyondHead) {
		t.Fatalf("StateAt(head+1) = %v; want ErrBeyondHead", err)
	}
	if st, err := projections.StateAt(ctx, s, 0); err != nil || st.Seq() != 1 {
		t.Fatalf("StateAt(0) = seq %d, %v; want the head", st.Seq(), err)
	}
}

// FuzzUnmarshalState: whatever bytes a snapshot holds, UnmarshalState
// returns a state the reducer can work on, or an error; a state it returns
// survives a round trip and every kind of event. The corpus is in
// testdata/fuzz/FuzzUnmarshalState.
func FuzzUnmarshalState(f *testing.F) {
	g := newGen(5, projections.Policy{MaxPerUser: 2})
	for i := 0; i < 120; i++ {
		g.next()
		if i%40 == 39 {
			f.Add(mustMarshal(f, g.st))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := projections.UnmarshalState(b)
		if err != nil {
			if !errors.Is(err, projections.ErrBadSnapshot) {
				t.Fatalf("error %v; want ErrBadSnapshot", err)
			}
			return
		}
		enc := mustMarshal(t, st)
		again, err := projections.UnmarshalState(enc)
		if err != nil || !bytes.Equal(mustMarshal(t, again), enc) {
			t.Fatalf("round trip: %v", err)
		}
		// Touch live sessions and bans through the reducer (a few: a user
		// with n sessions makes each of these O(n)).
		sc := &script{t: t, st: st, seq: st.Seq()}
		at := st.Time().Sub(t0) + time.Second
		live := st.Sessions(projections.Filter{})
		for _, sess := range live[:min(len(live), 20)] {
			st.Supersedes(projections.Policy{MaxPerUser: 1, OnePerDevice: true}, sess.User, sess.Device)
			sc.at(at, kick(eventpb.KickTarget_KICK_TARGET_USER_DEVICE, sess.User, sess.Device, ""))
			sc.at(at, kick(eventpb.KickTarget_KICK_TARGET_USER, sess.User, "", ""))
			sc.at(at, ban(sess.User, time.Time{}, "fuzz"))
			sc.at(at, connect(sess.User, sess.Device, sess.ID+"+", sess.ID))
			sc.at(at, disconnect(sess.ID, eventpb.DisconnectCause_DISCONNECT_CAUSE_LOST))
			sc.at(at, disconnect(sess.ID, eventpb.DisconnectCause_DISCONNECT_CAUSE_LOST))
		}
		bans := st.Bans(st.Time())
		for _, b := range bans[:min(len(bans), 20)] {
			sc.at(at, unban(b.User))
		}
		sc.at(at+time.Hour*24*365*100, connect("x", "d", "x1"))
	})
}

// TestStateAtTimeSameTimestamp: every record at or before T counts, also
// several records sharing T's time.
func TestStateAtTimeSameTimestamp(t *testing.T) {
	s := ledgertest.Open(t, &ledger.Options{Now: func() time.Time { return t0 }})
	ctx := context.Background()
	if _, err := s.Append(ctx, connect("u", "d", "s1"), connect("v", "d", "s2"), ban("w", time.Time{}, "x")); err != nil {
		t.Fatal(err)
	}
	st, err := projections.StateAtTime(ctx, s, t0)
	if err != nil {
		t.Fatal(err)
	}
	if st.Seq() != 3 || st.Live() != 2 || len(st.Bans(t0)) != 1 {
		t.Fatalf("StateAtTime(t0): seq %d live %d bans %d; want 3, 2, 1", st.Seq(), st.Live(), len(st.Bans(t0)))
	}
	if st, err := projections.StateAtTime(ctx, s, t0.Add(-time.Nanosecond)); err != nil || st.Seq() != 0 {
		t.Fatalf("StateAtTime(t0-1ns): seq %d, %v; want the empty state", st.Seq(), err)
	}
}
