package projections_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/ledger/ledgertest"
	"github.com/sessionledger/sessionledger/projections"
	"github.com/sessionledger/sessionledger/projections/projpb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func startRunner(t *testing.T, s *ledger.Store, cfg projections.Config) *projections.Runner {
	t.Helper()
	r := projections.NewRunner(s, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRunnerFollowsAndReleasesWaiters(t *testing.T) {
	s := ledgertest.Open(t, nil)
	var mu sync.Mutex
	var pending []projections.PendingEnd
	r := startRunner(t, s, projections.Config{OnChange: func(ch projections.Change) {
		mu.Lock()
		pending = append(pending, ch.Pending...)
		mu.Unlock()
	}})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if _, err := s.Append(ctx, connect("u", "d", "s1"), connect("u", "d2", "s2")); err != nil {
		t.Fatal(err)
	}
	st2, err := s.Append(ctx, kick(eventpb.KickTarget_KICK_TARGET_USER_DEVICE, "u", "d2", ""))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.WaitApplied(ctx, st2[0].Seq); err != nil {
		t.Fatal(err)
	}
	// OnChange ran before the waiter was released.
	mu.Lock()
	got := append([]projections.PendingEnd(nil), pending...)
	mu.Unlock()
	if len(got) != 1 || got[0].Session != "s2" || got[0].EventID != st2[0].ID {
		t.Fatalf("pending seen by OnChange = %+v; want s2 kicked by %s", got, st2[0].ID)
	}
	r.Read(func(state *projections.State) {
		if state.Live() != 2 || state.Seq() != st2[0].Seq {
			t.Fatalf("live %d seq %d; want 2 live at seq %d", state.Live(), state.Seq(), st2[0].Seq)
		}
	})
	// Waiting for a seq that never comes ends with the context.
	short, cancel2 := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel2()
	if err := r.WaitApplied(short, 1000); err == nil {
		t.Fatal("WaitApplied for a future seq returned nil")
	}
}

func TestRunnerRestartReplaysOnlyTheTail(t *testing.T) {
	s, clk := openGen(t, nil)
	ctx := context.Background()
	appendGenerated(t, s, clk, 3, 300)
	r := startRunner(t, s, projections.Config{CheckpointEvery: 100})
	if cp, replayed := r.StartInfo(); cp != 0 || replayed != s.Head().Seq {
		t.Fatalf("first start: checkpoint %d replayed %d; want 0, %d", cp, replayed, s.Head().Seq)
	}
	var before []byte
	r.Read(func(st *projections.State) { before, _ = st.MarshalBinary() })
	if err := r.Close(); err != nil { // writes the final checkpoint
		t.Fatal(err)
	}
	head := s.Head().Seq
	// More events after the checkpoint.
	for i := 0; i < 5; i++ {
		if _, err := s.Append(ctx, connect("late", "d", "late-"+string(rune('a'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	s = reopen(t, s)
	r = startRunner(t, s, projections.Config{})
	defer r.Close()
	cp, replayed := r.StartInfo()
	if cp != head || replayed != 5 {
		t.Fatalf("restart: checkpoint %d replayed %d; want %d, 5", cp, replayed, head)
	}
	full, err := projections.StateAt(ctx, s, 0)
	if err != nil {
		t.Fatal(err)
	}
	var after []byte
	r.Read(func(st *projections.State) { after, _ = st.MarshalBinary() })
	if want, _ := full.MarshalBinary(); !bytes.Equal(after, want) {
		t.Fatal("checkpoint + tail differs from a full replay")
	}
	if bytes.Equal(before, after) {
		t.Fatal("state did not change with the tail")
	}
	// Rebuild on demand gives the same state.
	if err := r.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	r.Read(func(st *projections.State) { after, _ = st.MarshalBinary() })
	if want, _ := full.MarshalBinary(); !bytes.Equal(after, want) {
		t.Fatal("rebuild differs from a full replay")
	}
}

func TestRunnerRebuildsOnSnapshotVersionChange(t *testing.T) {
	s, clk := openGen(t, nil)
	ctx := context.Background()
	appendGenerated(t, s, clk, 4, 100)
	// A checkpoint from a future format version claiming a later state.
	if err := s.PutBlob(ctx, projections.CheckpointKey, []byte{0x08, 0x63, 0x10, 0x05}); err != nil {
		t.Fatal(err)
	}
	r := startRunner(t, s, projections.Config{})
	defer r.Close()
	if cp, replayed := r.StartInfo(); cp != 0 || replayed != s.Head().Seq {
		t.Fatalf("checkpoint %d replayed %d; want a full rebuild (0, %d)", cp, replayed, s.Head().Seq)
	}
}

func TestRunnerWritesPeriodicSnapshots(t *testing.T) {
	s := ledgertest.Open(t, nil)
	ctx := context.Background()
	r := startRunner(t, s, projections.Config{SnapshotEvery: 10})
	for i := 0; i < 25; i++ {
		if _, err := s.Append(ctx, connect("u", "d", "s"+string(rune('a'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.WaitApplied(ctx, 25); err != nil {
		t.Fatal(err)
	}
	r.Close() // waits for the snapshot writes
	for _, seq := range []uint64{10, 20} {
		b, err := s.GetBlob(projections.SnapshotKey(seq))
		if err != nil || b == nil {
			t.Fatalf("snapshot %d: %v, %d bytes; want stored", seq, err, len(b))
		}
		st, err := projections.UnmarshalState(b)
		if err != nil || st.Seq() != seq || st.Live() != int(seq) {
			t.Fatalf("snapshot %d: seq %d live %d err %v", seq, st.Seq(), st.Live(), err)
		}
	}
}

func TestRunnerStopsWhenLedgerCloses(t *testing.T) {
	s := ledgertest.Open(t, nil)
	r := startRunner(t, s, projections.Config{})
	defer r.Close()
	s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.WaitApplied(ctx, 10); err == nil || ctx.Err() != nil {
		t.Fatalf("WaitApplied after the ledger closed = %v (ctx %v); want a prompt error", err, ctx.Err())
	}
}

// TestRunnerStartWhileTheFileGrows starts a Runner on a ledger opened with
// a small map and a snapshot and checkpoint due at every record, so its
// persister's commits outgrow bbolt's map while Start's replay reads the
// log. A commit that grows the map waits for every read transaction, so
// the replay must not wait for the persister while it holds one.
func TestRunnerStartWhileTheFileGrows(t *testing.T) {
	s, clk := openGen(t, &ledger.Options{InitialMmapSize: 1 << 16})
	recs := appendGenerated(t, s, clk, 6, 600)
	done := make(chan error, 1)
	r := projections.NewRunner(s, projections.Config{SnapshotEvery: 1, CheckpointEvery: 1})
	go func() { done <- r.Start(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Start did not return in 30 s")
	}
	defer r.Close()
	if got := r.Applied(); got != uint64(len(recs)) {
		t.Fatalf("applied %d; want %d", got, len(recs))
	}
}

// TestWaitAppliedOnAnotherTopicAtTheTail: the subscription never delivers
// a record of another topic, and at the tail of the log no event follows
// it to fill the gap; WaitApplied must still return.
func TestWaitAppliedOnAnotherTopicAtTheTail(t *testing.T) {
	s := ledgertest.Open(t, nil)
	r := startRunner(t, s, projections.Config{})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.Append(ctx, connect("u", "d", "s1")); err != nil {
		t.Fatal(err)
	}
	pub := ledger.NewPublisher(s)
	if err := pub.Publish("other", message.NewMessage("m1", []byte("x"))); err != nil {
		t.Fatal(err)
	}
	if err := r.WaitApplied(ctx, s.Head().Seq); err != nil {
		t.Fatalf("WaitApplied(a record of another topic at the tail) = %v", err)
	}
	if c := r.Counters(); c.NotEvents != 1 || c.Applied != 2 {
		t.Fatalf("counters = %+v; want 2 applied, 1 not an event", c)
	}
	// A seq not yet in the log: of another topic, then an event.
	errs := make(chan error, 2)
	go func() { errs <- r.WaitApplied(ctx, 3) }()
	go func() { errs <- r.WaitApplied(ctx, 4) }()
	time.Sleep(20 * time.Millisecond)
	if err := pub.Publish("other", message.NewMessage("m2", []byte("y"))); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, connect("u", "d", "s2")); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	r.Read(func(st *projections.State) {
		if st.Seq() != 4 || st.Live() != 2 {
			t.Fatalf("seq %d live %d; want 4, 2", st.Seq(), st.Live())
		}
	})
}

// TestFailedStartStopsTheRunner: after a failed Start, waiters and Err
// say why at once, a second Start is refused and Close has nothing to do.
func TestFailedStartStopsTheRunner(t *testing.T) {
	s, clk := openGen(t, nil)
	appendGenerated(t, s, clk, 3, 50)
	r := projections.NewRunner(s, projections.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Start(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Start(cancelled) = %v; want context.Canceled", err)
	}
	wctx, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if err := r.WaitApplied(wctx, 1); !errors.Is(err, context.Canceled) || wctx.Err() != nil {
		t.Fatalf("WaitApplied after a failed Start = %v; want the start's error at once", err)
	}
	if err := r.Err(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Err() = %v; want the start's error", err)
	}
	if err := r.Start(context.Background()); !errors.Is(err, projections.ErrStarted) {
		t.Fatalf("second Start = %v; want ErrStarted", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close after a failed Start = %v", err)
	}
}

// TestReadDuringStart (run with -race): Start swaps the state in under
// the lock.
func TestReadDuringStart(t *testing.T) {
	s, clk := openGen(t, nil)
	appendGenerated(t, s, clk, 3, 300)
	r := projections.NewRunner(s, projections.Config{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 1000; i++ {
			r.Read(func(st *projections.State) { _ = st.Live() })
			_ = r.Counters()
			_, _ = r.StartInfo()
		}
	}()
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-done
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestCloseDuringStart: Close interrupts a Start at any point, Start says
// so, nothing is left running (TestMain checks for goroutines) and waiters
// are released.
func TestCloseDuringStart(t *testing.T) {
	s, clk := openGen(t, nil)
	appendGenerated(t, s, clk, 9, 3000)
	for _, delay := range []time.Duration{0, 100 * time.Microsecond, time.Millisecond, 5 * time.Millisecond, 50 * time.Millisecond} {
		r := projections.NewRunner(s, projections.Config{SnapshotEvery: 100})
		started := make(chan error, 1)
		go func() { started <- r.Start(context.Background()) }()
		time.Sleep(delay)
		if err := r.Close(); err != nil {
			t.Fatalf("delay %s: Close = %v", delay, err)
		}
		if err := <-started; err != nil && !errors.Is(err, projections.ErrClosed) {
			t.Fatalf("delay %s: Start = %v; want nil or ErrClosed", delay, err)
		}
		if err := r.WaitApplied(context.Background(), s.Head().Seq+1); !errors.Is(err, projections.ErrClosed) {
			t.Fatalf("delay %s: WaitApplied after Close = %v; want ErrClosed", delay, err)
		}
	}
	// Close before Start.
	r := projections.NewRunner(s, projections.Config{})
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); !errors.Is(err, projections.ErrClosed) {
		t.Fatalf("Start after Close = %v; want ErrClosed", err)
	}
}

// TestCloseDuringGapCatchUp: a Close while the follow loop reads a long
// gap of other-topic records from the log is a close, not a failure.
func TestCloseDuringGapCatchUp(t *testing.T) {
	s := ledgertest.Open(t, nil)
	pub := ledger.NewPublisher(s)
	msgs := make([]*message.Message, 5000)
	for i := range msgs {
		msgs[i] = message.NewMessage(watermill.NewUUID(), []byte("x"))
	}
	for i := 0; i < 3; i++ {
		r := startRunner(t, s, projections.Config{})
		if err := pub.Publish("other", msgs...); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Append(context.Background(), connect("u", "d", fmt.Sprintf("s%d", i))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(i) * time.Millisecond)
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if err := r.Err(); err != projections.ErrClosed {
			t.Fatalf("Err() after Close = %v; want ErrClosed", err)
		}
	}
}

// TestCloseReportsFailedCheckpoint: Close says when the last checkpoint
// could not be written (here a read-only ledger).
func TestCloseReportsFailedCheckpoint(t *testing.T) {
	s, clk := openGen(t, nil)
	appendGenerated(t, s, clk, 3, 100)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := ledger.Open(s.Path(), &ledger.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	r := projections.NewRunner(ro, projections.Config{NoSnapshots: true})
	if err := r.Start(context.Background()); err != nil {
		t.Fatalf("Start on a read-only ledger = %v; want nil (the failed checkpoint write is only logged)", err)
	}
	if err := r.Close(); !errors.Is(err, ledger.ErrReadOnly) {
		t.Fatalf("Close = %v; want the checkpoint's ErrReadOnly", err)
	}
	if st := r.Stats(); st.PersistFailures == 0 || st.Checkpointed != 0 {
		t.Fatalf("stats = %+v; want a failure and no checkpoint", st)
	}
}

// TestStartReplaysFastAndWritesSnapshots: Start replays the log with the
// fast decoder (OnChange sees none of it) and stores the periodic
// snapshots it passes, replacing a stale one; Close leaves a checkpoint at
// the head.
func TestStartReplaysFastAndWritesSnapshots(t *testing.T) {
	s, clk := openGen(t, nil)
	recs := appendGenerated(t, s, clk, 12, 260)
	ctx := context.Background()
	// Another version's snapshot where none would be written (73), and one
	// at a multiple (100).
	for _, at := range []uint64{73, 100} {
		if err := s.PutBlob(ctx, projections.SnapshotKey(at), []byte{0x08, 0x01, 0x10, byte(at)}); err != nil {
			t.Fatal(err)
		}
	}
	changes := 0
	r := startRunner(t, s, projections.Config{SnapshotEvery: 50, OnChange: func(projections.Change) { changes++ }})
	if changes != 0 {
		t.Fatalf("OnChange ran %d times during Start; want none (history)", changes)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	for _, at := range []uint64{50, 73, 100, 150, 200, 250} {
		if at > uint64(len(recs)) {
			continue
		}
		b, err := s.GetBlob(projections.SnapshotKey(at))
		if err != nil || b == nil {
			t.Fatalf("snapshot %d: %v", at, err)
		}
		st, err := projections.UnmarshalState(b)
		if err != nil {
			t.Fatalf("snapshot %d: %v", at, err)
		}
		if !bytes.Equal(mustMarshal(t, st), mustMarshal(t, replayAll(recs[:at]))) {
			t.Fatalf("snapshot %d differs from a replay of the prefix", at)
		}
	}
	if st := r.Stats(); st.Checkpointed != uint64(len(recs)) || st.Applied != uint64(len(recs)) {
		t.Fatalf("stats = %+v; want checkpointed and applied %d", st, len(recs))
	}
}

// TestRebuildIsPersisted starts a Runner on a wrong checkpoint that the
// log's hash check cannot catch (a reducer bug, say): it lacks the ban the
// last record made. Rebuild must swap in the right state, tell OnChange
// about the session the ban must end, rewrite the periodic snapshots
// (wrong ones at a multiple and elsewhere) and leave a checkpoint that a
// restart loads, even on a quiet ledger.
func TestRebuildIsPersisted(t *testing.T) {
	s, clk := openGen(t, nil)
	ctx := context.Background()
	recs := appendGenerated(t, s, clk, 3, 100)
	recs = append(recs, appendAndScan(t, s, connect("victim", "d", "sv"), ban("victim", time.Time{}, "spam"))...)
	head := s.Head().Seq

	// The wrong state: the ban at head reads as a notification.
	bad := replayAll(recs[:head-1])
	fake := *recs[head-1]
	fake.Event = &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_NOTIFICATION_SENT, User: "victim",
		Body: &eventpb.Event_NotificationSent{NotificationSent: &eventpb.NotificationSent{}}}
	bad.Apply(&fake)
	stamped := func(st *projections.State) []byte {
		var pb projpb.Snapshot
		if err := proto.Unmarshal(mustMarshal(t, st), &pb); err != nil {
			t.Fatal(err)
		}
		rec, err := s.Get(st.Seq())
		if err != nil {
			t.Fatal(err)
		}
		pb.RecordHash = rec.Hash[:]
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&pb)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if err := s.PutBlob(ctx, projections.CheckpointKey, stamped(bad)); err != nil {
		t.Fatal(err)
	}
	// Wrong snapshots that pass the checks: at a multiple and elsewhere.
	wrong := replayAll(recs[:40])
	wrong.Apply(&ledger.Record{Seq: 41, Time: recs[40].Time, Event: ban("ghost", time.Time{}, "not in the log")})
	wrong2 := replayAll(recs[:70])
	wrong2.Apply(&ledger.Record{Seq: 71, Time: recs[70].Time, Event: ban("ghost", time.Time{}, "not in the log")})
	for at, st := range map[uint64]*projections.State{41: wrong, 71: wrong2} {
		if err := s.PutBlob(ctx, projections.SnapshotKey(at), stamped(st)); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var rebuilt []projections.Change
	r := startRunner(t, s, projections.Config{SnapshotEvery: 50, OnChange: func(ch projections.Change) {
		if ch.Rebuilt {
			mu.Lock()
			rebuilt = append(rebuilt, ch)
			mu.Unlock()
		}
	}})
	if cp, _ := r.StartInfo(); cp != head {
		t.Fatalf("started from checkpoint %d; want the wrong one at %d", cp, head)
	}
	if err := r.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	want := mustMarshal(t, replayAll(recs))
	var got []byte
	r.Read(func(st *projections.State) { got = mustMarshal(t, st) })
	if !bytes.Equal(got, want) {
		t.Fatal("state after Rebuild differs from a full replay")
	}
	mu.Lock()
	if len(rebuilt) != 1 || len(rebuilt[0].Pending) != 1 || rebuilt[0].Pending[0].Session != "sv" ||
		rebuilt[0].Pending[0].Cause != eventpb.DisconnectCause_DISCONNECT_CAUSE_BANNED {
		t.Fatalf("rebuilt changes = %+v; want one, with sv's ban", rebuilt)
	}
	mu.Unlock()
	// The checkpoint is the rebuilt state before Close writes anything.
	cp, err := s.GetBlob(projections.CheckpointKey)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := projections.UnmarshalState(cp); err != nil || !bytes.Equal(mustMarshal(t, st), want) {
		t.Fatalf("checkpoint after Rebuild is not the rebuilt state (%v)", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	for _, at := range []uint64{41, 50, 71, 100} {
		b, err := s.GetBlob(projections.SnapshotKey(at))
		if err != nil || b == nil {
			t.Fatalf("snapshot %d: %v", at, err)
		}
		st, err := projections.UnmarshalState(b)
		if err != nil || !bytes.Equal(mustMarshal(t, st), mustMarshal(t, replayAll(recs[:at]))) {
			t.Fatalf("snapshot %d was not rewritten from the log (%v)", at, err)
		}
	}
	s = reopen(t, s)
	r = startRunner(t, s, projections.Config{})
	defer r.Close()
	r.Read(func(st *projections.State) { got = mustMarshal(t, st) })
	if !bytes.Equal(got, want) {
		t.Fatal("restart after Rebuild loaded a wrong checkpoint")
	}
}

// reopen closes s and opens its file again, as a restart does; the test's
// cleanup closes the new Store.
func reopen(t *testing.T, s *ledger.Store) *ledger.Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := ledger.Open(s.Path(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = again.Close() })
	return again
}

// appendAndScan appends evs to s and returns them as stored.
func appendAndScan(t testing.TB, s *ledger.Store, evs ...*eventpb.Event) []*ledger.Record {
	t.Helper()
	st, err := s.Append(context.Background(), evs...)
	if err != nil {
		t.Fatal(err)
	}
	var out []*ledger.Record
	if err := s.Scan(context.Background(), st[0].Seq, st[len(st)-1].Seq, func(r *ledger.Record) error { out = append(out, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFollowEqualsReplay feeds a Runner the generator's log as it is
// written, events and other-topic records in small batches: its state,
// the changes OnChange saw and every periodic snapshot must be what a
// replay of the log gives.
func TestFollowEqualsReplay(t *testing.T) {
	s, clk := openGen(t, nil)
	var mu sync.Mutex
	var seen []projections.Change
	r := startRunner(t, s, projections.Config{SnapshotEvery: 37, CheckpointEvery: 50, OnChange: func(ch projections.Change) {
		mu.Lock()
		seen = append(seen, ch)
		mu.Unlock()
	}})
	ctx := context.Background()
	g := newGen(42, projections.Policy{MaxPerUser: 2})
	pub := ledger.NewPublisher(s)
	for i := 0; i < 1500; i += 20 {
		var batch []*ledger.Record
		for j := 0; j < 20; j++ {
			batch = append(batch, g.next())
		}
		writeRecords(t, s, pub, clk, batch)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := r.WaitApplied(wctx, s.Head().Seq); err != nil {
		t.Fatal(err)
	}
	var want []projections.Change
	naive := projections.New()
	if err := projections.Replay(ctx, s, naive, 0, func(ch projections.Change) {
		ch.Record = nil
		want = append(want, ch)
	}); err != nil {
		t.Fatal(err)
	}
	var got []byte
	r.Read(func(st *projections.State) { got = mustMarshal(t, st) })
	if !bytes.Equal(got, mustMarshal(t, naive)) {
		t.Fatal("the Runner's state differs from a replay of the log")
	}
	mu.Lock()
	for i := range seen {
		seen[i].Record = nil
	}
	if len(seen) != len(want) {
		t.Fatalf("OnChange saw %d changes; want %d", len(seen), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(seen[i], want[i]) {
			t.Fatalf("change %d:\ngot  %+v\nwant %+v", i, seen[i], want[i])
		}
	}
	mu.Unlock()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	for seq := uint64(37); seq <= s.Head().Seq; seq += 37 {
		b, err := s.GetBlob(projections.SnapshotKey(seq))
		if err != nil || b == nil {
			t.Fatalf("snapshot %d: %v", seq, err)
		}
		st, err := projections.UnmarshalState(b)
		if err != nil {
			t.Fatal(err)
		}
		n := projections.New()
		if err := projections.Replay(ctx, s, n, seq, nil); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(mustMarshal(t, st), mustMarshal(t, n)) {
			t.Fatalf("snapshot %d differs from a replay of the prefix", seq)
		}
	}
}

// TestRebuildBeforeAnythingApplied: a Rebuild while the runner has applied
// nothing yet must not replay the fresh state to the head (Replay reads
// to == 0 that way), or the follow loop applies records onto it twice.
func TestRebuildBeforeAnythingApplied(t *testing.T) {
	s := ledgertest.Open(t, nil)
	release := make(chan struct{})
	first := make(chan struct{}, 1)
	r := startRunner(t, s, projections.Config{OnChange: func(ch projections.Change) {
		if ch.Seq == 1 && !ch.Rebuilt {
			first <- struct{}{}
			<-release
		}
	}})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.Append(ctx, connect("u", "d", "s1")); err != nil {
		t.Fatal(err)
	}
	<-first // follow loop is inside OnChange for seq 1; applied is still 0
	for i := 2; i <= 5; i++ {
		if _, err := s.Append(ctx, connect("u", "d", fmt.Sprintf("s%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- r.Rebuild(ctx) }()
	time.Sleep(200 * time.Millisecond) // let Rebuild replay while seq 1 is being applied
	close(release)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if err := r.WaitApplied(ctx, 5); err != nil {
		t.Fatal(err)
	}
	full, err := projections.StateAt(ctx, s, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	r.Read(func(st *projections.State) { got = mustMarshal(t, st) })
	if !bytes.Equal(got, mustMarshal(t, full)) {
		t.Fatalf("state differs from replay: runner counters %+v; replay %+v", r.Counters(), full.Counters())
	}
}

// TestRebuildInterruptedByCloseIsErrClosed: Close ending a Rebuild that
// waits for the follow loop reports ErrClosed, not a cancelled context.
func TestRebuildInterruptedByCloseIsErrClosed(t *testing.T) {
	s := ledgertest.Open(t, nil)
	release := make(chan struct{})
	in := make(chan struct{}, 1)
	r := startRunner(t, s, projections.Config{OnChange: func(ch projections.Change) {
		if ch.Seq == 2 && !ch.Rebuilt {
			in <- struct{}{}
			<-release
		}
	}})
	ctx := context.Background()
	if _, err := s.Append(ctx, connect("u", "d", "s1")); err != nil {
		t.Fatal(err)
	}
	if err := r.WaitApplied(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, connect("u", "d", "s2")); err != nil {
		t.Fatal(err)
	}
	<-in
	errc := make(chan error, 1)
	go func() { errc <- r.Rebuild(ctx) }()
	time.Sleep(100 * time.Millisecond)
	closed := make(chan error, 1)
	go func() { closed <- r.Close() }()
	err := <-errc
	close(release)
	<-closed
	if !errors.Is(err, projections.ErrClosed) {
		t.Fatalf("Rebuild interrupted by Close = %v; want ErrClosed", err)
	}
}

// TestCheckpointOnRequest: Checkpoint returns once a checkpoint of the
// applied state is durable (a hot backup takes one first); before Start
// and after Close it says why it cannot.
func TestCheckpointOnRequest(t *testing.T) {
	s := ledgertest.Open(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := projections.NewRunner(s, projections.Config{}).Checkpoint(ctx); !errors.Is(err, projections.ErrNotStarted) {
		t.Fatalf("Checkpoint before Start: %v; want ErrNotStarted", err)
	}
	// Periodic checkpoints far away: only the request writes one.
	r := startRunner(t, s, projections.Config{CheckpointEvery: 1 << 40, CheckpointInterval: time.Hour})
	st, err := s.Append(ctx, connect("u", "d", "s1"), connect("v", "d", "s2"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.WaitApplied(ctx, st[1].Seq); err != nil {
		t.Fatal(err)
	}
	if err := r.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := s.GetBlob(projections.CheckpointKey)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := projections.UnmarshalState(b)
	if err != nil || cp.Seq() != st[1].Seq || cp.Live() != 2 {
		t.Fatalf("checkpoint at seq %d with %d live (%v); want seq %d with 2", cp.Seq(), cp.Live(), err, st[1].Seq)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Checkpoint(ctx); !errors.Is(err, projections.ErrClosed) {
		t.Fatalf("Checkpoint after Close: %v; want ErrClosed", err)
	}
}
